"""The Mistral architecture, assembled from ``tunesmith.modules``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.modules import TransformerDecoder, build_decoder

__all__ = ["mistral"]


def mistral(
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
    sliding_window: int | None = None,
    head_dim: int | None = None,
    rope_scaling: Mapping[str, Any] | None = None,
    activation: str = "silu",
    tie_word_embeddings: bool = False,
) -> TransformerDecoder:
    """A Mistral decoder: grouped-query attention, RoPE, RMSNorm, a SwiGLU MLP and no biases.

    Mistral 7B v0.1 attends to the last 4096 tokens in every layer; v0.2, v0.3, NeMo and
    Small attend to the whole context. NeMo and Small fix ``head_dim`` at 128 whatever
    the width.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        embed_dim: Model width (HF ``hidden_size``).
        intermediate_dim: MLP hidden width (HF ``intermediate_size``).
        max_seq_len: Longest context (HF ``max_position_embeddings``).
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta``.
        sliding_window: Every layer attends to this many most recent tokens (the query
            included), or ``None`` for the whole context.
        head_dim: Per-head dimension; default ``embed_dim // num_heads``.
        rope_scaling: RoPE frequency scaling, see :func:`tunesmith.modules.rope_frequencies`
            (no released Mistral uses one; fine-tunes that stretch the context may).
        activation: MLP gate activation (HF ``hidden_act``).
        tie_word_embeddings: Share the embedding matrix with the output head.

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
        sliding_window=sliding_window,
        activation=activation,
        tie_word_embeddings=tie_word_embeddings,
    )
