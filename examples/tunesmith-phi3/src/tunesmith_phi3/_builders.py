"""The Phi-3 architecture on ``tunesmith.modules.build_decoder``, and one builder per size.

Phi-3 is a Llama-shaped decoder (RMSNorm, SwiGLU, rotate-half RoPE); what sets it
apart lives in the checkpoint adapter (fused ``qkv_proj`` / ``gate_up_proj``) and in
its RoPE (LongRoPE for the 128k models, partial rotary for later ``phi3`` checkpoints).
Phi-4 is the same architecture (HF ``model_type`` ``phi3``), wider, with grouped-query
attention and no sliding window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.modules import TransformerDecoder, build_decoder

__all__ = ["HF_REPOS", "phi3", "phi3_mini_128k", "phi3_mini_4k", "phi4_14b"]


def phi3(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    norm_eps: float = 1e-5,
    rope_base: float = 10_000.0,
    rope_scaling: Mapping[str, Any] | None = None,
    rope_dim: int | None = None,
    head_dim: int | None = None,
    sliding_window: int | None = None,
    activation: str = "silu",
    tie_word_embeddings: bool = False,
) -> TransformerDecoder:
    """A Phi-3 decoder.

    Args:
        vocab_size: Rows of the embedding table (HF ``vocab_size``).
        num_layers: Residual blocks (``num_hidden_layers``).
        num_heads: Query heads (``num_attention_heads``).
        num_kv_heads: Key/value heads (``num_key_value_heads``).
        embed_dim: Model width (``hidden_size``).
        intermediate_dim: MLP hidden width (``intermediate_size``; HF's ``gate_up_proj``
            has twice as many rows).
        max_seq_len: Longest context (``max_position_embeddings``).
        norm_eps: RMSNorm epsilon (``rms_norm_eps``).
        rope_base: RoPE ``theta``.
        rope_scaling: ``None`` or a ``longrope`` dict (``short_factor``, ``long_factor``,
            ``original_max_position_embeddings``, ``factor``), see
            :func:`tunesmith.modules.rope_frequencies`.
        rope_dim: Rotary dimension; default ``head_dim`` (less with ``partial_rotary_factor``).
        head_dim: Per-head dimension; default ``embed_dim // num_heads``.
        sliding_window: Attention window of every layer (``sliding_window``), or ``None``.
        activation: MLP gate activation (``hidden_act``).
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
        rope_scaling=rope_scaling,
        rope_dim=rope_dim,
        sliding_window=sliding_window,
        activation=activation,
        tie_word_embeddings=tie_word_embeddings,
    )


_MINI = dict(
    vocab_size=32_064,
    num_layers=32,
    num_heads=32,
    num_kv_heads=32,
    embed_dim=3072,
    intermediate_dim=8192,
    norm_eps=1e-5,
    rope_base=10_000.0,
)

# LongRoPE rescaling of the 48 rotary frequencies (head_dim 96), as the config.json of
# Phi-3-mini-128k-instruct's first release writes them ("type": "su").
_MINI_128K_SHORT = [
    1.05, 1.05, 1.05, 1.1, 1.1, 1.1500000000000001, 1.2000000000000002, 1.2500000000000002,
    1.3000000000000003, 1.3500000000000003, 1.5000000000000004, *[2.000000000000001] * 21,
    2.0500000000000007, 2.0500000000000007, 2.0500000000000007, 2.1000000000000005,
    2.1000000000000005, 2.1000000000000005, 2.1500000000000004, 2.1500000000000004,
    2.3499999999999996, 2.549999999999999, 2.5999999999999988, 2.5999999999999988,
    2.7499999999999982, 2.849999999999998, 2.849999999999998, 2.9499999999999975,
]  # fmt: skip
_MINI_128K_LONG = [
    1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547,
    1.2299998998641968, 1.2299998998641968, 1.2999999523162842, 1.4499999284744263,
    1.5999999046325684, 1.6499998569488525, 1.8999998569488525, 2.859999895095825,
    3.68999981880188, 5.419999599456787, 5.489999771118164, 5.489999771118164,
    9.09000015258789, 11.579999923706055, 15.65999984741211, 15.769999504089355,
    15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055,
    30.009998321533203, 32.35000228881836, 32.590003967285156, 35.56000518798828,
    39.95000457763672, 53.840003967285156, 56.20000457763672, 57.95000457763672,
    59.29000473022461, 59.77000427246094, 59.920005798339844, 61.190006256103516,
    61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086,
    63.48000717163086, 63.66000747680664, 63.850006103515625, 64.08000946044922,
    64.760009765625, 64.80001068115234, 64.81001281738281, 64.81001281738281,
]  # fmt: skip


def phi3_mini_4k() -> TransformerDecoder:
    """Phi-3 mini 4k (microsoft/Phi-3-mini-4k-instruct): 3.82B parameters, 2047-token window."""
    return phi3(**_MINI, max_seq_len=4096, sliding_window=2047)


def phi3_mini_128k() -> TransformerDecoder:
    """Phi-3 mini 128k (microsoft/Phi-3-mini-128k-instruct): 3.82B parameters, LongRoPE.

    The RoPE factors are those of the repository's first release. Later revisions of
    the repository changed them: to fine-tune a download whose ``config.json`` differs,
    use ``model: {_component_: auto}`` (the shipped configs do), which builds the model
    from that file.
    """
    scaling = dict(
        rope_type="longrope",
        short_factor=_MINI_128K_SHORT,
        long_factor=_MINI_128K_LONG,
        original_max_position_embeddings=4096,
        factor=131_072 / 4096,
    )
    return phi3(**_MINI, max_seq_len=131_072, sliding_window=262_144, rope_scaling=scaling)


def phi4_14b() -> TransformerDecoder:
    """Phi-4 (microsoft/phi-4): 14.7B parameters, 10 key/value heads, 16k context.

    torchtune's ``phi4_14b`` leaves RoPE's theta at Phi-3's 10,000; the checkpoint's
    ``config.json`` says 250,000, which this builder uses (as transformers does).
    """
    return phi3(
        vocab_size=100_352,
        num_layers=40,
        num_heads=40,
        num_kv_heads=10,
        embed_dim=5120,
        intermediate_dim=17_920,
        max_seq_len=16_384,
        norm_eps=1e-5,
        rope_base=250_000.0,
    )


#: Each model builder and the Hugging Face repository whose weights it loads.
HF_REPOS = {
    phi3_mini_4k: "microsoft/Phi-3-mini-4k-instruct",
    phi3_mini_128k: "microsoft/Phi-3-mini-128k-instruct",
    phi4_14b: "microsoft/phi-4",
}
