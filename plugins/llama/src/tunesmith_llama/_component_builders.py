"""The Llama architecture, assembled from ``tunesmith.modules``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.modules import TransformerDecoder, build_decoder

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
    mlp_bias: bool = False,
    activation: str = "silu",
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
            :func:`tunesmith.modules.rope_frequencies`.
        tie_word_embeddings: Share the embedding matrix with the output head (Llama 3.2 1B/3B).
        attention_bias: Biases on q/k/v/output projections.
        mlp_bias: Biases on the MLP projections.
        activation: MLP gate activation (HF ``hidden_act``), see
            :data:`tunesmith.modules.ACTIVATIONS`.
        head_dim: Per-head dimension; default ``embed_dim // num_heads``.

    Returns:
        The model, with random weights.
    """
    return build_decoder(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim or embed_dim // num_heads,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim,
        max_seq_len=max_seq_len,
        norm_eps=norm_eps,
        rope_base=rope_base,
        rope_scaling=rope_scaling,
        qkv_bias=attention_bias,
        output_bias=attention_bias,
        mlp_bias=mlp_bias,
        activation=activation,
        tie_word_embeddings=tie_word_embeddings,
    )
