"""Helpers every tokenizer shares: joining per-message chunks, masks, truncation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tunesmith.data._truncation import end_tail, truncate

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
