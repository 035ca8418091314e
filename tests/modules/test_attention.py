"""MultiHeadAttention options other families rely on, against explicit formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunesmith.modules import MultiHeadAttention, RMSNorm, RotaryPositionalEmbeddings


def _attention(num_heads=4, num_kv_heads=2, head_dim=8, dim=16, **kwargs):
    torch.manual_seed(0)
    return MultiHeadAttention(
        embed_dim=dim,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        q_proj=nn.Linear(dim, num_heads * head_dim, bias=False),
        k_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        v_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        output_proj=nn.Linear(num_heads * head_dim, dim, bias=False),
        **kwargs,
    ).eval()


def _reference(attn, x, allowed, softcap=None):
    """Textbook attention with an explicit (s, s) boolean mask, heads looped."""
    b, s, _ = x.shape
    d = attn.head_dim
    q = attn.q_proj(x).view(b, s, attn.num_heads, d)
    k = attn.k_proj(x).view(b, s, attn.num_kv_heads, d)
    v = attn.v_proj(x).view(b, s, attn.num_kv_heads, d)
    pos = torch.arange(s).expand(b, s)
    if attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.pos_embeddings is not None:
        q, k = attn.pos_embeddings(q, pos), attn.pos_embeddings(k, pos)
    group = attn.num_heads // attn.num_kv_heads
    heads = []
    for h in range(attn.num_heads):
        scores = q[:, :, h] @ k[:, :, h // group].transpose(1, 2) * attn.scale  # (b, s, s)
        if softcap is not None:
            scores = softcap * torch.tanh(scores / softcap)
        scores = scores.masked_fill(~allowed, float("-inf"))
        heads.append(scores.softmax(-1) @ v[:, :, h // group])
    return attn.output_proj(torch.cat(heads, dim=-1))


def test_grouped_query_attention_is_causal():
    attn = _attention(pos_embeddings=RotaryPositionalEmbeddings(8))
    x = torch.randn(2, 6, 16)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), _reference(attn, x, causal))


@pytest.mark.parametrize("native", [True, False])
def test_grouped_heads_with_and_without_sdpa_grouping(monkeypatch, native):
    # enable_gqa (the CPU, CUDA flash) and k/v copied per query head (CUDA with a mask)
    # give the same attention, masked or causal.
    import tunesmith.modules._attention as attention

    monkeypatch.setattr(attention, "_sdpa_groups_heads", lambda q, mask: native)
    attn = _attention(num_heads=6, num_kv_heads=2, pos_embeddings=RotaryPositionalEmbeddings(8))
    x = torch.randn(2, 6, 16)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), _reference(attn, x, causal))
    padded = causal & torch.tensor([False, True, True, True, True, True])
    mask = padded.expand(2, 6, 6).clone()
    mask[:, 0, 0] = True  # the padding position attends itself (no empty row)
    torch.testing.assert_close(attn(x, mask=mask), _reference(attn, x, mask))


def test_sdpa_groups_heads_only_where_a_fused_kernel_does():
    from types import SimpleNamespace

    from tunesmith.modules._attention import _sdpa_groups_heads

    def query(device, dtype):  # what the decision reads of q
        return SimpleNamespace(device=torch.device(device), dtype=dtype)

    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert _sdpa_groups_heads(query("cpu", torch.float32), mask)
    assert _sdpa_groups_heads(query("cuda", torch.bfloat16), None)  # flash
    assert not _sdpa_groups_heads(query("cuda", torch.bfloat16), mask)  # memory-efficient
    assert not _sdpa_groups_heads(query("cuda", torch.float32), None)  # no flash in fp32


def test_sliding_window():
    attn = _attention(sliding_window=3)
    x = torch.randn(1, 8, 16)
    i, j = torch.arange(8)[:, None], torch.arange(8)[None, :]
    torch.testing.assert_close(attn(x), _reference(attn, x, (j <= i) & (i - j < 3)))


def test_softcap_path():
    attn = _attention(softcap=0.5)
    x = torch.randn(2, 5, 16) * 4
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), _reference(attn, x, causal, softcap=0.5))
    # With a huge cap, soft-capping is the identity: same as the SDPA path.
    big, plain = _attention(softcap=1e6), _attention()
    torch.testing.assert_close(big(x), plain(x))


def test_qk_norm_and_multi_query():
    attn = _attention(num_kv_heads=1, q_norm=RMSNorm(8), k_norm=RMSNorm(8))
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 16)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), _reference(attn, x, causal))
    assert set(attn.state_dict()) >= {"q_norm.weight", "k_norm.weight"}


def test_full_width_qk_norm_normalises_before_the_head_split():
    # OLMo 2: one norm over all of q (num_heads * head_dim), one over all of k.
    rope = RotaryPositionalEmbeddings(8)
    attn = _attention(
        q_norm=RMSNorm(32), k_norm=RMSNorm(16), qk_norm_scope="full", pos_embeddings=rope
    )
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    # The same attention with the norms folded into the projections.
    folded = _attention(pos_embeddings=rope)
    folded.load_state_dict(attn.state_dict(), strict=False)
    folded.q_proj = nn.Sequential(folded.q_proj, attn.q_norm)
    folded.k_proj = nn.Sequential(folded.k_proj, attn.k_norm)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(attn(x), folded(x))
    per_head = _attention(q_norm=RMSNorm(8), k_norm=RMSNorm(8), pos_embeddings=rope)
    assert not torch.allclose(per_head(x), _attention(pos_embeddings=rope)(x))


def test_qk_norm_scope_is_checked():
    with pytest.raises(ValueError, match="qk_norm_scope"):
        _attention(qk_norm_scope="heads")


def test_biases_come_with_the_injected_projections():
    attn = MultiHeadAttention(
        embed_dim=16,
        num_heads=2,
        num_kv_heads=2,
        head_dim=8,
        q_proj=nn.Linear(16, 16, bias=True),
        k_proj=nn.Linear(16, 16, bias=True),
        v_proj=nn.Linear(16, 16, bias=True),
        output_proj=nn.Linear(16, 16, bias=False),
    )
    assert {k for k in attn.state_dict() if k.endswith("bias")} == {
        "q_proj.bias",
        "k_proj.bias",
        "v_proj.bias",
    }
