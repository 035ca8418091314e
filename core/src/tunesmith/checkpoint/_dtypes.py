"""Reading a dtype from a user's string or a config.json."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import CheckpointError

__all__ = ["config_dtype", "declare_dtype", "record_dtype", "resolve_dtype", "stored_dtype"]

_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "fp64": torch.float64,
    "float64": torch.float64,
}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.bfloat16``, ``"bf16"``, ``"bfloat16"`` or ``"torch.bfloat16"`` -> ``torch.bfloat16``.

    Raises:
        CheckpointError: a string that names no floating-point dtype.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _NAMES:
        raise CheckpointError(
            f"unknown dtype {dtype!r}: use one of bf16, fp16, fp32 (or bfloat16, float16, float32)"
        )
    return _NAMES[key]


def config_dtype(config: dict[str, Any]) -> torch.dtype | None:
    """The dtype a ``config.json`` declares (``dtype`` in transformers 5, ``torch_dtype``
    before), or ``None`` when it declares none we know."""
    for key in ("dtype", "torch_dtype"):
        value = config.get(key)
        if isinstance(value, str) and value.lower().removeprefix("torch.") in _NAMES:
            return _NAMES[value.lower().removeprefix("torch.")]
    return None


def stored_dtype(state_dict: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """The dtype most of the floating-point tensors of ``state_dict`` have (``None``:
    there are none)."""
    counts = Counter(t.dtype for t in state_dict.values() if t.is_floating_point())
    return counts.most_common(1)[0][0] if counts else None


def declare_dtype(config: dict[str, Any], dtype: torch.dtype) -> bool:
    """Make a ``config.json`` dict declare ``dtype`` (transformers and vLLM load a model
    in the declared one): ``dtype``, and ``torch_dtype`` too where it has that older key.

    Returns:
        Whether ``config`` changed.
    """
    name = str(dtype).removeprefix("torch.")
    keys = ["dtype"] + (["torch_dtype"] if "torch_dtype" in config else [])
    if all(config.get(key) == name for key in keys):
        return False
    config.update(dict.fromkeys(keys, name))
    return True


def record_dtype(directory: str | Path, dtype: torch.dtype | None) -> None:
    """Make ``directory/config.json`` declare ``dtype``, the dtype its weights were
    written in (see :func:`declare_dtype`)."""
    from tunesmith.checkpoint._files import atomic_write

    path = Path(directory) / "config.json"
    if dtype is None or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if not declare_dtype(config, dtype):
        return
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
