"""TransformerDecoder assembled from core blocks: caches, masks, tied heads, options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tunesmith.modules import (
    FeedForward,
    MultiHeadAttention,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TiedLinear,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
    tied_heads,
)

DIM, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 32, 4, 2, 8, 64


def _decoder(*, sliding_window=None, softcap=None, tied=False, **kwargs):
    torch.manual_seed(0)
    rope = RotaryPositionalEmbeddings(HEAD_DIM, base=10_000.0)

    def layer(window):
        attn = MultiHeadAttention(
            embed_dim=DIM,
            num_heads=HEADS,
            num_kv_heads=KV_HEADS,
            head_dim=HEAD_DIM,
            q_proj=nn.Linear(DIM, HEADS * HEAD_DIM, bias=False),
            k_proj=nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False),
            v_proj=nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False),
            output_proj=nn.Linear(HEADS * HEAD_DIM, DIM, bias=False),
            pos_embeddings=rope,
            sliding_window=window,
            softcap=softcap,
        )
        mlp = FeedForward(
            gate_proj=nn.Linear(DIM, 64, bias=False),
            down_proj=nn.Linear(64, DIM, bias=False),
            up_proj=nn.Linear(DIM, 64, bias=False),
            activation=nn.GELU(approximate="tanh"),
        )
        return TransformerSelfAttentionLayer(
            attn=attn, mlp=mlp, sa_norm=RMSNorm(DIM), mlp_norm=RMSNorm(DIM)
        )

    embeddings = nn.Embedding(VOCAB, DIM)
    return TransformerDecoder(
        tok_embeddings=embeddings,
        # Alternate local and global layers, as Gemma 2 does.
        layers=[layer(sliding_window), layer(None)],
        norm=RMSNorm(DIM),
        output=TiedLinear(embeddings) if tied else nn.Linear(DIM, VOCAB, bias=False),
        max_seq_len=32,
        **kwargs,
    ).eval()


def _decode_step_by_step(model, tokens, prefill):
    model.setup_caches(tokens.shape[0], torch.float32, max_seq_len=tokens.shape[1] + 2)
    steps = [model(tokens[:, :prefill])]
    steps += [model(tokens[:, i : i + 1]) for i in range(prefill, tokens.shape[1])]
    model.remove_caches()
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize(
    "options", [{}, {"sliding_window": 3}, {"softcap": 2.0}], ids=["plain", "window", "softcap"]
)
def test_cached_decoding_matches_full_forward(options):
    model = _decoder(**options)
    tokens = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(_decode_step_by_step(model, tokens, prefill=4), model(tokens))


def test_sliding_window_forgets_old_tokens():
    model = _decoder(sliding_window=2)
    model.layers = model.layers[
        :1
    ]  # only the windowed layer: information travels 1 token per layer
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[9, 2, 3, 4, 5]])
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    assert not torch.allclose(out_a[:, 1], out_b[:, 1])  # token 1 still sees token 0
    torch.testing.assert_close(out_a[:, 2:], out_b[:, 2:])  # later ones do not


def test_tied_output_shares_the_embedding():
    model = _decoder(tied=True)
    assert "output.weight" not in model.state_dict()
    assert model.output.weight is model.tok_embeddings.weight
    h = torch.randn(1, 3, DIM)
    torch.testing.assert_close(model.output(h), h @ model.tok_embeddings.weight.T)
    with torch.device("meta"):
        meta = _decoder(tied=True)
    meta.to_empty(device="cpu")
    meta.load_state_dict(model.state_dict())
    tokens = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(meta(tokens), model(tokens))


def test_tied_heads_are_found_by_path_however_deep_the_decoder_sits():
    tied, untied = _decoder(tied=True), _decoder()
    assert tied_heads(tied) == {"output": tied.tok_embeddings}
    assert tied_heads(untied) == {}
    wrapper = nn.Module()
    wrapper.language_model = tied
    assert tied_heads(wrapper) == {"language_model.output": tied.tok_embeddings}


def test_embed_scale_and_final_softcap():
    plain = _decoder()
    scaled = _decoder(embed_scale=math.sqrt(DIM), final_softcap=0.5)
    tokens = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        logits = scaled(tokens)
        assert logits.abs().max() < 0.5
        # Softcap undone by atanh gives the uncapped logits of a model whose embeddings are scaled.
        plain.tok_embeddings.weight.mul_(math.sqrt(DIM))
        torch.testing.assert_close(
            0.5 * torch.atanh(logits / 0.5), plain(tokens), atol=1e-4, rtol=1e-4
        )


def test_fully_masked_padding_rows_stay_finite():
    model = _decoder()
    tokens = torch.tensor([[0, 0, 7, 8]])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 2:, 2:] = torch.ones(2, 2, dtype=torch.bool).tril()  # the pads may attend nothing
    with torch.no_grad():
        out = model(tokens, mask=mask, input_pos=torch.tensor([[0, 0, 0, 1]]))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[:, 2:], model(tokens[:, 2:]))


def test_cache_state_helpers():
    model = _decoder()
    assert not model.caches_are_enabled()
    model.setup_caches(1, torch.float32)
    assert model.caches_are_enabled()
    assert model.layers[0].attn.kv_cache.k_cache.shape == (
        1,
        KV_HEADS,
        32,
        HEAD_DIM,
    )  # default: max_seq_len
    assert not any("cache" in k for k in model.state_dict())
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))
    assert model.layers[0].attn.kv_cache.size == 3
    model.reset_caches()
    assert model.layers[0].attn.kv_cache.size == 0


def _block(**norms):
    torch.manual_seed(0)
    attn = MultiHeadAttention(
        embed_dim=DIM,
        num_heads=HEADS,
        num_kv_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        q_proj=nn.Linear(DIM, HEADS * HEAD_DIM, bias=False),
        k_proj=nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False),
        v_proj=nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False),
        output_proj=nn.Linear(HEADS * HEAD_DIM, DIM, bias=False),
    )
    mlp = FeedForward(
        gate_proj=nn.Linear(DIM, 64, bias=False),
        down_proj=nn.Linear(64, DIM, bias=False),
        up_proj=nn.Linear(DIM, 64, bias=False),
    )
    return TransformerSelfAttentionLayer(attn=attn, mlp=mlp, **norms)


@pytest.mark.parametrize(
    "names",
    [
        ("sa_norm", "mlp_norm"),
        ("sa_post_norm", "mlp_post_norm"),
        ("sa_norm", "mlp_norm", "sa_post_norm", "mlp_post_norm"),
        (),
    ],
    ids=["pre", "post", "both", "none"],
)
def test_norm_placements(names):
    norms = {name: RMSNorm(DIM) for name in names}
    for i, norm in enumerate(norms.values()):
        with torch.no_grad():
            norm.weight.fill_(0.5 + i)
    block = _block(**norms)
    keys = {k.rsplit(".", 1)[0] for k in block.state_dict() if "norm" in k}
    assert keys == set(names)  # a norm left out has no key ...
    assert not any(isinstance(m, nn.Identity) for m in block.modules())  # ... and no stand-in
    x = torch.randn(2, 5, DIM)
    n = lambda name, t: norms[name](t) if name in norms else t  # noqa: E731
    h = x + n("sa_post_norm", block.attn(n("sa_norm", x)))
    expected = h + n("mlp_post_norm", block.mlp(n("mlp_norm", h)))
    torch.testing.assert_close(block(x), expected)
