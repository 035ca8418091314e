"""Throughput over a logging window and the one-line progress-bar summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["LineProgress", "ThroughputMeter", "format_metrics", "progress_bar"]


class ThroughputMeter:
    """Counts tokens since the last :meth:`reset` and reports tokens per second.

    Args:
        clock: seconds as a float; ``time.perf_counter`` unless a test injects one.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Start a new window (call right after logging)."""
        self._start = self._clock()
        self.tokens = 0

    def update(self, num_tokens: int | torch.Tensor) -> None:
        """Add the tokens processed since the last call (a tensor is read with ``.item()``)."""
        self.tokens += int(num_tokens)

    @property
    def elapsed(self) -> float:
        """Seconds since the window started."""
        return self._clock() - self._start

    @property
    def tokens_per_second(self) -> float:
        """Tokens in this window divided by its duration; 0.0 for an empty window."""
        elapsed = self.elapsed
        return self.tokens / elapsed if elapsed > 0 else 0.0


def _fmt(name: str, value: float | int | torch.Tensor) -> str:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if name == "lr" or name.endswith("_lr") or name.startswith("lr"):
        return f"{value:.2e}"
    if "tokens_per_second" in name or name.endswith("/s"):
        return f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


_SHORT_NAMES = {"tokens_per_second": "tok/s", "tokens_per_second_per_gpu": "tok/s/gpu"}


def format_metrics(metrics: Mapping[str, float | int | torch.Tensor]) -> str:
    """A compact summary for the tqdm description, e.g. ``loss=1.2345 lr=2.00e-05 tok/s=1,234``.

    Args:
        metrics: name to value; ``lr``-like names print in scientific notation,
            ``tokens_per_second`` as a whole number, other floats to 4 decimals.

    Returns:
        The space-separated ``name=value`` pairs, in the mapping's order.
    """
    return " ".join(f"{_SHORT_NAMES.get(k, k)}={_fmt(k, v)}" for k, v in metrics.items())


class LineProgress:
    """What a progress bar shows, as plain lines for a log file or pipe: one when it
    starts, at most one per ``interval`` seconds, and one at the end — where tqdm's
    carriage-return redraws would pile up into one unreadable line.

    Takes the subset of tqdm's arguments the recipes use; ``update``,
    ``set_postfix_str`` and the context manager behave as tqdm's.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        disable: bool = False,
        interval: float = 30.0,
        file: Any = None,
        clock: Callable[[], float] = time.monotonic,
        **_: Any,
    ) -> None:
        self.total, self.n, self.desc = total, initial, desc
        self.disable = disable
        self._interval = interval
        self._file = file
        self._clock = clock
        self._postfix = ""
        self._start = self._last = clock()

    def _line(self) -> None:
        if self.disable:
            return
        import sys

        done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        elapsed = self._clock() - self._start
        extra = f" {self._postfix}" if self._postfix else ""
        print(
            f"{self.desc}: {done} steps, {elapsed:.0f} s{extra}",
            file=self._file or sys.stderr,
            flush=True,
        )
        self._last = self._clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._clock() - self._last >= self._interval:
            self._line()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self._postfix = text

    def close(self) -> None:
        self._line()
        self.disable = True

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(**kwargs: Any) -> Any:
    """tqdm on a terminal; :class:`LineProgress` when stderr is a file or a pipe."""
    import sys

    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(**kwargs)
    return LineProgress(**kwargs)
