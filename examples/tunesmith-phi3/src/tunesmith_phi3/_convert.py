"""Hugging Face Phi-3 checkpoints <-> native modules.

HF stores q, k and v as one ``qkv_proj`` and the MLP's gate and up projections as one
``gate_up_proj``; :class:`tunesmith.FusedModule` specs say how they stack, and the core
splits them on load, fuses them on save, and exports LoRAs of the parts as one LoRA of
the fused module. Everything else maps one to one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tunesmith import CheckpointError, FusedModule
from tunesmith.checkpoint import HFDecoderConfig, hf_decoder_config
from tunesmith.modules import TransformerDecoder
from tunesmith_phi3._builders import phi3

__all__ = [
    "FUSED",
    "HF_TO_NATIVE",
    "build_from_hf_config",
    "phi3_args_from_hf_config",
    "tiny_phi3_config",
]

#: HF key template -> native key template, for the weights that map one to one.
HF_TO_NATIVE = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}

#: Phi3Config's defaults for keys a config.json may leave out.
_HF_DEFAULTS = {
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "sliding_window": None,
}
#: RoPE names of early Phi-3 config.json files; transformers reads both as longrope.
_ROPE_ALIASES = {"su": "longrope", "yarn": "longrope"}


def _hf(config: Mapping[str, Any]) -> HFDecoderConfig:
    return hf_decoder_config(config, defaults=_HF_DEFAULTS, rope_aliases=_ROPE_ALIASES)


def _qkv_rows(config: Mapping[str, Any]) -> tuple[int, int, int]:
    hf = _hf(config)
    kv = hf.num_kv_heads * hf.head_dim
    return hf.num_heads * hf.head_dim, kv, kv


def _gate_up_rows(config: Mapping[str, Any]) -> tuple[int, int]:
    # transformers' Phi3MLP chunks gate_up_proj's output in two: gate first, then up
    inter = _hf(config).intermediate_dim
    return inter, inter


#: The fused HF modules and the native modules they stack, in stacking order.
FUSED = (
    FusedModule(
        hf="model.layers.{}.self_attn.qkv_proj",
        parts=("layers.{}.attn.q_proj", "layers.{}.attn.k_proj", "layers.{}.attn.v_proj"),
        sizes=_qkv_rows,
    ),
    FusedModule(
        hf="model.layers.{}.mlp.gate_up_proj",
        parts=("layers.{}.mlp.w1", "layers.{}.mlp.w3"),
        sizes=_gate_up_rows,
    ),
)


def phi3_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_phi3.phi3` arguments a ``config.json`` describes
    (transformers 4 or 5 layout; ``"su"``/``"yarn"`` RoPE read as LongRoPE).

    Raises:
        CheckpointError: a required key is missing, or the config asks for biases, which
            transformers' Phi-3 never has.
    """
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise CheckpointError(
            "config.json sets attention_bias or mlp_bias, which Phi-3 checkpoints never use "
            "(transformers' Phi3 model ignores them): check that checkpoint_dir holds a Phi-3 "
            "model, or remove the key"
        )
    hf = _hf(config)
    return dict(
        hf.decoder_args(),
        rope_dim=hf.rope_dim,
        sliding_window=hf.sliding_window,
        activation=hf.activation("Phi-3"),
    )


def build_from_hf_config(config: Mapping[str, Any], **overrides: Any) -> TransformerDecoder:
    """Build the model a Hugging Face ``config.json`` describes (random weights, under
    torch's default device and dtype, as the checkpointer sets them).

    Args:
        config: The parsed ``config.json``.
        **overrides: Replace any :func:`~tunesmith_phi3.phi3` argument (``max_seq_len=...``).

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    return phi3(**{**phi3_args_from_hf_config(config), **overrides})


# ---- tiny configs for tests and the conformance kit ---------------------------------

_TINY = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # GQA, so q, k and v rows differ in the fused split
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "rope_theta": 10_000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "initializer_range": 0.02,
    "use_cache": True,
}

_VARIANTS: dict[str, dict[str, Any]] = {
    # 4k: plain RoPE and a sliding window short enough for a test sequence to cross.
    "mini_4k": {
        # room for a chat-formatted prompt in the workflow tests
        "max_position_embeddings": 256,
        "original_max_position_embeddings": 256,
        "sliding_window": 12,
        "rope_scaling": None,
    },
    # 128k: LongRoPE with transformers-4 keys, as the Hub's config.json has them; a
    # tiny original length, so a test sequence crosses from short to long factors.
    "mini_128k": {
        "max_position_embeddings": 128,
        "original_max_position_embeddings": 16,
        "sliding_window": 256,
        "rope_scaling": {
            "type": "longrope",
            "short_factor": [1.0, 1.02, 1.1, 1.3, 1.7, 2.0, 2.2, 2.9],
            "long_factor": [1.1, 1.5, 3.7, 9.1, 21.9, 39.9, 59.3, 64.8],
        },
    },
    # Phi-4: no sliding window, Phi-4's RoPE theta, 4 query heads per key/value head.
    "phi4": {
        "num_key_value_heads": 1,
        "max_position_embeddings": 256,
        "original_max_position_embeddings": 256,
        "sliding_window": None,
        "rope_scaling": None,
        "rope_theta": 250_000.0,
    },
    # Phi-4-mini (model: auto): RoPE on 3/4 of each head's features, LongRoPE with a
    # factor per rotary pair, the embedding tied to the head.
    "phi4_mini": {
        "max_position_embeddings": 128,
        "original_max_position_embeddings": 16,
        "sliding_window": None,
        "partial_rotary_factor": 0.75,
        "tie_word_embeddings": True,
        "rope_scaling": {
            "type": "longrope",
            "short_factor": [1.0, 1.1, 1.3, 1.7, 2.0, 2.9],
            "long_factor": [1.1, 3.7, 9.1, 21.9, 39.9, 64.8],
        },
    },
}


def tiny_phi3_config(variant: str = "mini_4k", **overrides: Any) -> dict[str, Any]:
    """A tiny Phi-3 ``config.json`` dict (head_dim 16, 2 layers, vocab 512).

    Args:
        variant: ``"mini_4k"`` (plain RoPE, sliding window 12), ``"mini_128k"``
            (LongRoPE with ``original_max_position_embeddings`` 16), ``"phi4"``
            (Phi-4's layout: no sliding window, RoPE theta 250,000, one key/value head)
            or ``"phi4_mini"`` (Phi-4-mini's: partial rotary, LongRoPE, tied embeddings).
        **overrides: Replace any config key (``vocab_size=...``).

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in _VARIANTS:
        raise ValueError(
            f"unknown tiny Phi-3 variant {variant!r}: choose one of {sorted(_VARIANTS)}"
        )
    return copy.deepcopy({**_TINY, **_VARIANTS[variant], **overrides})
