"""The ``quantize`` recipe: load a checkpoint (merging a PEFT adapter into it if one is
given), quantize its linear weights with a registered quantizer, and write the result.

::

    tunesmith run quantize --config quantization checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct \\
        output_dir=/tmp/Llama-3.2-1B-int8
    tunesmith run quantize --config quantization checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct \\
        output_dir=/tmp/Llama-3.2-1B-int4 quantizer._component_=int4_weight_only quantizer.groupsize=64
    tunesmith run generate --config generation checkpointer.checkpoint_dir=/tmp/Llama-3.2-1B-int8

``output_dir`` appears complete or not at all: ``model.pt`` (``torch.save`` of the
quantized state dict), ``quantization_config.json`` and the source's ``config.json``,
tokenizer and other small files. It is for tunesmith and torch (torchao tensor
subclasses), not for transformers' ``from_pretrained``; see
:mod:`tunesmith.quantization`.
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
            f"{source} is already quantized (it holds quantization_config.json): point "
            "checkpointer.checkpoint_dir at the full-precision model it came from"
        )
    return source


def _output(cfg: DictConfig, source: Path) -> Path:
    from tunesmith.quantization import is_quantized_dir

    value = cfg.output_dir
    if not value:
        raise ConfigError("output_dir is not set: add output_dir=<directory to write>")
    output = Path(value).expanduser()
    if output.resolve() == source.resolve():
        raise ConfigError(f"output_dir is the source checkpoint {source}: choose a new directory")
    # The output directory is replaced as a whole; only ever replace an earlier
    # quantize output, never a directory with someone's other files in it.
    if output.is_file() or (
        output.is_dir() and any(output.iterdir()) and not is_quantized_dir(output)
    ):
        raise ConfigError(
            f"output_dir {output} already exists and is not a quantized model: choose a new "
            "directory (its contents would be replaced)"
        )
    return output


def _load(
    source: Path, output: Path, adapter: Any, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    """``(checkpointer, model)``, the adapter (if any) merged into plain ``nn.Linear``s."""
    from tunesmith.checkpoint import Checkpointer
    from tunesmith.peft import transform_for_adapter

    ckpt = Checkpointer(source, output)  # output_dir: not copied if it lies inside source
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
    from tunesmith.quantization import import_torchao, save_quantized, tensor_bytes

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
    ckpt, model = _load(source, output, cfg.adapter, device, dtype)
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

    model_type = str(ckpt.hf_config.get("model_type") or ckpt.adapter.family)
    with atomic_directory(output) as tmp:
        ckpt.write_support_files(tmp)
        save_quantized(
            model,
            tmp,
            quantizer=_record(quantizer, node, device),
            dtype=dtype,
            device=device,
            model_type=model_type,
            source=source,
            sizes={"before": total_before, "after": total_after},
        )
    weights = output / "model.pt"
    print(
        f"Saved to {output}: model.pt ({_human(weights.stat().st_size)}), "
        "quantization_config.json and the source's config and tokenizer files",
        flush=True,
    )
    print(
        f"Generate with it: tunesmith run generate --config generation "
        f"checkpointer.checkpoint_dir={output}",
        flush=True,
    )
