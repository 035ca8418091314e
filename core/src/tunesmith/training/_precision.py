"""Which device and dtype a run uses: ``device: auto`` and ``dtype: auto`` resolved once."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from collections.abc import Iterator

import torch

from tunesmith.errors import ConfigError, did_you_mean

__all__ = ["auto_dtype", "resolve_device", "resolve_dtype", "set_default_dtype"]

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

    ``"auto"`` is the fastest correct dtype (see :func:`auto_dtype`): bf16 on a CUDA
    device that supports it and on a CPU with native bf16, fp32 elsewhere. A named
    dtype is never overridden. fp16 is refused for training: without loss scaling
    its gradients under/overflow; bf16 has fp32's range.

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
            return auto_dtype(device, training=training)[0]
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


def auto_dtype(
    device: str | torch.device | None = None, *, training: bool = True
) -> tuple[torch.dtype, str]:
    """What ``dtype: auto`` means on ``device``, and why.

    - CUDA: bf16 when the GPU supports it (compute capability 8.0 and up), else fp32.
    - CPU, training: bf16 when the CPU computes it natively: x86 with ``avx512_bf16``
      or ``amx_bf16`` in ``/proc/cpuinfo`` (and oneDNN able to use them); where no such
      flags can be read (macOS, Arm, Windows) a ~0.1 s matmul probe decides, bf16
      winning only if it is at least as fast as fp32. Without native support bf16
      matmuls are emulated and measured ~50x slower than fp32, so fp32 is chosen.
    - CPU, inference (generation, evaluation, quantization): fp32, so greedy outputs
      and evaluation scores do not change with the host. bf16 decoding measured
      1.3x faster on a CPU with native bf16 (docs/performance.md): ask for it with
      ``dtype: bf16``.
    - Anything else (MPS, ...): fp32.

    Args:
        device: the device the run uses; ``None`` means ``resolve_device("auto")``.
        training: ``False`` for inference (see above).

    Returns:
        ``(dtype, reason)``: the reason is one short clause for the start-up message.
    """
    device = resolve_device("auto" if device is None else device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, f"{torch.cuda.get_device_name(device)} supports bf16"
        return torch.float32, f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type == "cpu" and not training:
        return torch.float32, "inference on a CPU keeps fp32 (dtype=bf16 is faster where native)"
    if device.type == "cpu":
        native, reason = cpu_bf16_support()
        return (torch.bfloat16 if native else torch.float32), reason
    return torch.float32, f"bf16 speed on {device.type} is not known"


@functools.cache
def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU runs bf16 matmuls natively, and why it is thought so (cached).

    Returns:
        ``(native, reason)``.
    """
    flags = _cpu_flags()
    if flags is not None and flags & {"sse2", "avx2", "avx512f"}:  # an x86 CPU we can read
        found = sorted(flags & {"avx512_bf16", "amx_bf16"})
        if found and _onednn_bf16():
            return True, f"the CPU has native bf16 ({', '.join(found)})"
        return False, "the CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag)"
    fp32, bf16 = _matmul_probe()
    verdict = bf16 >= fp32
    return verdict, (
        f"a bf16 matmul probe ran at {bf16:.0f} GFLOP/s against fp32's {fp32:.0f}"
        + ("" if verdict else ": bf16 is slower here")
    )


def _cpu_flags() -> set[str] | None:
    """The x86 feature flags of ``/proc/cpuinfo``, or ``None`` where there are none."""
    if platform.system() != "Linux":
        return None
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _matmul_probe(n: int = 256, rounds: int = 5) -> tuple[float, float]:
    """Best GFLOP/s of an ``n x n`` matmul in fp32 and in bf16 on this CPU, timed in
    alternation so that a neighbour's load slows both alike."""
    dtypes = (torch.float32, torch.bfloat16)
    operands = {d: (torch.randn(n, n).to(d), torch.randn(n, n).to(d)) for d in dtypes}
    best = dict.fromkeys(dtypes, float("inf"))
    for d in dtypes:  # warm-up: kernel selection, thread pool
        a, b = operands[d]
        a @ b
    for _ in range(rounds):
        for d in dtypes:
            a, b = operands[d]
            start = time.perf_counter()
            a @ b
            best[d] = min(best[d], time.perf_counter() - start)
        if best[torch.bfloat16] > 10 * best[torch.float32]:
            break  # emulated bf16 is ~50x slower: no need to look further
    return tuple(2 * n**3 / max(best[d], 1e-9) / 1e9 for d in dtypes)


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


#: Row counts of bf16/fp16 matrix products on a CPU are rounded up to a multiple of this.
CPU_GEMM_ROW_MULTIPLE = 64


def gemm_row_multiple(device: str | torch.device, dtype: torch.dtype) -> int:
    """The multiple a matrix product's row count should be rounded up to (with rows that
    are ignored) so that each step reuses the kernels of earlier ones.

    torch computes bf16 and fp16 matrix products on the CPU with oneDNN, which compiles
    a kernel for every new shape: measured 27 ms for a (150..160, 32,000) x (32,000,
    512) product seen for the first time against 5 ms once compiled, and ~5 ms for
    each of a decoder layer's smaller ones. Batches of varying length give every step
    new shapes, so a bf16 step on the CPU spent 30-40% of its time compiling kernels.
    Rounding rows up to 64 bounds the shapes a run sees; fp32 on the CPU (MKL) and
    every dtype on CUDA (cuBLAS) have no such cost, so there it is 1.

    Returns:
        ``CPU_GEMM_ROW_MULTIPLE`` for bf16/fp16 on the CPU, else 1.
    """
    cpu = torch.device(device).type == "cpu"
    return CPU_GEMM_ROW_MULTIPLE if cpu and dtype in (torch.bfloat16, torch.float16) else 1
