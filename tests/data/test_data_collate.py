"""padded_collate, packed_collate and padding_free_collate."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

from tunesmith.data import (
    CROSS_ENTROPY_IGNORE_IDX,
    PackedDataset,
    alpaca,
    create_block_causal_mask,
    packed_collate,
    padded_collate,
    padding_free_collate,
)

IGNORE = CROSS_ENTROPY_IGNORE_IDX
BATCH = [
    {"tokens": [1, 2, 3], "labels": [IGNORE, 2, 3]},
    {"tokens": [4, 5, 6, 7, 8], "labels": [IGNORE, IGNORE, 6, 7, 8]},
    {"tokens": [9], "labels": [9]},
]


def test_right_padding_values():
    out = padded_collate(BATCH, pad_id=99)
    assert set(out) == {"tokens", "labels"}
    assert out["tokens"].dtype == out["labels"].dtype == torch.long
    assert out["tokens"].tolist() == [[1, 2, 3, 99, 99], [4, 5, 6, 7, 8], [9, 99, 99, 99, 99]]
    # labels aligned with tokens, not shifted; padding ignored
    assert out["labels"].tolist() == [
        [IGNORE, 2, 3, IGNORE, IGNORE],
        [IGNORE, IGNORE, 6, 7, 8],
        [9, IGNORE, IGNORE, IGNORE, IGNORE],
    ]


def test_pad_to_multiple_of_and_custom_ignore():
    out = padded_collate(BATCH, pad_id=0, ignore_idx=-1, pad_to_multiple_of=4)
    assert out["tokens"].shape == (3, 8)
    assert out["labels"][2].tolist() == [9] + [-1] * 7
    assert padded_collate(BATCH[:1], pad_to_multiple_of=3)["tokens"].shape == (1, 3)


def test_bad_batches():
    with pytest.raises(ValueError, match="empty batch"):
        padded_collate([])
    with pytest.raises(ValueError, match="3 tokens but 2 labels"):
        padded_collate([{"tokens": [1, 2, 3], "labels": [1, 2]}])


def test_packed_collate_and_delegation():
    packs = PackedDataset(BATCH, 6, padding_idx=0)
    out = packed_collate([packs[0], packs[1]])
    assert set(out) == {"tokens", "labels", "input_pos", "mask"}
    assert out["tokens"].shape == out["labels"].shape == out["input_pos"].shape == (2, 6)
    assert out["mask"].shape == (2, 6, 6)
    dense = packed_collate([packs[0], packs[1]], dense_mask=True)["mask"]
    assert dense.dtype == torch.bool
    expected = create_block_causal_mask([packs[0]["seq_lens"], packs[1]["seq_lens"]])
    assert torch.equal(dense, expected) and torch.equal(out["mask"].to_dense(), expected)
    via_padded = padded_collate([packs[0], packs[1]], pad_id=123)
    assert via_padded["mask"] == out["mask"]
    assert all(torch.equal(via_padded[k], out[k]) for k in out if k != "mask")


def test_padding_free_lays_the_samples_end_to_end():
    out = padding_free_collate(BATCH)
    assert set(out) == {"tokens", "labels", "input_pos", "mask"}
    assert out["tokens"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    # Each sample's first label ignored: after the shift it would be the previous
    # sample's last target (the third sample's 9 is never a target, as when padded).
    assert out["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, IGNORE, 6, 7, 8, IGNORE]]
    assert out["input_pos"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0]]
    assert out["mask"].seq_lens == ((3, 5, 1),)
    assert padding_free_collate(BATCH, ignore_idx=-1)["labels"][0, 0].item() == -1
    with pytest.raises(ValueError, match="empty batch"):
        padding_free_collate([])
    with pytest.raises(ValueError, match="3 tokens but 2 labels"):
        padding_free_collate([{"tokens": [1, 2, 3], "labels": [1, 2]}])
    with pytest.raises(ValueError, match="empty sample"):
        padding_free_collate([{"tokens": [], "labels": []}])


def test_padding_free_rounds_the_row_up_with_a_document_of_padding():
    out = padding_free_collate(BATCH, pad_to_multiple_of=4, pad_id=0)
    assert out["tokens"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]]
    assert out["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, IGNORE, 6, 7, 8, IGNORE] + [IGNORE] * 3]
    assert out["input_pos"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 1, 2]]
    assert out["mask"].seq_lens == ((3, 5, 1, 3),)  # the padding attends to itself alone
    assert padding_free_collate(BATCH, pad_to_multiple_of=9)["mask"].seq_lens == ((3, 5, 1),)
    padded = padded_collate(BATCH, pad_id=0, pad_to_multiple_of=4)
    assert padded["tokens"].shape == (3, 8) and (padded["labels"][:, 5:] == IGNORE).all()


def test_dataloader_over_a_builder(tokenizer):
    ds = alpaca(tokenizer, source="tunesmith:alpaca_sample", split="train[:16]")
    loader = DataLoader(
        ds, batch_size=4, collate_fn=partial(padded_collate, pad_id=tokenizer.pad_id)
    )
    batches = list(loader)
    assert len(batches) == 4
    for batch in batches:
        lengths = (batch["tokens"] != tokenizer.pad_id).sum(1)
        assert int(lengths.max()) == batch["tokens"].shape[1]
        trained = batch["labels"] != IGNORE
        assert trained.any(1).all()  # every sample keeps its answer
        assert torch.equal(batch["tokens"][trained], batch["labels"][trained])
