"""Which device and dtype a run uses: ``device: auto`` and ``dtype: auto`` resolved once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from tunesmith.errors import ConfigError, did_you_mean

__all__ = ["resolve_device", "resolve_dtype", "set_default_dtype"]

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def _local_rank() -> int:
    # torchrun sets LOCAL_RANK: one process per GPU on each node.
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The device a run computes on.

    ``"auto"`` is CUDA when present, else CPU. A CUDA device without an index
    takes the process's ``LOCAL_RANK`` (torchrun's one-process-per-GPU). The
    caller still calls ``torch.cuda.set_device`` on the result.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, or a ``torch.device``.

    Returns:
        The resolved ``torch.device``.

    Raises:
        ConfigError: an unknown device name, or a device this machine does not have.
    """
    if isinstance(name, str):
        key = name.strip().lower()
        if key == "auto":
            key = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(key)
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"unknown device {name!r}"
                + (did_you_mean(key, ["auto", "cpu", "cuda", "mps"]) or "")
                + ": set device to auto, cpu, cuda, cuda:<index> or mps"
            ) from None
    else:
        device = torch.device(name)

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(device)!r} requested but CUDA is not available on this machine: "
                "set device=cpu (or device=auto)"
            )
        index = device.index if device.index is not None else _local_rank()
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"device cuda:{index} requested but this machine has {count} CUDA device(s): "
                "use an index below that, or launch no more processes per node than GPUs"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "device 'mps' requested but MPS is not available on this machine: set device=cpu"
        )
    return device


def resolve_dtype(
    name: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    *,
    training: bool = True,
) -> torch.dtype:
    """The parameter/compute dtype of a run.

    ``"auto"`` is bf16 on a CUDA device that supports it and fp32 otherwise
    (CPU bf16 matmuls are far slower than fp32). fp16 is refused for training:
    without loss scaling its gradients under/overflow; bf16 has fp32's range.

    Args:
        name: ``"auto"``, ``"bf16"``/``"bfloat16"``, ``"fp32"``/``"float32"``,
            ``"fp16"``/``"float16"``, or a ``torch.dtype``.
        device: the device the run uses; ``None`` means ``resolve_device("auto")``.
        training: when ``False`` (generation, evaluation) fp16 is allowed.

    Returns:
        The resolved ``torch.dtype``.

    Raises:
        ConfigError: an unknown name, fp16 for training, or bf16 on a GPU without it.
    """
    device = resolve_device("auto" if device is None else device)
    if isinstance(name, torch.dtype):
        dtype = name
    else:
        key = str(name).strip().lower().removeprefix("torch.")
        if key == "auto":
            if device.type == "cuda" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float32
        if key not in _DTYPES:
            raise ConfigError(
                f"unknown dtype {name!r}"
                + (did_you_mean(key, ["auto", *_DTYPES]) or "")
                + ": set dtype to auto, bf16 or fp32"
            )
        dtype = _DTYPES[key]

    if dtype not in (torch.bfloat16, torch.float32, torch.float16):
        raise ConfigError(f"dtype {dtype} is not supported: set dtype to auto, bf16 or fp32")
    if dtype == torch.float16 and training:
        raise ConfigError(
            "dtype fp16 is not supported for training (no loss scaling, gradients overflow): "
            "set dtype=bf16, or dtype=fp32 if your hardware lacks bf16"
        )
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"dtype bf16 requested but {torch.cuda.get_device_name(device)} does not support "
            "bf16: set dtype=fp32"
        )
    return dtype


@contextlib.contextmanager
def set_default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily make ``dtype`` torch's default, e.g. to build a model directly in bf16.

    Args:
        dtype: the default floating dtype inside the block.

    Yields:
        Nothing; the previous default is restored on exit, even after an error.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
