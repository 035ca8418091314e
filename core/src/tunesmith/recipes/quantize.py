"""The ``quantize`` recipe: load a checkpoint (merging a PEFT adapter into it if one is
given), quantize its linear weights with a registered quantizer, and write the result.

::

    tunesmith run quantize --config quantization checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct \\
        output_dir=/tmp/Llama-3.2-1B-int8
    tunesmith run quantize --config quantization checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct \\
        output_dir=/tmp/Llama-3.2-1B-int4 quantizer._component_=int4_weight_only quantizer.groupsize=64
    tunesmith run generate --config generation checkpointer.checkpoint_dir=/tmp/Llama-3.2-1B-int8

``output_dir`` appears complete or not at all. For the built-in quantizers it is a
Hugging Face checkpoint that transformers' ``from_pretrained`` loads
unchanged: ``model.safetensors`` (torchao tensors in the layout transformers writes),
the source's ``config.json`` with a torchao ``quantization_config``, tokenizer and
other small files, and tunesmith's ``quantization_config.json``. See
:mod:`tunesmith.quantization` for the torch layout other quantizers get.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tunesmith.errors import ConfigError
from tunesmith.recipes import QUANTIZE_KEYS, QUANTIZE_SCHEMA

__all__ = ["QUANTIZE_KEYS", "QUANTIZE_SCHEMA", "run"]


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _source(cfg: DictConfig) -> Path:
    from tunesmith.quantization import is_quantized_dir
    from tunesmith.recipes import checkpoint_dir_of

    source = Path(checkpoint_dir_of(cfg)).expanduser()
    if is_quantized_dir(source):
        raise ConfigError(
            f"{source} is already quantized (torchao weights): point "
            "checkpointer.checkpoint_dir at the full-precision model it came from"
        )
    return source


def _output(cfg: DictConfig, source: Path) -> Path:
    from tunesmith.quantization import is_quantize_output

    value = cfg.output_dir
    if not value:
        raise ConfigError("output_dir is not set: add output_dir=<directory to write>")
    output = Path(value).expanduser()
    if output.resolve() == source.resolve():
        raise ConfigError(f"output_dir is the source checkpoint {source}: choose a new directory")
    if output.resolve() in source.resolve().parents:
        raise ConfigError(
            f"output_dir {output} holds the source checkpoint {source}, which replacing it "
            "would delete: choose a new directory"
        )
    # The output directory is replaced as a whole; only ever replace an earlier
    # quantize output, never a directory with someone's other files in it.
    if output.is_file() or (
        output.is_dir() and any(output.iterdir()) and not is_quantize_output(output)
    ):
        raise ConfigError(
            f"output_dir {output} already exists and is not a quantized model: choose a new "
            "directory (its contents would be replaced)"
        )
    return output


def _load(
    cfg: DictConfig, source: Path, output: Path, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    """``(checkpointer, model)``, the adapter (if any) merged into plain ``nn.Linear``s."""
    from tunesmith.checkpoint import Checkpointer
    from tunesmith.peft import transform_for_adapter

    block = OmegaConf.to_container(cfg.checkpointer, resolve=True)
    adapter = cfg.adapter
    ckpt = Checkpointer(  # output_dir: not copied if it lies inside source
        source,
        output,
        checkpoint_files=block.get("checkpoint_files"),
        model_type=block.get("model_type"),
    )
    if adapter:
        adapter_dir, transform = transform_for_adapter(adapter)
    model = ckpt.load_model(device=device, dtype=dtype)
    if adapter:
        transform.load_adapter(model, adapter_dir, adapter=ckpt.adapter)
        transform.merge(model)  # quantize the merged weights, not a wrapped base
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return ckpt, model


def _record(quantizer: Any, node: DictConfig, device: torch.device) -> dict[str, Any]:
    """What ``quantization_config.json`` says about the quantizer."""
    describe = getattr(quantizer, "describe", None)
    if callable(describe):
        return dict(describe(device))
    # A third-party quantizer: record the config it was built from.
    args = OmegaConf.to_container(node, resolve=True)
    assert isinstance(args, dict)
    return {"quantizer": args.pop("_component_"), "args": args, "portable": True}


def run(cfg: DictConfig) -> None:
    """Quantize ``checkpointer.checkpoint_dir`` with ``quantizer`` into ``output_dir``.

    Config keys: ``checkpointer.checkpoint_dir``; ``output_dir``; ``quantizer``
    (``_component_`` a registered quantizer such as ``int8_weight_only``, plus its
    arguments); ``adapter`` (a PEFT adapter directory merged in before quantizing);
    ``device``, ``dtype`` (``auto``: CUDA + bf16 when present, else CPU + fp32).

    Raises:
        ConfigError: a missing key, an output directory that would overwrite other
            files, an already-quantized source, or a quantizer that cannot run here.
        CheckpointError: the source is not a checkpoint an installed family reads.
        TunesmithError: torchao is not installed (``pip install 'tunesmith[quantize]'``).
    """
    from tunesmith import training
    from tunesmith.checkpoint import atomic_directory
    from tunesmith.config import instantiate
    from tunesmith.quantization import (
        hf_layout_blocker,
        import_torchao,
        save_quantized,
        tensor_bytes,
    )

    cfg = QUANTIZE_SCHEMA.with_defaults(cfg)  # (tunesmith run has filled them in already)
    source = _source(cfg)
    output = _output(cfg, source)
    node = cfg.quantizer
    quantizer = instantiate(node, key="quantizer")
    device = training.resolve_device(cfg.device)
    dtype = training.resolve_dtype(cfg.dtype, device, training=False)
    import_torchao()  # a missing torchao fails now, not after loading a large model
    dtype_name = str(dtype).removeprefix("torch.")

    print(f"Loading {source} on {device} in {dtype_name}", flush=True)
    ckpt, model = _load(cfg, source, output, device, dtype)
    tensors = dict(model.named_parameters())
    before = {name: tensor_bytes([t]) for name, t in tensors.items()}
    total_before = tensor_bytes([*model.parameters(), *model.buffers()])

    start = time.perf_counter()
    with torch.no_grad():
        model = quantizer.quantize(model, device)
    elapsed = time.perf_counter() - start
    quantized = [n for n, t in model.named_parameters() if is_traceable_wrapper_subclass(t)]
    if not quantized:
        raise ConfigError(
            f"{quantizer!r} quantized no weight of the model: choose another quantizer"
        )
    q_after = tensor_bytes([t for n, t in model.named_parameters() if n in set(quantized)])
    total_after = tensor_bytes([*model.parameters(), *model.buffers()])
    print(
        f"Quantized {len(quantized)} linear weights with {quantizer!r} in {elapsed:.1f} s: "
        f"{_human(sum(before[n] for n in quantized))} -> {_human(q_after)}",
        flush=True,
    )
    print(
        f"Model size: {_human(total_before)} -> {_human(total_after)} "
        f"({total_before / max(total_after, 1):.1f}x smaller); the other "
        f"{len(tensors) - len(quantized)} tensors (embeddings, norms, ...) stay {dtype_name}",
        flush=True,
    )

    torchao_config = _torchao_config(quantizer, device, dtype)
    blocker = hf_layout_blocker(ckpt.adapter, torchao_config)
    if blocker is not None:
        print(f"Saving in the torch layout (model.pt, for tunesmith only): {blocker}", flush=True)
    with atomic_directory(output) as tmp:
        ckpt.write_support_files(tmp)
        files = save_quantized(
            model,
            tmp,
            checkpointer=ckpt,
            quantizer=_record(quantizer, node, device),
            dtype=dtype,
            device=device,
            torchao_config=torchao_config,
            source=source,
            sizes={"before": total_before, "after": total_after},
        )
    written = ", ".join(f"{f.name} ({_human((output / f.name).stat().st_size)})" for f in files)
    loads_in = "tunesmith" if blocker else "transformers and tunesmith"
    print(
        f"Saved to {output}: {written}, quantization_config.json and the source's config and "
        f"tokenizer files; {loads_in} load it",
        flush=True,
    )
    print(
        f"Generate with it: tunesmith run generate --config generation "
        f"checkpointer.checkpoint_dir={output}",
        flush=True,
    )


def _torchao_config(quantizer: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """The torchao config a quantizer applied, for the Hugging Face layout's
    ``config.json`` (``None`` for a quantizer that names none)."""
    from tunesmith.protocols import TorchaoConfiguredQuantizer

    if isinstance(quantizer, TorchaoConfiguredQuantizer):
        return quantizer.torchao_config(device, dtype)
    return None
