"""Reading a dtype from a user's string or a config.json."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.errors import CheckpointError

__all__ = ["config_dtype", "resolve_dtype"]

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
