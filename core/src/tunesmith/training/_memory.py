"""Peak memory figures for the metric log, in GiB."""

from __future__ import annotations

import os
import resource
import sys

import torch

__all__ = ["memory_stats", "reset_peak_memory_stats"]

_GIB = 1024**3


def _proc_status_kib(field: str) -> int | None:
    """A ``VmXxx`` value (KiB) from ``/proc/self/status``; ``None`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    # VmHWM can be reset (reset_peak_memory_stats), so it gives per-window peaks;
    # getrusage is the portable fallback (KiB on Linux, bytes on macOS).
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def _current_rss_bytes() -> int | None:
    rss = _proc_status_kib("VmRSS")
    return None if rss is None else rss * 1024


def memory_stats(device: str | torch.device) -> dict[str, float]:
    """Peak memory since the last reset, for logging.

    Args:
        device: the training device.

    Returns:
        On CUDA: ``peak_memory_active``, ``peak_memory_alloc``, ``peak_memory_reserved``
        (GiB, from the caching allocator's peaks). Elsewhere: ``peak_memory_rss``
        (the process's peak resident set) and, where the OS reports it,
        ``memory_rss`` (current), in GiB.
    """
    device = torch.device(device)
    if device.type == "cuda":
        stats = torch.cuda.memory_stats(device)
        return {
            "peak_memory_active": stats.get("active_bytes.all.peak", 0) / _GIB,
            "peak_memory_alloc": torch.cuda.max_memory_allocated(device) / _GIB,
            "peak_memory_reserved": torch.cuda.max_memory_reserved(device) / _GIB,
        }
    out = {"peak_memory_rss": _peak_rss_bytes() / _GIB}
    current = _current_rss_bytes()
    if current is not None:
        out["memory_rss"] = current / _GIB
    return out


def reset_peak_memory_stats(device: str | torch.device) -> None:
    """Start a new peak-measuring window (e.g. after each logged step).

    On CPU this works on Linux only (``/proc/self/clear_refs``); elsewhere the
    peak stays the process-lifetime peak.

    Args:
        device: the training device.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        # "5" resets the VmHWM high-water mark of this process (Linux >= 4.0).
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
