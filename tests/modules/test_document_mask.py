"""Packed documents through DocumentMask: attention per document equals the dense
block-causal mask and training on each document alone (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data import CROSS_ENTROPY_IGNORE_IDX, PackedDataset, packed_collate
from tunesmith.modules import DocumentMask, _attention, build_decoder
from tunesmith.training import shift_labels

IGNORE = CROSS_ENTROPY_IGNORE_IDX


def _model(**kwargs):
    torch.manual_seed(0)
    options = dict(
        vocab_size=97, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32,
        intermediate_dim=64, max_seq_len=64,
    )  # fmt: skip
    return build_decoder(**{**options, **kwargs})


def _documents(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    docs = []
    for n in lengths:
        tokens = torch.randint(1, 97, (n,), generator=generator).tolist()
        labels = [IGNORE] * (n // 3) + tokens[n // 3 :]  # a prompt that is not trained on
        docs.append({"tokens": tokens, "labels": labels})
    return docs


def test_document_mask_validates_and_densifies():
    mask = DocumentMask(((2, 3), (5,)))
    assert mask.shape == (2, 5, 5)
    assert mask.spans(0) == [(0, 2), (2, 5)]
    dense = mask.to_dense()
    assert dense[0, 2].tolist() == [False, False, True, False, False]
    assert dense[1].equal(torch.ones(5, 5, dtype=torch.bool).tril())
    assert DocumentMask.from_seq_lens([torch.tensor([2, 3]), [4, 1]]).seq_lens == ((2, 3), (4, 1))
    with pytest.raises(ValueError, match="same length"):
        DocumentMask(((2, 3), (4,)))
    with pytest.raises(ValueError, match="positive"):
        DocumentMask(((0, 5),))


@pytest.mark.parametrize(
    "options",
    [{}, {"sliding_window": 3}, {"attn_softcap": 5.0, "final_softcap": 3.0}, {"num_kv_heads": 1}],
    ids=["gqa", "window", "softcap", "mqa"],
)
@pytest.mark.parametrize("multiple", [1, 4], ids=["as_they_are", "lengths_rounded"])
def test_document_mask_equals_the_dense_block_mask(options, multiple, monkeypatch):
    # Rounded: each document's attention spans a multiple of 4 positions (5 -> 8, 9 -> 12,
    # 2 -> 4), as bf16 on a CPU rounds them to 16; the appended ones change nothing.
    monkeypatch.setattr(_attention, "document_length_multiple", lambda device, dtype: multiple)
    model = _model(**options)
    seq_lens = ((5, 9, 2), (16,))
    tokens = torch.randint(1, 97, (2, 16), generator=torch.Generator().manual_seed(1))
    positions = torch.stack(
        [torch.cat([torch.arange(n) for n in row]) for row in seq_lens]
    )  # restarting per document
    documents = DocumentMask(seq_lens)
    fast = model(tokens, mask=documents, input_pos=positions)
    dense = model(tokens, mask=documents.to_dense(), input_pos=positions)
    torch.testing.assert_close(fast, dense, rtol=1e-5, atol=1e-5)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), model.layers[0].attn.q_proj.weight)
    (grad_dense,) = torch.autograd.grad(dense.square().sum(), model.layers[0].attn.q_proj.weight)
    torch.testing.assert_close(grad_fast, grad_dense, rtol=1e-4, atol=1e-5)


def test_packed_token_losses_equal_unpacked_training():
    """Every document's per-token losses (and the gradient) as when trained alone."""
    model = _model()
    docs = _documents([13, 7, 20, 4, 9, 11, 3])
    packs = PackedDataset(docs, 32)
    assert len(packs) < len(docs)
    batch = packed_collate(list(packs))
    assert isinstance(batch["mask"], DocumentMask)
    logits = model(batch["tokens"], mask=batch["mask"], input_pos=batch["input_pos"])
    labels = shift_labels(batch["labels"])
    packed_losses = F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)
    (packed_grad,) = torch.autograd.grad(packed_losses.sum(), model.output.weight)

    by_tokens = {tuple(d["tokens"]): d for d in docs}
    alone_total, seen = torch.zeros(()), 0
    for row, pack in enumerate(packs):
        for start, end in batch["mask"].spans(row):
            doc = by_tokens.get(tuple(pack["tokens"][start:end].tolist()))
            if doc is None:  # the padding segment
                assert pack["labels"][start:end].eq(IGNORE).all()
                continue
            seen += 1
            alone_logits = model(torch.tensor([doc["tokens"]]))
            alone_labels = shift_labels(torch.tensor([doc["labels"]]))
            alone = F.cross_entropy(
                alone_logits[0], alone_labels[0], ignore_index=IGNORE, reduction="none"
            )
            # The pack's last position of a document predicts the next document's
            # first token only if that label were kept: PackedDataset ignores it.
            torch.testing.assert_close(packed_losses[row, start:end], alone, rtol=0, atol=1e-5)
            alone_total = alone_total + alone.sum()
    assert seen == len(docs)
    (alone_grad,) = torch.autograd.grad(alone_total, model.output.weight)
    torch.testing.assert_close(packed_grad, alone_grad, rtol=1e-4, atol=1e-5)


def test_document_mask_with_a_kv_cache_is_refused_and_generation_is_unchanged():
    model = _model().eval()
    tokens = torch.randint(1, 97, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(1, torch.float32, max_seq_len=16)
        try:
            with pytest.raises(ValueError, match="KV cache"):
                model(tokens, mask=DocumentMask(((8,),)))
            model.reset_caches()
            steps = [model(tokens[:, :4])] + [model(tokens[:, i : i + 1]) for i in range(4, 8)]
        finally:
            model.remove_caches()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_return_hidden_and_project_give_the_logits():
    model = _model(final_softcap=2.0, tie_word_embeddings=True)
    tokens = torch.randint(1, 97, (2, 6), generator=torch.Generator().manual_seed(3))
    hidden = model(tokens, return_hidden=True)
    assert hidden.shape == (2, 6, 32)
    torch.testing.assert_close(model.project(hidden), model(tokens))
    assert model.project(hidden).abs().max() <= 2.0


def test_compiled_document_attention_compiles_once_for_any_document_lengths():
    from torch._dynamo.utils import counters

    layer = _model(num_layers=1).layers[0]
    compiled = torch.compile(layer, backend="eager")  # dynamo's graphs, no inductor
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))

    def run(seq_lens):
        positions = torch.cat([torch.arange(n) for n in seq_lens])[None]
        documents = DocumentMask((seq_lens,))
        out = compiled(x, mask=documents, input_pos=positions)
        torch.testing.assert_close(out, layer(x, mask=documents, input_pos=positions))

    torch._dynamo.reset()
    counters.clear()
    run((5, 9, 2))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    # The per-document loop runs eagerly between graphs: other lengths reuse them.
    run((3, 13))
    run((1, 2, 3, 10))
    assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()


def test_document_lengths_are_rounded_where_new_lengths_compile_kernels():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _attention.document_length_multiple(cpu, torch.bfloat16) == 16
    assert _attention.document_length_multiple(cpu, torch.float16) == 16
    assert _attention.document_length_multiple(cpu, torch.float32) == 1
    assert _attention.document_length_multiple(cuda, torch.bfloat16) == 1


def test_bf16_document_attention_spans_multiples_of_16_and_equals_the_unrounded(monkeypatch):
    model = _model(max_seq_len=128).to(torch.bfloat16)
    seq_lens = ((37, 5, 22),)
    tokens = torch.randint(1, 97, (1, 64), generator=torch.Generator().manual_seed(2))
    positions = torch.cat([torch.arange(n) for n in seq_lens[0]])[None]
    lengths = []
    sdpa = F.scaled_dot_product_attention

    def recorded(q, *args, **kwargs):
        lengths.append(q.shape[2])
        return sdpa(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recorded)
    rounded = model(tokens, mask=DocumentMask(seq_lens), input_pos=positions)
    assert lengths == [48, 16, 32] * 2  # per layer
    monkeypatch.setattr(_attention, "document_length_multiple", lambda device, dtype: 1)
    plain = model(tokens, mask=DocumentMask(seq_lens), input_pos=positions)
    assert lengths[6:] == [37, 5, 22] * 2
    torch.testing.assert_close(rounded.float(), plain.float(), rtol=0.02, atol=0.02)
