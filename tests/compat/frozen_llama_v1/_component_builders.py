"""The Llama architecture, assembled from ``tunesmith.modules``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tunesmith.modules import (
    FeedForward,
    MultiHeadAttention,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TiedLinear,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
)

__all__ = ["llama"]


def llama(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    norm_eps: float,
    rope_base: float,
    rope_scaling: Mapping[str, Any] | None = None,
    tie_word_embeddings: bool = False,
    attention_bias: bool = False,
    head_dim: int | None = None,
) -> TransformerDecoder:
    """A Llama decoder (Llama 2, Code Llama, Llama 3, 3.1, 3.2 differ only in these numbers).

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (``< num_heads``: grouped-query attention).
        embed_dim: Model width (HF ``hidden_size``).
        intermediate_dim: MLP hidden width (HF ``intermediate_size``).
        max_seq_len: Longest context (HF ``max_position_embeddings``).
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta``.
        rope_scaling: RoPE frequency scaling (``{"rope_type": "llama3", ...}``), see
            :func:`tunesmith.modules.rope_inverse_frequencies`.
        tie_word_embeddings: Share the embedding matrix with the output head (Llama 3.2 1B/3B).
        attention_bias: Biases on q/k/v/output projections.
        head_dim: Per-head dimension; default ``embed_dim // num_heads``.

    Returns:
        The model, with random weights.
    """
    head_dim = head_dim or embed_dim // num_heads
    # One RoPE module serves every layer: it holds no parameters, only a frequency table.
    rope = RotaryPositionalEmbeddings(head_dim, base=rope_base, scaling=rope_scaling)

    def layer() -> TransformerSelfAttentionLayer:
        attn = MultiHeadAttention(
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            q_proj=nn.Linear(embed_dim, num_heads * head_dim, bias=attention_bias),
            k_proj=nn.Linear(embed_dim, num_kv_heads * head_dim, bias=attention_bias),
            v_proj=nn.Linear(embed_dim, num_kv_heads * head_dim, bias=attention_bias),
            output_proj=nn.Linear(num_heads * head_dim, embed_dim, bias=attention_bias),
            pos_embeddings=rope,
        )
        mlp = FeedForward(
            gate_proj=nn.Linear(embed_dim, intermediate_dim, bias=False),
            down_proj=nn.Linear(intermediate_dim, embed_dim, bias=False),
            up_proj=nn.Linear(embed_dim, intermediate_dim, bias=False),
        )
        return TransformerSelfAttentionLayer(
            attn=attn,
            mlp=mlp,
            sa_norm=RMSNorm(embed_dim, norm_eps),
            mlp_norm=RMSNorm(embed_dim, norm_eps),
        )

    tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    output = (
        TiedLinear(tok_embeddings)
        if tie_word_embeddings
        else nn.Linear(embed_dim, vocab_size, bias=False)
    )
    return TransformerDecoder(
        tok_embeddings=tok_embeddings,
        layers=[layer() for _ in range(num_layers)],
        norm=RMSNorm(embed_dim, norm_eps),
        output=output,
        max_seq_len=max_seq_len,
    )
