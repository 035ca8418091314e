"""Saving a quantized model to a directory and loading it back.

``tunesmith run quantize`` writes the built-in quantizers' output in the **Hugging Face
layout**, the one transformers writes for a model quantized with ``TorchAoConfig``, so
transformers' ``from_pretrained`` loads it unchanged (and vLLM's torchao support,
which reads transformers' torchao checkpoints)::

    output_dir/
      model.safetensors          torchao tensors flattened by torchao's safetensors
                                 support (``_weight_qdata``, ``_weight_scale``, ... with
                                 their layout in the header), Hugging Face key names;
                                 large models in shards with model.safetensors.index.json
      config.json                the source's, plus ``quantization_config`` (quant_method
                                 torchao, the torchao config) and the dtype it runs in
      quantization_config.json   tunesmith's record: quantizer, arguments, dtype, device,
                                 versions (written last: it marks a finished output)
      tokenizer files, generation_config.json, ...   copied from the source

A quantizer that names no torchao config (a third party's), or a family whose
Hugging Face weights fuse several native ones (quantized tensors cannot be
concatenated), gets the **torch layout** instead: ``model.pt``, ``torch.save`` of the
quantized state dict under native names, which only tunesmith reads (needs torchao to
unpickle). :func:`load_quantized` reads both, and any Hugging Face checkpoint
transformers quantized with torchao.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tunesmith.checkpoint import (
    Checkpointer,
    atomic_write,
    config_dtype,
    declare_dtype,
    find_adapter,
    find_hf_weight_files,
    load_hf_state_dict,
    load_model_weights,
    read_hf_config,
    resolve_dtype,
    save_hf_state_dict,
)
from tunesmith.errors import CheckpointError
from tunesmith.quantization._layout import (
    FORMAT,
    QUANTIZATION_CONFIG,
    WEIGHTS_NAME,
    is_quantize_output,
    torchao_quantization_config,
)
from tunesmith.quantization._torchao import INSTALL_HINT, import_torchao

__all__ = [
    "hf_layout_blocker",
    "load_quantized",
    "model_size_bytes",
    "read_quantization_config",
    "save_quantized",
    "tensor_bytes",
]

_FORMAT_VERSION = 2  # 1: the torch layout only
_NOTES = {
    "huggingface": (
        "torchao-quantized weights in the Hugging Face layout (config.json's "
        "quantization_config): transformers' from_pretrained and "
        "tunesmith.load_pretrained load this directory (with torchao installed)"
    ),
    "torch": (
        "torch.save of torchao-quantized tensors under tunesmith's native names: load with "
        "tunesmith.load_pretrained or tunesmith.quantization.load_quantized (needs torchao); "
        "transformers' from_pretrained does not read this directory"
    ),
}
#: torchao tensors whose packing runs only on CUDA (tinygemm's int4 tiles).
_CUDA_ONLY_TENSORS = ("Int4TilePackedTo4dTensor",)


def _tensor_bytes(tensor: torch.Tensor, seen: set[tuple[int, int]]) -> int:
    if is_traceable_wrapper_subclass(tensor):  # a torchao tensor: count what it holds
        names, _ = tensor.__tensor_flatten__()
        inner = [getattr(tensor, name, None) for name in names]
        return sum(_tensor_bytes(t, seen) for t in inner if isinstance(t, torch.Tensor))
    nbytes = tensor.numel() * tensor.element_size()
    key = (tensor.data_ptr(), nbytes)
    if key in seen:  # a tied weight counts once
        return 0
    seen.add(key)
    return nbytes


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by ``tensors``: a torchao tensor counts its packed data and scales (not
    its logical dtype), and a tensor listed twice (a tied weight) counts once."""
    seen: set[tuple[int, int]] = set()
    return sum(_tensor_bytes(t.detach(), seen) for t in tensors)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes held by ``model``'s parameters and buffers (see :func:`tensor_bytes`)."""
    return tensor_bytes([*model.parameters(), *model.buffers()])


# ---- saving ------------------------------------------------------------------


def hf_layout_blocker(adapter: Any, torchao_config: Any) -> str | None:
    """Why a model cannot be saved in the Hugging Face layout, or ``None`` when it can.

    Args:
        adapter: The family's :class:`~tunesmith.CheckpointAdapter`.
        torchao_config: The torchao config the quantizer applied (``None``: it named none).
    """
    if torchao_config is None:
        return "the quantizer names no torchao config for config.json"
    if adapter.fused:
        fused = ", ".join(sorted({spec.hf.split(".")[-1] for spec in adapter.fused}))
        return (
            f"the {adapter.family} family's Hugging Face weights fuse native ones ({fused}), "
            "and quantized tensors cannot be concatenated"
        )
    if adapter.convert_to_hf is not None:
        return f"the {adapter.family} family converts its weights on the way to Hugging Face names"
    return None


def save_quantized(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    checkpointer: Checkpointer,
    quantizer: Mapping[str, Any],
    dtype: torch.dtype,
    device: str | torch.device,
    torchao_config: Any = None,
    source: str | os.PathLike | None = None,
    sizes: Mapping[str, int] | None = None,
    max_shard_size: int | str = "5GB",
) -> list[Path]:
    """Write the quantized weights and ``quantization_config.json`` into ``directory``.

    The caller has copied the source's ``config.json`` and tokenizer files there (the
    quantize recipe writes all of it into a temporary directory renamed into place);
    in the Hugging Face layout ``config.json`` gets the ``quantization_config``.

    Args:
        model: The quantized model.
        directory: An existing directory.
        checkpointer: The source's checkpointer (its family names the weights in
            Hugging Face format).
        quantizer: ``{"quantizer": name, "args": {...}, "portable": bool}`` (what a
            built-in quantizer's ``describe(device)`` returns).
        dtype: The dtype the model was loaded in (its unquantized tensors keep it).
        device: Where it was quantized.
        torchao_config: The torchao config the quantizer applied; ``None`` (or a
            family :func:`hf_layout_blocker` refuses) writes the torch layout.
        source: The checkpoint it came from, recorded for provenance.
        sizes: ``{"before": bytes, "after": bytes}`` to record.
        max_shard_size: Bytes per safetensors shard in the Hugging Face layout.

    Returns:
        The weight files written.
    """
    import torchao

    directory = Path(directory)
    hf_layout = hf_layout_blocker(checkpointer.adapter, torchao_config) is None
    if hf_layout:
        files = _save_hf_layout(
            model, directory, checkpointer, torchao_config, dtype, max_shard_size
        )
    else:
        files = [directory / WEIGHTS_NAME]
        atomic_write(files[0], lambda tmp: torch.save(model.state_dict(), tmp))
    layout = "huggingface" if hf_layout else "torch"
    record = {
        "format": FORMAT,
        "format_version": _FORMAT_VERSION,
        "layout": layout,
        "note": _NOTES[layout],
        "weights": files[0].name if len(files) == 1 else "model.safetensors.index.json",
        "quantizer": quantizer.get("quantizer"),
        "args": dict(quantizer.get("args") or {}),
        "portable": bool(quantizer.get("portable", True)),
        "dtype": str(dtype).removeprefix("torch."),
        "device": torch.device(device).type,
        "model_type": str(checkpointer.hf_config.get("model_type") or checkpointer.adapter.family),
        "source": os.fspath(source) if source is not None else None,
        "size_bytes": dict(sizes) if sizes else None,
        "torch_version": torch.__version__,
        "torchao_version": torchao.__version__,
    }
    _write_json(directory / QUANTIZATION_CONFIG, record)
    return files


def _save_hf_layout(
    model: nn.Module,
    directory: Path,
    checkpointer: Checkpointer,
    torchao_config: Any,
    dtype: torch.dtype,
    max_shard_size: int | str,
) -> list[Path]:
    from torchao.core.config import config_to_dict
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    hf = checkpointer.to_hf(model.state_dict())
    tensors, metadata = flatten_tensor_state_dict(hf)
    # Every shard's header carries the whole layout, as transformers writes it.
    files = save_hf_state_dict(
        tensors, directory, metadata=metadata, max_shard_size=max_shard_size
    )
    config = read_hf_config(directory)
    declare_dtype(config, dtype)  # the dtype it computes in
    config["quantization_config"] = {
        "quant_method": "torchao",
        "quant_type": {"default": config_to_dict(torchao_config)},
        # The linears left as they were (an untied lm_head), named as transformers skips.
        "modules_to_not_convert": _linears_left(model, hf, checkpointer),
        "include_input_output_embeddings": False,
        "untie_embedding_weights": False,
    }
    _write_json(directory / "config.json", config)
    return files


def _linears_left(model: nn.Module, hf: Mapping[str, Any], checkpointer: Checkpointer) -> list:
    """The Hugging Face names of the ``nn.Linear`` modules left unquantized."""
    left = {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not is_traceable_wrapper_subclass(module.weight)
    }
    if not left:
        return []
    names = checkpointer.adapter.native_to_hf_state_dict(
        left, checkpointer.hf_config, layout=checkpointer.key_layout
    )
    return sorted(name.removesuffix(".weight") for name in names if name in hf)


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    text = json.dumps(value, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---- loading -------------------------------------------------------------------


def read_quantization_config(directory: str | os.PathLike) -> dict[str, Any]:
    """What a quantized model directory records about itself: its
    ``quantization_config.json``, or, for a checkpoint transformers quantized with
    torchao, the same fields read from its ``config.json`` and weights.

    Raises:
        CheckpointError: neither is there, or the record is not tunesmith's format.
    """
    directory = Path(directory).expanduser()
    if not is_quantize_output(directory):
        return _transformers_record(directory)
    path = directory / QUANTIZATION_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}: quantize the model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was not written by tunesmith (format {config.get('format') if isinstance(config, dict) else None!r}, "
            f"expected {FORMAT!r}): load it with the tool that wrote it"
        )
    config.setdefault("layout", "torch")  # format 1
    return config


def _transformers_record(directory: Path) -> dict[str, Any]:
    quantization = torchao_quantization_config(directory)
    if quantization is None:
        raise CheckpointError(
            f"no {QUANTIZATION_CONFIG} in {directory}, and its config.json names no torchao "
            "quantization: not a quantized model directory; write one with "
            "`tunesmith run quantize --config quantization`"
        )
    dtype = config_dtype(read_hf_config(directory)) or torch.float32
    types = _tensor_types(_safetensors_metadata(directory))
    cuda_only = any(name in types for name in _CUDA_ONLY_TENSORS)
    default = (quantization.get("quant_type") or {}).get("default", {})
    return {
        "layout": "huggingface",
        "quantizer": default.get("_type") if isinstance(default, dict) else None,
        "dtype": str(dtype).removeprefix("torch."),
        "device": "cuda" if cuda_only else "cpu",
        "portable": not cuda_only,
    }


def _safetensors_metadata(directory: Path) -> dict[str, str]:
    """The weight files' safetensors headers, merged (torchao's layout of each tensor)."""
    from safetensors import safe_open

    metadata: dict[str, str] = {}
    for path in find_hf_weight_files(directory):
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path} is not safetensors: tunesmith reads torchao checkpoints saved as "
                "safetensors (transformers' save_pretrained default); save the model again"
            )
        with safe_open(str(path), framework="pt") as handle:
            metadata.update(handle.metadata() or {})
    return metadata


def _tensor_types(metadata: Mapping[str, str]) -> set[str]:
    """The tensor classes a torchao safetensors header names (``Int8Tensor``, ...)."""
    types = set()
    for key, value in metadata.items():
        if key not in ("format", "tensor_names"):
            try:
                types.add(json.loads(value).get("_type"))
            except (ValueError, AttributeError):
                pass
    return types


def _device(
    requested: str | torch.device | None, config: Mapping[str, Any], where: Path
) -> torch.device:
    if requested is None or requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(requested)
    if not config.get("portable", True) and device.type != config.get("device"):
        raise CheckpointError(
            f"{where} holds {config.get('quantizer')} weights packed for {config.get('device')}, "
            f"which do not run on {device.type}: load it with device={config.get('device')}, or "
            f"quantize the source again on {device.type}"
        )
    return device


def _build(directory: Path, hf_config: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    """The architecture ``config.json`` describes, with meta-device weights (no memory)."""
    model_type = hf_config.get("model_type")
    if not model_type:
        raise CheckpointError(
            f"config.json in {directory} names no model_type: copy the source model's config.json there"
        )
    adapter = find_adapter(str(model_type), source=f"config.json in {directory}")
    with torch.device("meta"):
        model = adapter.build_from_hf_config(hf_config)
    return model, adapter


def _read_torch_layout(path: Path, config: Mapping[str, Any], device: torch.device) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: the directory is incomplete, quantize the model again"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=True)
    except Exception as exc:  # torch wraps unpickling problems in several types
        raise CheckpointError(
            f"cannot load {path}: {str(exc).splitlines()[0]} — it needs the torchao release "
            f"it was written with ({config.get('torchao_version')}; {INSTALL_HINT}), or "
            "quantize the model again"
        ) from None


def _read_hf_layout(
    directory: Path, adapter: Any, hf_config: Mapping[str, Any], device: torch.device
) -> dict:
    """The native state dict of a torchao checkpoint in the Hugging Face layout."""
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    from tunesmith.checkpoint._checkpointer import HF_IGNORED_KEYS

    metadata = _safetensors_metadata(directory)
    if "tensor_names" not in metadata:
        raise CheckpointError(
            f"the weights in {directory} carry no torchao layout in their safetensors header: "
            "they were not saved from a torchao-quantized model; quantize the source again"
        )
    flat = load_hf_state_dict(directory, device=device)
    try:
        hf, leftover = unflatten_tensor_state_dict(flat, metadata)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"cannot rebuild the torchao tensors in {directory} ({exc}): it needs a torchao "
            f"release that knows them ({INSTALL_HINT}), or quantize the source again"
        ) from None
    if leftover:
        raise CheckpointError(
            f"{len(leftover)} tensor(s) in {directory} belong to no weight the header names "
            f"({', '.join(sorted(leftover)[:3])}): the files are mixed up, quantize the source again"
        )
    return adapter.hf_to_native_state_dict(
        hf, hf_config, ignore=HF_IGNORED_KEYS, source=f"checkpoint in {directory}"
    )


def load_quantized(
    output_dir: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    max_seq_len: int | None = None,
) -> tuple[nn.Module, Any]:
    """Load a torchao-quantized model, and its tokenizer: a ``tunesmith run quantize``
    output (either layout), or a Hugging Face checkpoint transformers quantized with
    torchao.

    The architecture comes from the directory's ``config.json`` through the installed
    family plugin; the weights are assigned as saved (torchao tensors, and the
    unquantized ones in the dtype the model was quantized in).

    Args:
        output_dir: The quantized model's directory.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` or ``"auto"``: CUDA when present.
            int4 weights quantized on CUDA run only there.
        dtype: The model runs in the dtype it was quantized in (``quantization_config.json``
            ``dtype``); another one here is warned about and ignored. ``None``: that dtype.
        max_seq_len: Truncation length for the tokenizer.

    Returns:
        ``(model, tokenizer)``, the model in eval mode with nothing requiring grad.

    Raises:
        CheckpointError: not a quantized model directory, weights that do not match the
            architecture, or a device the weights cannot run on.
        TunesmithError: torchao is not installed.

    Example:
        >>> model, tokenizer = load_quantized("/tmp/Llama-3.2-1B-int8")
        >>> print(tunesmith.generate(model, tokenizer, "Hello", max_new_tokens=20))
    """
    directory = Path(output_dir).expanduser()
    config = read_quantization_config(directory)
    target = _device(device, config, directory)
    _check_dtype(directory, config, dtype)
    import_torchao()  # torchao's tensor classes must be registered to rebuild them
    hf_config = read_hf_config(directory)
    model, adapter = _build(directory, hf_config)
    if config["layout"] == "huggingface":
        state_dict = _read_hf_layout(directory, adapter, hf_config, target)
    else:
        state_dict = _read_torch_layout(
            directory / config.get("weights", WEIGHTS_NAME), config, target
        )
    load_model_weights(model, state_dict)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(
            f"the weights in {directory} have no values for {left[:3]}: quantize the model again"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()

    from tunesmith.tokenizers import auto_tokenizer

    tokenizer = auto_tokenizer(directory, family=adapter.family, max_seq_len=max_seq_len)
    return model, tokenizer


def _check_dtype(
    directory: Path, config: Mapping[str, Any], requested: torch.dtype | str | None
) -> None:
    saved = resolve_dtype(config.get("dtype", "float32"))
    if requested is None or resolve_dtype(requested) == saved:
        return
    # Quantized tensors compute in the dtype they were made from; casting them is not
    # supported, so the model runs as saved rather than failing a generate/eval run.
    warnings.warn(
        f"{directory} was quantized in {str(saved).removeprefix('torch.')} and runs in it, not "
        f"{str(resolve_dtype(requested)).removeprefix('torch.')}: quantize the source again "
        "with dtype=... to change it",
        stacklevel=3,
    )
