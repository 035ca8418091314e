"""Hugging Face Mistral checkpoints <-> native modules, and ``config.json`` -> model.

``MistralForCausalLM`` stores its weights under Llama's module names, in the
rotate-half RoPE layout of ``tunesmith.modules``, so only names change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tunesmith import CheckpointError
from tunesmith.checkpoint import hf_decoder_config
from tunesmith_mistral._component_builders import mistral

__all__ = ["HF_TO_NATIVE", "build_from_hf_config", "mistral_args_from_hf_config", "refuse_mixtral"]

#: HF key template -> native key template (``{}`` is the layer index).
HF_TO_NATIVE = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attn.k_proj.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attn.v_proj.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}

# MistralConfig's values (transformers 4 and 5) for keys a config.json may omit.
_HF_DEFAULTS = {
    "max_position_embeddings": 4096 * 32,
    "rms_norm_eps": 1e-6,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
}
_DEFAULT_WINDOW = 4096


def mistral_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_mistral.mistral` arguments a ``config.json`` describes.

    Read as ``MistralForCausalLM`` reads it: ``sliding_window`` (4096 when the key is
    missing, ``null`` for full attention) applies to every layer, whatever
    ``layer_types`` or ``use_sliding_window`` say; there are no attention or MLP biases.

    Raises:
        CheckpointError: a required key is missing, or an activation or RoPE variant
            tunesmith lacks.
    """
    hf = hf_decoder_config(config, defaults=_HF_DEFAULTS)
    window = config.get("sliding_window", _DEFAULT_WINDOW)
    return dict(
        hf.decoder_args(),
        sliding_window=int(window) if window is not None else None,
        activation=hf.activation("Mistral"),
    )


def build_from_hf_config(
    config: Mapping[str, Any], *, dtype: torch.dtype | str | None = None, **overrides: Any
) -> nn.Module:
    """Build the model a Hugging Face ``config.json`` describes (random weights).

    Args:
        config: The parsed ``config.json``, written by transformers 4 or 5.
        dtype: Parameter dtype; ``"auto"`` takes the config's; ``None`` keeps torch's default.
        **overrides: Replace any :func:`~tunesmith_mistral.mistral` argument
            (``max_seq_len=...``, ``sliding_window=None``).

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    model = mistral(**{**mistral_args_from_hf_config(config), **overrides})
    if dtype == "auto":
        dtype = hf_decoder_config(config, defaults=_HF_DEFAULTS).dtype
    return model.to(dtype) if isinstance(dtype, torch.dtype) else model


def refuse_mixtral(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Refuse a Mixtral checkpoint with one line saying what to use instead.

    Raises:
        CheckpointError: always: tunesmith's decoder has no expert-routed MLP layers.
    """
    experts = config.get("num_local_experts")
    what = f"{experts} experts per layer" if experts else "experts in every layer"
    raise CheckpointError(
        f"config.json has model_type 'mixtral' (a mixture of experts: {what}, as in "
        "Mixtral-8x7B and 8x22B), but tunesmith's decoder has no expert-routed MLP layers yet: "
        "fine-tune a dense Mistral checkpoint instead (Mistral-7B-v0.3, Mistral-Nemo-Base-2407, "
        "Mistral-Small-24B-Base-2501)"
    )
