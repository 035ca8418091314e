"""Batching samples into tensors.

Labels come out aligned with tokens (``labels[i]`` is the label *of* ``tokens[i]``),
not shifted: the recipe shifts them when it computes the next-token loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX
from tunesmith.data._packed import create_block_causal_mask, end_to_end
from tunesmith.modules._masks import DocumentMask

__all__ = ["packed_collate", "padded_collate", "padding_free_collate"]


def padded_collate(
    batch: Sequence[Mapping[str, Any]],
    *,
    pad_id: int = 0,
    ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad samples to the batch's longest one.

    Packed samples (those with ``input_pos``) are handed to :func:`packed_collate`,
    so a recipe can use this one function whatever the dataset.

    Args:
        batch: Samples ``{"tokens": list[int], "labels": list[int]}``.
        pad_id: Token id for padding (use ``tokenizer.pad_id``).
        ignore_idx: Label for padding, ignored by the loss.
        pad_to_multiple_of: Round the padded length up to a multiple of this
            (steadier shapes for ``torch.compile``).

    Returns:
        ``{"tokens": LongTensor [b, s], "labels": LongTensor [b, s]}``, labels not shifted.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if "input_pos" in batch[0]:
        return packed_collate(batch)
    lengths = [len(sample["tokens"]) for sample in batch]
    for sample, length in zip(batch, lengths, strict=True):
        if len(sample["labels"]) != length:
            raise ValueError(f"a sample has {length} tokens but {len(sample['labels'])} labels")
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), ignore_idx, dtype=torch.long)
    for row, (sample, length) in enumerate(zip(batch, lengths, strict=True)):
        tokens[row, :length] = torch.as_tensor(sample["tokens"], dtype=torch.long)
        labels[row, :length] = torch.as_tensor(sample["labels"], dtype=torch.long)
    return {"tokens": tokens, "labels": labels}


def packed_collate(
    batch: Sequence[Mapping[str, Any]], *, dense_mask: bool = False
) -> dict[str, torch.Tensor | DocumentMask]:
    """Stack packs from :class:`PackedDataset` and give their attention mask.

    Args:
        batch: Packs (``tokens``, ``labels``, ``input_pos``, ``seq_lens``).
        dense_mask: Give the mask as a ``[b, s, s]`` BoolTensor instead of a
            :class:`~tunesmith.modules.DocumentMask`, for a model that takes only
            tensors (the document form lets attention skip the masked-out pairs).

    Returns:
        ``{"tokens", "labels", "input_pos"}`` as LongTensors ``[b, s]`` (labels not
        shifted) and ``"mask"``: a :class:`~tunesmith.modules.DocumentMask` (or the
        dense BoolTensor, ``True`` = may attend), ready for
        ``model(tokens, mask=mask, input_pos=input_pos)``.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {
        key: torch.stack([torch.as_tensor(sample[key], dtype=torch.long) for sample in batch])
        for key in ("tokens", "labels", "input_pos")
    }
    seq_lens = [sample["seq_lens"] for sample in batch]
    out["mask"] = (
        create_block_causal_mask(seq_lens) if dense_mask else DocumentMask.from_seq_lens(seq_lens)
    )
    return out


def padding_free_collate(
    batch: Sequence[Mapping[str, Any]],
    *,
    ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX,
    pad_to_multiple_of: int | None = None,
    pad_id: int = 0,
) -> dict[str, torch.Tensor | DocumentMask]:
    """Lay a batch's samples end to end in one row of exactly their tokens: no padding.

    The batch trains as it would padded: each sample attends causally to itself alone
    (a :class:`~tunesmith.modules.DocumentMask`), its positions start at 0, and its
    first label is ignored (after the shift it would be the previous sample's last
    target, and it is never a target in a padded row). The decoder's layers then
    spend nothing on padding, which is a quarter of a padded batch of instruction data.

    Args:
        batch: Samples ``{"tokens": list[int], "labels": list[int]}``, none empty.
        ignore_idx: Label of each sample's first position.
        pad_to_multiple_of: Round the row's length up to a multiple of this with one
            more document of ``pad_id`` tokens, all labelled ``ignore_idx`` (steadier
            shapes, for kernels compiled per shape); it changes no sample's loss.
        pad_id: Token id of that document.

    Returns:
        :func:`packed_collate`'s form for one pack: ``tokens``, ``labels``,
        ``input_pos`` ``[1, total]`` and the ``mask``.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    parts = []
    for sample in batch:
        tokens, labels = list(sample["tokens"]), list(sample["labels"])
        if len(labels) != len(tokens):
            raise ValueError(f"a sample has {len(tokens)} tokens but {len(labels)} labels")
        if not tokens:
            raise ValueError("cannot collate an empty sample")
        parts.append((tokens, [ignore_idx, *labels[1:]]))
    total = sum(len(tokens) for tokens, _ in parts)
    if pad_to_multiple_of and total % pad_to_multiple_of:
        pad = pad_to_multiple_of - total % pad_to_multiple_of
        parts.append(([pad_id] * pad, [ignore_idx] * pad))
    return packed_collate([end_to_end(parts)])
