"""The Gemma 1, 2 and 3 architectures, assembled from ``tunesmith.modules``.

What every generation shares: norms that scale by ``1 + weight`` in float32, a GeGLU
MLP with the tanh approximation of GELU, embeddings scaled by ``sqrt(embed_dim)``, a
head dimension independent of the width, and (in every release) tied embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith.modules import RotaryPositionalEmbeddings, TransformerDecoder, build_decoder

__all__ = ["LAYER_TYPES", "gemma", "gemma2", "gemma3", "gemma_layer_types"]

#: Attention kinds a layer may have, in transformers' ``layer_types`` vocabulary.
LAYER_TYPES = ("sliding_attention", "full_attention")


def gemma_layer_types(num_layers: int, global_every: int) -> list[str]:
    """Local (sliding-window) layers with every ``global_every``-th one global, the
    first layer local: Gemma 2 alternates (``2``), Gemma 3 has five local per global (``6``)."""
    return [
        "full_attention" if (i + 1) % global_every == 0 else "sliding_attention"
        for i in range(num_layers)
    ]


def _layer_types(
    layer_types: Sequence[str] | None, num_layers: int, global_every: int
) -> list[str]:
    if layer_types is None:
        return gemma_layer_types(num_layers, global_every)
    types = list(layer_types)
    if len(types) != num_layers or not set(types) <= set(LAYER_TYPES):
        raise ValueError(
            f"layer_types must list {num_layers} entries from {LAYER_TYPES}, got {types}"
        )
    return types


def _windows(types: Sequence[str], window: int | None) -> list[int | None]:
    return [window if t == "sliding_attention" else None for t in types]


def _shared(embed_dim: int) -> dict[str, Any]:
    return dict(
        norm_weight_offset=1.0,
        norm_scale_in_fp32=True,
        activation="gelu_pytorch_tanh",
        embed_scale=embed_dim**0.5,
    )


def gemma(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    head_dim: int = 256,
    max_seq_len: int = 8192,
    norm_eps: float = 1e-6,
    rope_base: float = 10_000.0,
    attention_bias: bool = False,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """A Gemma (1) decoder: pre-norm blocks, multi-head or multi-query attention.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (``1``: multi-query attention, Gemma 2B).
        embed_dim: Model width (HF ``hidden_size``).
        intermediate_dim: MLP hidden width.
        head_dim: Per-head dimension (256 in every release).
        max_seq_len: Longest context.
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta``.
        attention_bias: Biases on the q/k/v/output projections.
        tie_word_embeddings: Share the embedding matrix with the output head.

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
        qkv_bias=attention_bias,
        output_bias=attention_bias,
        tie_word_embeddings=tie_word_embeddings,
        **_shared(embed_dim),
    )


def gemma2(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    head_dim: int = 256,
    query_pre_attn_scalar: float = 256,
    max_seq_len: int = 8192,
    norm_eps: float = 1e-6,
    rope_base: float = 10_000.0,
    sliding_window: int | None = 4096,
    layer_types: Sequence[str] | None = None,
    attn_softcap: float | None = 50.0,
    final_softcap: float | None = 30.0,
    attention_bias: bool = False,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """A Gemma 2 decoder: norms before and after attention and MLP, soft-capped
    attention and output logits, sliding-window layers alternating with global ones.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads.
        embed_dim: Model width.
        intermediate_dim: MLP hidden width.
        head_dim: Per-head dimension.
        query_pre_attn_scalar: Attention logits are scaled by its inverse square root
            (27B: 144 = embed_dim / num_heads, with head_dim 128).
        max_seq_len: Longest context.
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta``.
        sliding_window: Window of the local layers, in tokens.
        layer_types: ``"sliding_attention"``/``"full_attention"`` per layer; default
            alternating, starting with a local layer.
        attn_softcap: ``attn_logit_softcapping``, or ``None``.
        final_softcap: ``final_logit_softcapping``, or ``None``.
        attention_bias: Biases on the q/k/v/output projections.
        tie_word_embeddings: Share the embedding matrix with the output head.

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
        norm_placement="both",
        rope_base=rope_base,
        qkv_bias=attention_bias,
        output_bias=attention_bias,
        sliding_window=_windows(_layer_types(layer_types, num_layers, 2), sliding_window),
        attn_softcap=attn_softcap,
        attn_scale=query_pre_attn_scalar**-0.5,
        final_softcap=final_softcap,
        tie_word_embeddings=tie_word_embeddings,
        **_shared(embed_dim),
    )


def gemma3(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    head_dim: int = 256,
    query_pre_attn_scalar: float = 256,
    max_seq_len: int = 131_072,
    norm_eps: float = 1e-6,
    rope_base: float = 1_000_000.0,
    rope_scaling: Mapping[str, Any] | None = None,
    local_rope_base: float = 10_000.0,
    local_rope_scaling: Mapping[str, Any] | None = None,
    sliding_window: int | None = 4096,
    layer_types: Sequence[str] | None = None,
    attn_softcap: float | None = None,
    final_softcap: float | None = None,
    attention_bias: bool = False,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """A Gemma 3 text decoder: Gemma 2's blocks with per-head q/k RMSNorm instead of
    soft-capping, five local layers per global one, and a RoPE of its own for each kind.

    Args:
        vocab_size: Rows of the embedding table.
        num_layers: Residual blocks.
        num_heads: Query heads.
        num_kv_heads: Key/value heads.
        embed_dim: Model width.
        intermediate_dim: MLP hidden width.
        head_dim: Per-head dimension.
        query_pre_attn_scalar: Attention logits are scaled by its inverse square root.
        max_seq_len: Longest context.
        norm_eps: RMSNorm epsilon.
        rope_base: RoPE ``theta`` of the global layers.
        rope_scaling: RoPE scaling of the global layers (4B-27B: ``{"rope_type":
            "linear", "factor": 8.0}``), see :func:`tunesmith.modules.rope_frequencies`.
        local_rope_base: RoPE ``theta`` of the local layers (HF ``rope_local_base_freq``).
        local_rope_scaling: RoPE scaling of the local layers (none in any release).
        sliding_window: Window of the local layers, in tokens.
        layer_types: ``"sliding_attention"``/``"full_attention"`` per layer; default
            every sixth layer global.
        attn_softcap: ``attn_logit_softcapping`` (``None`` in every release).
        final_softcap: ``final_logit_softcapping`` (``None`` in every release).
        attention_bias: Biases on the q/k/v/output projections.
        tie_word_embeddings: Share the embedding matrix with the output head.

    Returns:
        The model, with random weights.
    """
    types = _layer_types(layer_types, num_layers, 6)
    # Two RoPE modules (frequency tables only, no parameters), each shared by its layers.
    local = RotaryPositionalEmbeddings(head_dim, base=local_rope_base, scaling=local_rope_scaling)
    full = RotaryPositionalEmbeddings(head_dim, base=rope_base, scaling=rope_scaling)
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
        norm_placement="both",
        rope=[local if t == "sliding_attention" else full for t in types],
        qkv_bias=attention_bias,
        output_bias=attention_bias,
        qk_norm="head",
        sliding_window=_windows(types, sliding_window),
        attn_softcap=attn_softcap,
        attn_scale=query_pre_attn_scalar**-0.5,
        final_softcap=final_softcap,
        tie_word_embeddings=tie_word_embeddings,
        **_shared(embed_dim),
    )
