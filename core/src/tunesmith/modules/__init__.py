"""Transformer building blocks every model family composes.

A family's builder injects its parts: projections into :class:`MultiHeadAttention`,
attention and MLP into :class:`TransformerSelfAttentionLayer`, layers into
:class:`TransformerDecoder` — or calls :func:`build_decoder`, whose options cover the
ways Llama, Mistral, Qwen 2/3, Gemma 1/2/3, Phi-3 and OLMo 2 differ. State-dict keys
are the same for every family (``layers.{i}.attn.q_proj.weight``,
``layers.{i}.mlp.w1.weight``, ...), so checkpoint adapters and PEFT methods need no
per-family code.
"""

from tunesmith.modules._attention import MultiHeadAttention
from tunesmith.modules._builder import ACTIVATIONS, build_decoder
from tunesmith.modules._feed_forward import FeedForward
from tunesmith.modules._kv_cache import KVCache
from tunesmith.modules._masks import DocumentMask
from tunesmith.modules._norm import RMSNorm
from tunesmith.modules._rope import (
    ROPE_TYPES,
    RotaryPositionalEmbeddings,
    rope_frequencies,
    rope_inverse_frequencies,
)
from tunesmith.modules._transformer import (
    TiedLinear,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
    tied_heads,
)

__all__ = [
    "ACTIVATIONS",
    "DocumentMask",
    "FeedForward",
    "KVCache",
    "MultiHeadAttention",
    "RMSNorm",
    "ROPE_TYPES",
    "RotaryPositionalEmbeddings",
    "TiedLinear",
    "TransformerDecoder",
    "TransformerSelfAttentionLayer",
    "build_decoder",
    "rope_frequencies",
    "rope_inverse_frequencies",
    "tied_heads",
]
