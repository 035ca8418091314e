"""A packed batch through a real decoder: same logits and loss as the samples one by one;
a padding-free batch: the padded batch's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data import (
    CROSS_ENTROPY_IGNORE_IDX,
    padded_collate,
    padding_free_collate,
    text_completion,
)
from tunesmith.testing import FakeTokenizer

llama = pytest.importorskip("tunesmith_llama").llama
IGNORE = CROSS_ENTROPY_IGNORE_IDX


def test_packed_forward_and_loss_match_unpacked(write):
    torch.manual_seed(0)
    tokenizer = FakeTokenizer(max_seq_len=32)
    texts = ["red fox", "a cat sat", "hello there", "no", "blue sky here", "one more line"]
    path = str(write("t.jsonl", [{"text": t} for t in texts]))
    plain = text_completion(tokenizer, source=path)
    packed = text_completion(tokenizer, source=path, packed=True)
    assert len(packed) < len(plain)
    model = llama(
        vocab_size=tokenizer.vocab_size,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        embed_dim=32,
        intermediate_dim=64,
        max_seq_len=64,
        norm_eps=1e-5,
        rope_base=10000.0,
    ).eval()
    batch = padded_collate(list(packed), pad_id=tokenizer.pad_id)  # hands packs to packed_collate

    with torch.no_grad():
        logits = model(batch["tokens"], mask=batch["mask"], input_pos=batch["input_pos"])
        # the recipe's shift: logits[:, :-1] predict labels[:, 1:]
        targets = batch["labels"][:, 1:]
        packed_loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            reduction="sum",
            ignore_index=IGNORE,
        )
        alone_loss, alone_targets, i = torch.tensor(0.0), 0, 0
        by_tokens = {tuple(row["tokens"]): row for row in plain}
        for p, pack in enumerate(packed):
            offset = 0
            for n in pack["seq_lens"].tolist():
                row = by_tokens.get(tuple(pack["tokens"][offset : offset + n].tolist()))
                if row is not None:
                    tokens, labels = torch.tensor([row["tokens"]]), torch.tensor(row["labels"])
                    alone = model(tokens)[0]
                    torch.testing.assert_close(
                        logits[p, offset : offset + n], alone, rtol=1e-4, atol=1e-4
                    )
                    alone_loss += F.cross_entropy(
                        alone[:-1], labels[1:], reduction="sum", ignore_index=IGNORE
                    )
                    alone_targets += int((labels[1:] != IGNORE).sum())
                    i += 1
                offset += n
    assert i == len(plain)
    assert int((targets != IGNORE).sum()) == alone_targets
    torch.testing.assert_close(packed_loss, alone_loss, rtol=1e-4, atol=1e-3)


def test_padding_free_batch_trains_as_the_padded_batch():
    """Loss and every gradient of a padding-free batch equal the padded batch's (fp32,
    1e-5), through the recipe's shift and chunked loss."""
    from tunesmith.training import ChunkedCrossEntropyLoss, shift_labels

    torch.manual_seed(0)
    model = llama(
        vocab_size=96, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32,
        intermediate_dim=64, max_seq_len=64, norm_eps=1e-5, rope_base=10000.0,
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    samples = []
    for n, prompt in [(7, 3), (19, 5), (2, 1), (12, 12)]:
        tokens = torch.randint(1, 96, (n,), generator=g).tolist()
        samples.append({"tokens": tokens, "labels": [IGNORE] * prompt + tokens[prompt:]})
    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=3, min_chunk_rows=1)

    def loss_and_grads(batch):
        model.zero_grad()
        extra = {k: batch[k] for k in ("mask", "input_pos") if k in batch}
        hidden = model(batch["tokens"], return_hidden=True, **extra)
        loss_sum, count = loss_fn(hidden, shift_labels(batch["labels"]), head=model.output)
        (loss_sum / count).backward()
        return loss_sum / count, count, {n: p.grad.clone() for n, p in model.named_parameters()}

    padded = loss_and_grads(padded_collate(samples, pad_id=0))
    # Rounded up to a multiple of 64 positions (as for bf16 on a CPU): the same again.
    for free_batch in (padding_free_collate(samples), padding_free_collate(samples, pad_to_multiple_of=64)):
        free = loss_and_grads(free_batch)
        assert free[1] == padded[1] == sum(sum(x != IGNORE for x in s["labels"][1:]) for s in samples)
        torch.testing.assert_close(free[0], padded[0], rtol=0, atol=1e-5)
        for name, grad in padded[2].items():
            torch.testing.assert_close(free[2][name], grad, rtol=0, atol=1e-5, msg=name)
    assert free_batch["tokens"].shape == (1, 64)
