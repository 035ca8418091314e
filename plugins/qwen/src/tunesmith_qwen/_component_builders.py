"""The Qwen 2/2.5 and Qwen 3 architectures, assembled from ``tunesmith.modules``.

Both are Llama-shaped decoders (pre-norm RMSNorm, grouped-query attention with RoPE,
SwiGLU MLP). Qwen 2 and 2.5 put biases on the q/k/v projections; Qwen 3 drops them
and RMS-normalises each query and key head before RoPE instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith.modules import TransformerDecoder, build_decoder

__all__ = ["qwen2", "qwen3"]


def qwen2(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    norm_eps: float = 1e-6,
    rope_base: float = 1_000_000.0,
    rope_scaling: Mapping[str, Any] | None = None,
    tie_word_embeddings: bool = False,
    head_dim: int | None = None,
    sliding_window: int | Sequence[int | None] | None = None,
) -> TransformerDecoder:
    """A Qwen 2 / Qwen 2.5 decoder (Coder and Math variants included): q/k/v biases.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        embed_dim: Model width (HF ``hidden_size``).
        intermediate_dim: MLP hidden width (HF ``intermediate_size``).
        max_seq_len: Longest context (HF ``max_position_embeddings``).
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta`` (1e6 for every released size).
        rope_scaling: RoPE frequency scaling, e.g. the YaRN block Qwen 2.5 documents for
            contexts beyond 32k (see :func:`tunesmith.modules.rope_frequencies`).
        tie_word_embeddings: Share the embedding matrix with the output head (0.5B-3B).
        head_dim: Per-head dimension; default ``embed_dim // num_heads``.
        sliding_window: ``None``, or a window (or ``None``) per layer: transformers'
            ``use_sliding_window`` with ``max_window_layers``.

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
        qkv_bias=True,
        sliding_window=sliding_window,
        tie_word_embeddings=tie_word_embeddings,
    )


def qwen3(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    head_dim: int = 128,
    norm_eps: float = 1e-6,
    rope_base: float = 1_000_000.0,
    rope_scaling: Mapping[str, Any] | None = None,
    tie_word_embeddings: bool = False,
    attention_bias: bool = False,
    sliding_window: int | Sequence[int | None] | None = None,
) -> TransformerDecoder:
    """A dense Qwen 3 decoder: per-head RMSNorm on queries and keys, no q/k/v biases.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        embed_dim: Model width (HF ``hidden_size``).
        intermediate_dim: MLP hidden width (HF ``intermediate_size``).
        max_seq_len: Longest context (HF ``max_position_embeddings``).
        head_dim: Per-head dimension, independent of the width (128 in every size).
        norm_eps: RMSNorm epsilon, for the q/k norms too.
        rope_base: RoPE ``theta``.
        rope_scaling: RoPE frequency scaling (Qwen 3 documents YaRN beyond 32k).
        tie_word_embeddings: Share the embedding matrix with the output head (0.6B-4B).
        attention_bias: Biases on the q/k/v/output projections (HF ``attention_bias``).
        sliding_window: ``None``, or a window (or ``None``) per layer.

    Returns:
        The model, with random weights.
    """
    return build_decoder(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim,
        max_seq_len=max_seq_len,
        norm_eps=norm_eps,
        rope_base=rope_base,
        rope_scaling=rope_scaling,
        qkv_bias=attention_bias,
        output_bias=attention_bias,
        qk_norm="head",
        sliding_window=sliding_window,
        tie_word_embeddings=tie_word_embeddings,
    )
