"""Helpers every tokenizer shares: joining per-message chunks, masks, truncation."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

__all__ = ["common_prefix_len", "end_tail", "join_chunks", "mask_from_offsets", "truncate"]


def join_chunks(chunks: Iterable[tuple[Sequence[int], bool]]) -> tuple[list[int], list[bool]]:
    """Concatenate ``(token_ids, masked)`` chunks into ``(tokens, mask)``.

    A tokenizer encodes a conversation piece by piece (a header, a message body, an
    end-of-turn token) and knows for each piece whether the loss should see it.

    Args:
        chunks: ``(ids, masked)`` pairs in order; ``masked=True`` keeps ``ids`` out of
            the loss.

    Returns:
        ``(tokens, mask)`` of equal length.
    """
    tokens: list[int] = []
    mask: list[bool] = []
    for ids, masked in chunks:
        tokens.extend(ids)
        mask.extend([bool(masked)] * len(ids))
    return tokens, mask


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
) -> tuple[list[int], list[Any]]:
    """Cut ``(tokens, mask)`` to ``max_seq_len``, keeping a final end token.

    A sample that ended with an end-of-sequence or end-of-turn token (and the newline a
    chat template may write after it) still ends with them after truncation, so the
    model keeps learning where answers stop.

    Args:
        tokens: Token ids.
        mask: Loss mask (or labels), one entry per token.
        max_seq_len: The length to cut to; ``None`` leaves the sequence whole.
        end_ids: Ids that count as a final end token (eos, eot, ...).

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
    return tokens[:keep] + tokens[start:], mask[:keep] + mask[start:]


def common_prefix_len(a: Sequence, b: Sequence) -> int:
    """How many leading items ``a`` and ``b`` share (strings or id lists)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def mask_from_offsets(offsets: Sequence[tuple[int, int]], char_mask: Sequence[bool]) -> list[bool]:
    """Per-token mask from a per-character mask of the text the tokens came from.

    A token is kept in the loss when any character it covers is (a token that
    straddles the end of a prompt and the start of an answer belongs to the answer).

    Args:
        offsets: ``(start, end)`` character span of each token.
        char_mask: ``True`` for characters excluded from the loss.

    Returns:
        One bool per token.
    """
    mask = []
    for start, end in offsets:
        if end > start:
            mask.append(all(char_mask[start:end]))
        elif char_mask:
            # Zero-width tokens (added by a post-processor) follow their position.
            mask.append(char_mask[min(start, len(char_mask) - 1)])
        else:
            mask.append(True)
    return mask
