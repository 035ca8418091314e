"""Losses for crash tests, named by dotted path under ``loss:`` (an ``nn.Module`` class
may come from any module): the real chunked cross-entropy, slowed down or turned
non-finite, so a config alone plants the fault."""

from __future__ import annotations

import math
import time

from tunesmith.training import ChunkedCrossEntropyLoss


class SlowLoss(ChunkedCrossEntropyLoss):
    """Sleeps ``seconds`` per micro-batch, so a process can be signalled mid-epoch."""

    def __init__(self, seconds: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def forward(self, *args, **kwargs):
        time.sleep(self.seconds)
        return super().forward(*args, **kwargs)


class NaNLoss(ChunkedCrossEntropyLoss):
    """The training loss turns NaN from the ``nan_from_call``-th micro-batch on."""

    def __init__(self, nan_from_call: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_from_call = nan_from_call
        self.calls = 0

    def forward(self, *args, **kwargs):
        loss, tokens = super().forward(*args, **kwargs)
        self.calls += 1
        if self.calls >= self.nan_from_call:
            loss = loss * math.nan
        return loss, tokens


class OverflowingLoss(ChunkedCrossEntropyLoss):
    """Raises a plain OverflowError (no tunesmith error) at the ``at_call``-th micro-batch."""

    def __init__(self, at_call: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.at_call = at_call
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at_call:
            raise OverflowError("int too large to convert to float")
        return super().forward(*args, **kwargs)
