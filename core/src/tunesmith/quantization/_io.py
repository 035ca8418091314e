"""Saving a quantized model to a directory and loading it back.

The layout (what ``tunesmith run quantize`` writes)::

    output_dir/
      model.pt                   torch.save of the state dict: torchao tensor subclasses
                                 under tunesmith's native key names
      quantization_config.json   the quantizer, its arguments, dtype, device, versions
      config.json, tokenizer files, generation_config.json, ...   copied from the source

This is tunesmith's (and torch's) format, not Hugging Face's: transformers'
``from_pretrained`` does not read it (it finds no ``model.safetensors``), and it needs
torchao to unpickle. Load it with :func:`load_quantized` or ``tunesmith.load_pretrained``.
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

from tunesmith.checkpoint import atomic_write, find_adapter, read_hf_config, resolve_dtype
from tunesmith.errors import CheckpointError
from tunesmith.quantization._layout import FORMAT, QUANTIZATION_CONFIG, WEIGHTS_NAME
from tunesmith.quantization._torchao import INSTALL_HINT, import_torchao

__all__ = [
    "load_quantized",
    "model_size_bytes",
    "read_quantization_config",
    "save_quantized",
    "tensor_bytes",
]

_FORMAT_VERSION = 1
_NOTE = (
    "torch.save of torchao-quantized tensors under tunesmith's native names: load with "
    "tunesmith.load_pretrained or tunesmith.quantization.load_quantized (needs torchao); "
    "transformers' from_pretrained does not read this directory"
)


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


def read_quantization_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``quantization_config.json`` of a quantized model directory.

    Raises:
        CheckpointError: it is missing or not tunesmith's format.
    """
    path = Path(directory).expanduser() / QUANTIZATION_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"no {QUANTIZATION_CONFIG} in {path.parent}: not a quantized model directory; "
            "write one with `tunesmith run quantize --config quantization`"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}: quantize the model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was not written by tunesmith (format {config.get('format') if isinstance(config, dict) else None!r}, "
            f"expected {FORMAT!r}): load it with the tool that wrote it"
        )
    return config


def save_quantized(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    quantizer: Mapping[str, Any],
    dtype: torch.dtype,
    device: str | torch.device,
    model_type: str,
    source: str | os.PathLike | None = None,
    sizes: Mapping[str, int] | None = None,
) -> Path:
    """Write ``model.pt`` and ``quantization_config.json`` into ``directory``.

    The caller copies the source's ``config.json`` and tokenizer files beside them (the
    quantize recipe writes all of it into a temporary directory renamed into place).

    Args:
        model: The quantized model.
        directory: An existing directory.
        quantizer: ``{"quantizer": name, "args": {...}, "portable": bool}`` (what a
            built-in quantizer's ``describe(device)`` returns).
        dtype: The dtype the model was loaded in (its unquantized tensors keep it).
        device: Where it was quantized.
        model_type: ``config.json``'s ``model_type``, recorded for readers.
        source: The checkpoint it came from, recorded for provenance.
        sizes: ``{"before": bytes, "after": bytes}`` to record.

    Returns:
        ``directory``.
    """
    import torchao

    directory = Path(directory)
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: torch.save(model.state_dict(), tmp))
    record = {
        "format": FORMAT,
        "format_version": _FORMAT_VERSION,
        "note": _NOTE,
        "weights": WEIGHTS_NAME,
        "quantizer": quantizer.get("quantizer"),
        "args": dict(quantizer.get("args") or {}),
        "portable": bool(quantizer.get("portable", True)),
        "dtype": str(dtype).removeprefix("torch."),
        "device": torch.device(device).type,
        "model_type": model_type,
        "source": os.fspath(source) if source is not None else None,
        "size_bytes": dict(sizes) if sizes else None,
        "torch_version": torch.__version__,
        "torchao_version": torchao.__version__,
    }
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(
        directory / QUANTIZATION_CONFIG, lambda tmp: tmp.write_text(text, encoding="utf-8")
    )
    return directory


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


def _build(directory: Path) -> tuple[nn.Module, Any]:
    """The architecture ``config.json`` describes, with meta-device weights (no memory)."""
    hf_config = read_hf_config(directory)
    model_type = hf_config.get("model_type")
    if not model_type:
        raise CheckpointError(
            f"config.json in {directory} names no model_type: copy the source model's config.json there"
        )
    adapter = find_adapter(str(model_type), source=f"config.json in {directory}")
    with torch.device("meta"):
        model = adapter.build_from_hf_config(hf_config)
    return model, adapter


def load_quantized(
    output_dir: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    max_seq_len: int | None = None,
) -> tuple[nn.Module, Any]:
    """Load a model written by ``tunesmith run quantize``, and its tokenizer.

    The architecture comes from the directory's ``config.json`` through the installed
    family plugin; the weights are assigned as saved (torchao tensors, and the
    unquantized ones in the dtype the model was quantized in).

    Args:
        output_dir: The quantize recipe's ``output_dir``.
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
    weights = directory / config.get("weights", WEIGHTS_NAME)
    if not weights.is_file():
        raise CheckpointError(
            f"{weights} is missing: the directory is incomplete, quantize the model again"
        )
    import_torchao()  # unpickling torchao tensors needs their classes registered
    model, adapter = _build(directory)
    try:
        state_dict = torch.load(weights, map_location=target, weights_only=True, mmap=True)
    except Exception as exc:  # torch wraps unpickling problems in several types
        raise CheckpointError(
            f"cannot load {weights}: {str(exc).splitlines()[0]} — it needs the torchao release "
            f"it was written with ({config.get('torchao_version')}; {INSTALL_HINT}), or "
            "quantize the model again"
        ) from None
    try:
        model.load_state_dict(state_dict, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights} does not match the architecture in {directory / 'config.json'}: "
            f"{str(exc).splitlines()[0]} — quantize the model again"
        ) from None
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{weights} has no values for {left[:3]}: quantize the model again")
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
