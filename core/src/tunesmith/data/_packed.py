"""Packing: many short samples per fixed-length sequence, kept apart by a block-causal mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX
from tunesmith.errors import DataError

__all__ = ["PackedDataset", "create_block_causal_mask"]


class PackedDataset(Dataset):
    """Greedily packs a dataset's samples into sequences of exactly ``max_seq_len`` tokens.

    Each item is a dict of LongTensors:

    - ``tokens``, ``labels``: ``[max_seq_len]``; the tail is padded with
      ``padding_idx`` / ``CROSS_ENTROPY_IGNORE_IDX``.
    - ``input_pos``: ``[max_seq_len]``, restarting at 0 for each sample (and for the
      padding), so positional encodings match training on the samples one by one.
    - ``seq_lens``: the lengths of the pack's segments, padding included; they sum to
      ``max_seq_len``. :func:`create_block_causal_mask` turns them into the mask.

    The first label of every sample is set to ``CROSS_ENTROPY_IGNORE_IDX``: once the
    recipe shifts labels left, that label would be the target of the previous
    sample's last token, which must not learn to predict an unrelated sample. A
    sample's first label is never a target when it is trained alone, so the loss
    matches unpacked training exactly.

    Packing happens once, in the constructor.

    Args:
        ds: Map-style dataset of ``{"tokens": list[int], "labels": list[int]}``.
        max_seq_len: Length of every pack.
        padding_idx: Token id used to pad the last part of a pack.
        split_across_pack: Let a sample that does not fit in the current pack continue
            in the next one (its continuation starts at position 0); else a sample that
            does not fit starts a new pack.

    Raises:
        DataError: a sample longer than ``max_seq_len`` with ``split_across_pack=False``,
            or nothing to pack.
    """

    def __init__(
        self,
        ds: Dataset,
        max_seq_len: int,
        *,
        padding_idx: int = 0,
        split_across_pack: bool = False,
    ) -> None:
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.max_seq_len = max_seq_len
        self.padding_idx = padding_idx
        self.split_across_pack = split_across_pack
        self.packs: list[dict[str, torch.Tensor]] = []
        self._pack(ds)

    def _pack(self, ds: Dataset) -> None:
        tokens: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        seq_lens: list[int] = []

        def add(part_tokens: Sequence[int], part_labels: Sequence[int]) -> None:
            tokens.extend(part_tokens)
            labels.extend(part_labels)
            positions.extend(range(len(part_tokens)))
            seq_lens.append(len(part_tokens))

        def flush() -> None:
            pad = self.max_seq_len - len(tokens)
            if pad:
                add([self.padding_idx] * pad, [CROSS_ENTROPY_IGNORE_IDX] * pad)
            self.packs.append(
                {
                    "tokens": torch.tensor(tokens, dtype=torch.long),
                    "labels": torch.tensor(labels, dtype=torch.long),
                    "input_pos": torch.tensor(positions, dtype=torch.long),
                    "seq_lens": torch.tensor(seq_lens, dtype=torch.long),
                }
            )
            for buffer in (tokens, labels, positions, seq_lens):
                buffer.clear()

        for index in range(len(ds)):
            sample = ds[index]
            sample_tokens, sample_labels = list(sample["tokens"]), list(sample["labels"])
            if not sample_tokens:
                continue
            if len(sample_tokens) != len(sample_labels):
                raise ValueError(
                    f"sample {index} has {len(sample_tokens)} tokens but "
                    f"{len(sample_labels)} labels"
                )
            sample_labels[0] = CROSS_ENTROPY_IGNORE_IDX
            if not self.split_across_pack:
                if len(sample_tokens) > self.max_seq_len:
                    raise DataError(
                        f"sample {index} has {len(sample_tokens)} tokens, more than the pack "
                        f"length {self.max_seq_len}: truncate samples to max_seq_len (the "
                        "dataset builders do), raise max_seq_len, or pack with "
                        "split_across_pack=True"
                    )
                if len(tokens) + len(sample_tokens) > self.max_seq_len:
                    flush()
                add(sample_tokens, sample_labels)
                continue
            while sample_tokens:
                room = self.max_seq_len - len(tokens)
                add(sample_tokens[:room], sample_labels[:room])
                sample_tokens, sample_labels = sample_tokens[room:], sample_labels[room:]
                if len(tokens) == self.max_seq_len:
                    flush()
        if tokens:
            flush()
        if not self.packs:
            raise DataError("nothing to pack: every sample is empty")

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.packs[index]


def create_block_causal_mask(seq_lens: Sequence[torch.Tensor | Sequence[int]]) -> torch.Tensor:
    """The attention mask of a batch of packs: causal within each segment, nothing across.

    Args:
        seq_lens: Per pack, its segment lengths (all packs summing to the same length).

    Returns:
        BoolTensor ``[b, s, s]``; ``mask[b, i, j]`` is ``True`` where token ``i`` may
        attend to token ``j``.
    """
    masks = []
    for lens in seq_lens:
        lens = torch.as_tensor(lens, dtype=torch.long)
        segment = torch.repeat_interleave(torch.arange(len(lens)), lens)  # (s,)
        same = segment[:, None] == segment[None, :]  # (s, s)
        masks.append(torch.tril(same))
    return torch.stack(masks)
