"""Packed documents as a mask: causal attention inside each document, none across."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["DocumentMask"]


@dataclass(frozen=True)
class DocumentMask:
    """The attention mask of a batch of packs, kept as document lengths.

    Pass it as ``mask=`` to a :class:`~tunesmith.modules.TransformerDecoder` (no KV
    cache): attention then runs causally on each document's own slice of the
    sequence, so a pack costs what its documents cost alone, not what one causal
    attention over the whole pack costs (about twice as much for ten documents of a
    512-token pack, and more with a dense block-causal mask). ``to_dense()`` gives the
    equivalent ``(b, s, s)`` boolean mask for models that only take tensors.

    Args:
        seq_lens: Per row of the batch, the lengths of its segments in order (a pack's
            padding is a segment of its own); every row sums to the same length.

    Raises:
        ValueError: rows of different lengths, or a segment that is not positive.
    """

    seq_lens: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        rows = tuple(tuple(int(n) for n in row) for row in self.seq_lens)
        object.__setattr__(self, "seq_lens", rows)
        if not rows:
            raise ValueError("a DocumentMask needs at least one row")
        if any(n < 1 for row in rows for n in row):
            raise ValueError(f"segment lengths must be positive, got {rows}")
        if len({sum(row) for row in rows}) > 1:
            raise ValueError(f"every row must have the same length, got {[sum(r) for r in rows]}")

    @classmethod
    def from_seq_lens(cls, seq_lens: Sequence[torch.Tensor | Sequence[int]]) -> DocumentMask:
        """Build from per-row lengths given as tensors or lists (what packs carry)."""
        return cls(tuple(tuple(torch.as_tensor(row).tolist()) for row in seq_lens))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(b, s, s)``, the shape of the dense mask."""
        s = sum(self.seq_lens[0])
        return (len(self.seq_lens), s, s)

    def to(self, *args, **kwargs) -> DocumentMask:
        """Itself: it holds lengths, not tensors, so code that moves a batch's tensors
        to a device (``batch[k].to(device)``) may move it too."""
        return self

    def spans(self, row: int) -> list[tuple[int, int]]:
        """``(start, end)`` of each segment of ``row``."""
        out, start = [], 0
        for n in self.seq_lens[row]:
            out.append((start, start + n))
            start += n
        return out

    def to_dense(self, device: torch.device | str | None = None) -> torch.Tensor:
        """BoolTensor ``(b, s, s)``, True where query ``i`` may attend key ``j``."""
        masks = []
        for row in self.seq_lens:
            segment = torch.repeat_interleave(
                torch.arange(len(row), device=device), torch.tensor(row, device=device)
            )  # (s,)
            masks.append(torch.tril(segment[:, None] == segment[None, :]))  # (s, s)
        return torch.stack(masks)
