"""Hugging Face Qwen checkpoints <-> native modules, and ``config.json`` -> model.

Qwen's HF weights use the rotate-half RoPE layout of ``tunesmith.modules`` and
Llama's module names (plus ``q_norm``/``k_norm`` in Qwen 3), so only names change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tunesmith import CheckpointError
from tunesmith.checkpoint import HFDecoderConfig, hf_decoder_config
from tunesmith_qwen._component_builders import qwen2, qwen3

__all__ = [
    "HF_TO_NATIVE",
    "build_qwen2_from_hf_config",
    "build_qwen3_from_hf_config",
    "qwen2_args_from_hf_config",
    "qwen3_args_from_hf_config",
    "refuse_moe",
]

#: HF key template -> native key template (``{}`` is the layer index), Qwen 2 and 3.
HF_TO_NATIVE = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attn.q_proj.bias",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attn.k_proj.weight",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attn.k_proj.bias",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attn.v_proj.weight",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attn.v_proj.bias",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.self_attn.o_proj.bias": "layers.{}.attn.output_proj.bias",
    "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attn.q_norm.weight",
    "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attn.k_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}

# Qwen2Config / Qwen3Config values for keys a config.json may omit (transformers 4 and 5
# agree): no sliding window unless use_sliding_window is set, untied head.
_QWEN2_DEFAULTS = {
    "max_position_embeddings": 32_768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 28,
}
_QWEN3_DEFAULTS = {**_QWEN2_DEFAULTS, "head_dim": 128}


def _shared_args(
    config: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[dict[str, Any], HFDecoderConfig]:
    if config.get("hidden_act", "silu") != "silu":
        raise CheckpointError(
            f"config.json has hidden_act={config['hidden_act']!r}; Qwen checkpoints use silu: "
            "check that checkpoint_dir holds a Qwen model"
        )
    hf = hf_decoder_config(config, defaults=defaults)
    windows = hf.sliding_windows
    sliding_window = None if all(w is None for w in windows) else list(windows)
    return dict(hf.decoder_args(), sliding_window=sliding_window), hf


def qwen2_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_qwen.qwen2` arguments a Qwen 2/2.5 ``config.json`` describes.

    Sliding windows follow transformers: layers from ``max_window_layers`` on attend to
    the last ``sliding_window`` tokens when ``use_sliding_window`` is true (or as
    ``layer_types`` lists them, in files written by transformers 5).

    Raises:
        CheckpointError: a required key is missing, or a feature Qwen 2 lacks.
    """
    args, _ = _shared_args(config, _QWEN2_DEFAULTS)
    return args


def qwen3_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_qwen.qwen3` arguments a dense Qwen 3 ``config.json`` describes.

    Raises:
        CheckpointError: a required key is missing, or a feature Qwen 3 lacks.
    """
    args, hf = _shared_args(config, _QWEN3_DEFAULTS)
    return dict(args, attention_bias=hf.attention_bias)


def build_qwen2_from_hf_config(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Build the Qwen 2/2.5 model a ``config.json`` describes (random weights).

    Args:
        config: The parsed ``config.json``, written by transformers 4 or 5.
        **overrides: Replace any :func:`~tunesmith_qwen.qwen2` argument (``max_seq_len=...``).

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    return qwen2(**{**qwen2_args_from_hf_config(config), **overrides})


def build_qwen3_from_hf_config(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Build the dense Qwen 3 model a ``config.json`` describes (random weights).

    Args:
        config: The parsed ``config.json``, written by transformers 4 or 5.
        **overrides: Replace any :func:`~tunesmith_qwen.qwen3` argument (``max_seq_len=...``).

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    return qwen3(**{**qwen3_args_from_hf_config(config), **overrides})


def refuse_moe(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Refuse a Qwen mixture-of-experts checkpoint with one line saying what to use instead.

    Raises:
        CheckpointError: always: tunesmith's decoder has no expert-routed MLP layers.
    """
    model_type = config.get("model_type", "qwen_moe")
    experts = config.get("num_experts")
    what = f"a mixture of {experts} experts" if experts else "a mixture of experts"
    raise CheckpointError(
        f"config.json has model_type '{model_type}' ({what}, e.g. Qwen3-30B-A3B or "
        "Qwen1.5-MoE-A2.7B), but tunesmith's decoder has no expert-routed MLP layers yet: "
        "fine-tune a dense Qwen checkpoint instead (Qwen3-32B, Qwen3-14B, Qwen2.5-32B-Instruct, ...)"
    )
