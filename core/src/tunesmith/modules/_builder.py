"""One decoder builder for every family: the options are the ways families differ."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from torch import nn

from tunesmith.modules._attention import MultiHeadAttention
from tunesmith.modules._feed_forward import FeedForward
from tunesmith.modules._norm import RMSNorm
from tunesmith.modules._rope import RotaryPositionalEmbeddings
from tunesmith.modules._transformer import (
    TiedLinear,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
)

__all__ = ["ACTIVATIONS", "build_decoder"]

#: MLP activations by their transformers ``hidden_act`` name.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}

_T = TypeVar("_T")


def _per_layer(value: _T | Sequence[_T], num_layers: int, name: str) -> list[_T]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != num_layers:
            raise ValueError(f"{name} has {len(value)} entries for {num_layers} layers")
        return list(value)
    return [value] * num_layers


def _activation(activation: str | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    if not isinstance(activation, str):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)} "
            "or a callable that returns an nn.Module"
        )
    return ACTIVATIONS[activation]


def build_decoder(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    num_kv_heads: int | None = None,
    head_dim: int | None = None,
    norm_eps: float = 1e-6,
    norm_weight_offset: float = 0.0,
    norm_scale_in_fp32: bool = False,
    norm_placement: Literal["pre", "post", "both"] = "pre",
    rope: nn.Module | Sequence[nn.Module | None] | None = None,
    rope_base: float = 10_000.0,
    rope_scaling: Mapping[str, Any] | None = None,
    rope_dim: int | None = None,
    rope_in_fp32: bool = False,
    qkv_bias: bool = False,
    output_bias: bool = False,
    mlp_bias: bool = False,
    qk_norm: Literal["head", "full"] | None = None,
    sliding_window: int | Sequence[int | None] | None = None,
    attn_softcap: float | None = None,
    attn_scale: float | None = None,
    activation: str | Callable[[], nn.Module] = "silu",
    embed_scale: float | None = None,
    final_softcap: float | None = None,
    tie_word_embeddings: bool = False,
) -> TransformerDecoder:
    """A decoder-only transformer of RMSNorm, GQA attention with RoPE and a gated MLP.

    State-dict keys are the same for every combination of options: ``tok_embeddings``,
    ``layers.{i}.attn.{q,k,v,output}_proj``, ``layers.{i}.attn.{q,k}_norm``,
    ``layers.{i}.{sa,mlp}_norm``, ``layers.{i}.{sa,mlp}_post_norm``,
    ``layers.{i}.mlp.{w1,w2,w3}``, ``norm``, ``output`` (absent when tied); a part an
    option leaves out has no key.

    Args:
        vocab_size: Rows of the embedding table (HF ``vocab_size``).
        num_layers: Residual blocks (``num_hidden_layers``).
        num_heads: Query heads (``num_attention_heads``).
        embed_dim: Model width (``hidden_size``).
        intermediate_dim: MLP hidden width (``intermediate_size``).
        max_seq_len: Longest context (``max_position_embeddings``); the KV-cache default.
        num_kv_heads: Key/value heads (``num_key_value_heads``); default ``num_heads``.
        head_dim: Per-head dimension; default ``embed_dim // num_heads``. Independent of
            both (Gemma: 256 at any width; Qwen 3: 128).
        norm_eps: RMSNorm epsilon (``rms_norm_eps``).
        norm_weight_offset: ``1.0`` for norms that scale by ``1 + weight`` (Gemma 1/2/3).
            Applies to every norm, q/k norms included; see :class:`RMSNorm`.
        norm_scale_in_fp32: Scale by the norm weight in float32 before casting back
            (OLMo 2, Gemma); default: cast, then scale (Llama, Mistral, Qwen, Phi-3).
        norm_placement: ``"pre"``: norm each block's input before attention and MLP
            (Llama). ``"post"``: norm the attention and MLP outputs before the residual
            add, no pre-norm (OLMo 2). ``"both"``: pre and post (Gemma 2/3).
        rope: A :class:`RotaryPositionalEmbeddings` (or any ``f(x, input_pos)``) shared by
            every layer, or a list with one per layer (``None`` entries: no positional
            encoding in that layer). Default: one built from ``rope_base``,
            ``rope_scaling``, ``rope_dim`` and ``rope_in_fp32``, which are ignored
            otherwise.
        rope_base: RoPE ``theta``.
        rope_scaling: RoPE variant, see :func:`~tunesmith.modules.rope_frequencies`.
        rope_dim: Rotary dimension; default ``head_dim`` (less for partial RoPE:
            ``int(head_dim * partial_rotary_factor)``).
        rope_in_fp32: Rotate in float32 (OLMo 2); see :class:`RotaryPositionalEmbeddings`.
        qkv_bias: Biases on the q/k/v projections (Qwen 2; Llama's ``attention_bias``).
        output_bias: Bias on the attention output projection (Llama's ``attention_bias``).
        mlp_bias: Biases on the MLP projections (Llama's ``mlp_bias``).
        qk_norm: RMSNorm queries and keys before RoPE: ``"head"`` over each head
            (Qwen 3, Gemma 3), ``"full"`` over the whole projection (OLMo 2), or ``None``.
        sliding_window: ``None`` (full attention everywhere), one window for every layer
            (Mistral 7B v0.1), or a list with a window or ``None`` per layer (Gemma 2/3,
            Qwen 2 with ``use_sliding_window``).
        attn_softcap: Soft-cap attention logits (Gemma 2 ``attn_logit_softcapping``).
        attn_scale: Attention logit scale; default ``head_dim ** -0.5`` (Gemma 2/3:
            ``query_pre_attn_scalar ** -0.5``).
        activation: MLP gate activation: a transformers ``hidden_act`` name from
            :data:`ACTIVATIONS` (``"silu"``; ``"gelu_pytorch_tanh"`` for Gemma) or a
            callable returning a fresh module.
        embed_scale: Multiply embeddings by this (Gemma: ``embed_dim ** 0.5``).
        final_softcap: Soft-cap the logits (Gemma 2 ``final_logit_softcapping``).
        tie_word_embeddings: Share the embedding matrix with the output head.

    Returns:
        The model, with random weights (norms initialised to scale by one).

    Raises:
        ValueError: an unknown option value, or a per-layer list of the wrong length.
    """
    num_kv_heads = num_kv_heads or num_heads
    head_dim = head_dim or embed_dim // num_heads
    if norm_placement not in ("pre", "post", "both"):
        raise ValueError(f"norm_placement must be 'pre', 'post' or 'both', not {norm_placement!r}")
    if qk_norm not in (None, "head", "full"):
        raise ValueError(f"qk_norm must be None, 'head' or 'full', not {qk_norm!r}")
    make_activation = _activation(activation)
    if rope is None:
        # One RoPE module serves every layer: it holds no parameters, only frequency tables.
        rope = RotaryPositionalEmbeddings(
            rope_dim or head_dim, base=rope_base, scaling=rope_scaling, rotate_in_fp32=rope_in_fp32
        )
    ropes = _per_layer(rope, num_layers, "rope")
    windows = _per_layer(sliding_window, num_layers, "sliding_window")

    def norm(dim: int) -> RMSNorm:
        return RMSNorm(
            dim, norm_eps, weight_offset=norm_weight_offset, scale_in_fp32=norm_scale_in_fp32
        )

    def layer(i: int) -> TransformerSelfAttentionLayer:
        q_dim, kv_dim = num_heads * head_dim, num_kv_heads * head_dim
        q_norm = k_norm = None
        if qk_norm == "head":
            q_norm, k_norm = norm(head_dim), norm(head_dim)
        elif qk_norm == "full":
            q_norm, k_norm = norm(q_dim), norm(kv_dim)
        attn = MultiHeadAttention(
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            q_proj=nn.Linear(embed_dim, q_dim, bias=qkv_bias),
            k_proj=nn.Linear(embed_dim, kv_dim, bias=qkv_bias),
            v_proj=nn.Linear(embed_dim, kv_dim, bias=qkv_bias),
            output_proj=nn.Linear(q_dim, embed_dim, bias=output_bias),
            pos_embeddings=ropes[i],
            q_norm=q_norm,
            k_norm=k_norm,
            qk_norm_scope=qk_norm or "head",
            sliding_window=windows[i],
            softcap=attn_softcap,
            scale=attn_scale,
        )
        mlp = FeedForward(
            gate_proj=nn.Linear(embed_dim, intermediate_dim, bias=mlp_bias),
            down_proj=nn.Linear(intermediate_dim, embed_dim, bias=mlp_bias),
            up_proj=nn.Linear(embed_dim, intermediate_dim, bias=mlp_bias),
            activation=make_activation(),
        )
        pre, post = norm_placement in ("pre", "both"), norm_placement in ("post", "both")
        return TransformerSelfAttentionLayer(
            attn=attn,
            mlp=mlp,
            sa_norm=norm(embed_dim) if pre else None,
            mlp_norm=norm(embed_dim) if pre else None,
            sa_post_norm=norm(embed_dim) if post else None,
            mlp_post_norm=norm(embed_dim) if post else None,
        )

    # Creation order (embeddings, head, layers, final norm) fixes which random numbers
    # each weight gets under a seed; keep it stable.
    tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    output = (
        TiedLinear(tok_embeddings)
        if tie_word_embeddings
        else nn.Linear(embed_dim, vocab_size, bias=False)
    )
    return TransformerDecoder(
        tok_embeddings=tok_embeddings,
        layers=[layer(i) for i in range(num_layers)],
        norm=norm(embed_dim),
        output=output,
        max_seq_len=max_seq_len,
        embed_scale=embed_scale,
        final_softcap=final_softcap,
    )
