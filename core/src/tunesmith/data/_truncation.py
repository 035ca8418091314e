"""Cutting a sample to a length while keeping its end: shared by the tokenizers and the
datasets (which cut again to the dataset's own ``max_seq_len``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

__all__ = ["end_tail", "truncate"]

#: How many tokens a chat template may write after a turn's end token and still count
#: as the sample's end (ChatML's and Gemma's newline after ``<|im_end|>``/``<end_of_turn>``).
_END_SUFFIX = 2


def end_tail(tokens: Sequence[int], end_ids: Collection[int]) -> int:
    """How many final tokens form a sample's end: its last end token and the few a chat
    template writes after it (``<|im_end|>`` ``\\n``); 0 when it does not end with one."""
    for back in range(1, min(len(tokens), _END_SUFFIX + 1) + 1):
        if tokens[-back] in end_ids:
            return back
    return 0


def truncate(
    tokens: Sequence[int],
    mask: Sequence[Any],
    max_seq_len: int | None,
    *,
    end_ids: Collection[int] = (),
    masked: Any = True,
) -> tuple[list[int], list[Any]]:
    """Cut ``(tokens, mask)`` to ``max_seq_len``, keeping a final end token, masked.

    A sample that ended with an end-of-sequence or end-of-turn token (and the newline a
    chat template may write after it) still ends with them after truncation, but they
    are not trained: where the cut falls, the answer does not end (torchtune, too,
    ends a cut sample with a masked eos).

    Args:
        tokens: Token ids.
        mask: Loss mask (or labels), one entry per token.
        max_seq_len: The length to cut to; ``None`` leaves the sequence whole.
        end_ids: Ids that count as a final end token (eos, eot, ...).
        masked: The mask entry of an untrained token (``True``; for labels, the ignore
            index).

    Returns:
        New ``(tokens, mask)`` lists of at most ``max_seq_len`` entries.
    """
    tokens, mask = list(tokens), list(mask)
    if max_seq_len is None or len(tokens) <= max_seq_len:
        return tokens, mask
    if max_seq_len <= 0:
        return [], []
    tail = end_tail(tokens, end_ids)
    if tail >= max_seq_len:
        tail = 0
    keep, start = max_seq_len - tail, len(tokens) - tail
    return tokens[:keep] + tokens[start:], mask[:keep] + [masked] * tail
