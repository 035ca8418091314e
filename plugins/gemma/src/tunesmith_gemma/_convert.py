"""Hugging Face Gemma checkpoints <-> native modules, and ``config.json`` -> builder args.

Gemma's HF weights already use the rotate-half RoPE layout and store norm weights as
offsets (``1 + weight``), exactly what the native modules hold: only names change.
Each generation has its own table because the norms around a block mean different
things: Gemma 1's ``post_attention_layernorm`` is the norm *before* the MLP, Gemma 2/3's
is the norm of the attention output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from tunesmith import CheckpointError
from tunesmith.checkpoint import config_dtype, hf_decoder_config, hf_rope_settings
from tunesmith_gemma._component_builders import gemma, gemma2, gemma3, gemma_layer_types

__all__ = [
    "GEMMA2_HF_TO_NATIVE",
    "GEMMA3_HF_TO_NATIVE",
    "GEMMA3_KEY_LAYOUTS",
    "GEMMA3_MULTIMODAL_HF_TO_NATIVE",
    "GEMMA3_PASSTHROUGH",
    "GEMMA_HF_TO_NATIVE",
    "build_gemma2_from_hf_config",
    "build_gemma3_from_hf_config",
    "build_gemma3_text_from_hf_config",
    "build_gemma_from_hf_config",
    "gemma2_args_from_hf_config",
    "gemma3_args_from_hf_config",
    "gemma_args_from_hf_config",
]

_PROJECTIONS = {
    "self_attn.q_proj": "attn.q_proj",
    "self_attn.k_proj": "attn.k_proj",
    "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.output_proj",
    "mlp.gate_proj": "mlp.w1",
    "mlp.down_proj": "mlp.w2",
    "mlp.up_proj": "mlp.w3",
}
_GEMMA_NORMS = {"input_layernorm": "sa_norm", "post_attention_layernorm": "mlp_norm"}
_GEMMA2_NORMS = {
    "input_layernorm": "sa_norm",
    "post_attention_layernorm": "sa_post_norm",
    "pre_feedforward_layernorm": "mlp_norm",
    "post_feedforward_layernorm": "mlp_post_norm",
}
_GEMMA3_NORMS = {
    **_GEMMA2_NORMS,
    "self_attn.q_norm": "attn.q_norm",
    "self_attn.k_norm": "attn.k_norm",
}


def _table(norms: Mapping[str, str], *, model: str = "model.") -> dict[str, str]:
    """HF key template -> native key template, the decoder stored under ``model``."""
    layer = f"{model}layers.{{}}"
    table = {f"{model}embed_tokens.weight": "tok_embeddings.weight"}
    for hf, native in norms.items():
        table[f"{layer}.{hf}.weight"] = f"layers.{{}}.{native}.weight"
    for hf, native in _PROJECTIONS.items():
        for suffix in ("weight", "bias"):
            table[f"{layer}.{hf}.{suffix}"] = f"layers.{{}}.{native}.{suffix}"
    table[f"{model}norm.weight"] = "norm.weight"
    table["lm_head.weight"] = "output.weight"  # only in checkpoints with untied embeddings
    return table


#: Gemma (1) HF key template -> native key template (``{}`` is the layer index).
GEMMA_HF_TO_NATIVE = _table(_GEMMA_NORMS)
#: Gemma 2.
GEMMA2_HF_TO_NATIVE = _table(_GEMMA2_NORMS)
#: Gemma 3 text (``Gemma3ForCausalLM``, model_type ``gemma3_text``).
GEMMA3_HF_TO_NATIVE = _table(_GEMMA3_NORMS)
#: The language model of ``Gemma3ForConditionalGeneration`` (model_type ``gemma3``),
#: under its module names (what PEFT adapters name).
GEMMA3_MULTIMODAL_HF_TO_NATIVE = _table(_GEMMA3_NORMS, model="model.language_model.")
#: The other layout of the same keys: the Hub's files and transformers 5 write the
#: language model as ``language_model.model.*``; transformers 4.52-4.57 as
#: ``model.language_model.*`` (the table's).
GEMMA3_KEY_LAYOUTS = (
    {"model.language_model.": "language_model.model.", "lm_head.": "language_model.lm_head."},
)
#: The vision tower and projector, under either layout: kept aside and written back.
GEMMA3_PASSTHROUGH = (r"^(model\.)?vision_tower\.", r"^(model\.)?multi_modal_projector\.")


# ---- config.json -> builder arguments -----------------------------------------------------

# Values transformers' config classes assume for keys a config.json may omit.
_GEMMA_DEFAULTS = {
    "vocab_size": 256_000,
    "head_dim": 256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "rope_theta": 10_000.0,
}
# Gemma3TextConfig's: a multimodal checkpoint's text_config often lists only what differs.
_GEMMA3_DEFAULTS = {
    "vocab_size": 262_208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 131_072,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "sliding_window": 4096,
    "rope_theta": 1_000_000.0,
}


def _not_gemma(generation: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"config.json {reason}, which {generation} checkpoints never have: check that "
        f"checkpointer.checkpoint_dir holds a {generation} model"
    )


def _activation(config: Mapping[str, Any], key: str, generation: str) -> None:
    name = config.get(key) or "gelu_pytorch_tanh"
    # transformers reads Gemma 1's legacy "gelu" as the tanh approximation it was trained with.
    if name not in ("gelu_pytorch_tanh", "gelu" if key == "hidden_act" else ""):
        raise _not_gemma(generation, f"has {key}={name!r} (Gemma uses gelu_pytorch_tanh)")


def _refuse_bidirectional(config: Mapping[str, Any], generation: str) -> None:
    if config.get("use_bidirectional_attention"):
        raise CheckpointError(
            f"config.json sets use_bidirectional_attention (an embedding model such as "
            f"EmbeddingGemma), which tunesmith's {generation} decoder does not implement: "
            "use a causal language model checkpoint"
        )


def _common(hf: Any) -> dict[str, Any]:
    # RoPE is per generation (see the builders below), not from the shared arguments.
    args = {k: v for k, v in hf.decoder_args().items() if not k.startswith("rope_")}
    return dict(args, attention_bias=hf.attention_bias)


def _plain_rope(hf: Any, generation: str) -> float:
    if hf.rope_scaling is not None:
        raise CheckpointError(
            f"config.json asks for RoPE scaling {hf.rope_scaling.get('rope_type')!r}, which no "
            f"{generation} release uses: use an unmodified {generation} config.json"
        )
    return hf.rope_base


def gemma_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_gemma.gemma` arguments a Gemma ``config.json`` describes.

    Raises:
        CheckpointError: a required key is missing, or a setting Gemma never uses.
    """
    _activation(config, "hidden_act", "Gemma")
    _refuse_bidirectional(config, "Gemma")
    hf = hf_decoder_config(config, defaults=_GEMMA_DEFAULTS)
    return dict(_common(hf), rope_base=_plain_rope(hf, "Gemma"))


def _softcap(config: Mapping[str, Any], key: str, default: float | None) -> float | None:
    # A key present with null means "off"; a missing key takes the config class's default.
    value = config.get(key, default)
    return None if value is None else float(value)


def gemma2_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_gemma.gemma2` arguments a Gemma 2 ``config.json`` describes
    (``layer_types`` of files written before transformers 5 alternate, local first).

    Raises:
        CheckpointError: a required key is missing, or a setting Gemma 2 never uses.
    """
    _activation(config, "hidden_activation", "Gemma 2")
    _refuse_bidirectional(config, "Gemma 2")
    layers = config.get("num_hidden_layers")
    defaults = {**_GEMMA_DEFAULTS, "sliding_window": 4096}
    if isinstance(layers, int):
        defaults["layer_types"] = gemma_layer_types(layers, 2)
    hf = hf_decoder_config(config, defaults=defaults)
    return dict(
        _common(hf),
        rope_base=_plain_rope(hf, "Gemma 2"),
        query_pre_attn_scalar=float(config.get("query_pre_attn_scalar") or 256),
        sliding_window=hf.sliding_window,
        layer_types=list(hf.layer_types),
        attn_softcap=_softcap(config, "attn_logit_softcapping", 50.0),
        final_softcap=_softcap(config, "final_logit_softcapping", 30.0),
    )


def gemma3_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_gemma.gemma3` arguments of a Gemma 3 text ``config.json``
    (a ``gemma3_text`` config, or a ``gemma3`` one's ``text_config``).

    Reads both layouts: transformers 5's ``rope_parameters`` per layer type, and
    transformers 4's ``rope_theta`` + ``rope_scaling`` (global layers) +
    ``rope_local_base_freq`` (local layers) with ``sliding_window_pattern``.

    Raises:
        CheckpointError: a required key is missing, or a setting Gemma 3 never uses.
    """
    _activation(config, "hidden_activation", "Gemma 3")
    _refuse_bidirectional(config, "Gemma 3")
    full = {**_GEMMA3_DEFAULTS, **config}
    pattern = full.get("sliding_window_pattern") or full.get("_sliding_window_pattern") or 6
    defaults = {
        **_GEMMA3_DEFAULTS,
        "layer_types": gemma_layer_types(full["num_hidden_layers"], pattern),
    }
    hf = hf_decoder_config(config, defaults=defaults)
    params = config.get("rope_parameters")
    if isinstance(params, Mapping) and "sliding_attention" in params:
        local_base, local_scaling = hf_rope_settings(full, layer_type="sliding_attention")
    else:  # transformers 4: the top-level settings are the global layers'
        local_base, local_scaling = float(full.get("rope_local_base_freq") or 10_000.0), None
    return dict(
        _common(hf),
        rope_base=hf.rope_base,
        rope_scaling=hf.rope_scaling,
        local_rope_base=local_base,
        local_rope_scaling=local_scaling,
        query_pre_attn_scalar=float(config.get("query_pre_attn_scalar") or 256),
        sliding_window=hf.sliding_window,
        layer_types=list(hf.layer_types),
        # transformers' Gemma 3 attention reads attn_logit_softcapping but never applies
        # it (the released configs leave it null), so a config that sets it is not capped.
        attn_softcap=None,
        final_softcap=_softcap(config, "final_logit_softcapping", None),
    )


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A ``gemma3`` (multimodal) config's ``text_config``, with the top-level settings
    transformers lets it inherit."""
    text = config.get("text_config")
    if not isinstance(text, Mapping):
        raise CheckpointError(
            "config.json has model_type 'gemma3' but no text_config: a Gemma 3 "
            "Gemma3ForConditionalGeneration config.json nests the language model's settings "
            "there — re-download the checkpoint's config.json"
        )
    text = dict(text)
    # Gemma3ForConditionalGeneration ties its head by the top-level value (transformers 5
    # writes text_config's too, which may differ), so the top level wins where it is set.
    if "tie_word_embeddings" in config:
        text["tie_word_embeddings"] = config["tie_word_embeddings"]
    return text


def _builder(
    make: Callable[..., nn.Module],
    read: Callable[[Mapping[str, Any]], dict[str, Any]],
    text: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda c: c,
) -> Callable[..., nn.Module]:
    def build(
        config: Mapping[str, Any], *, dtype: torch.dtype | str | None = None, **overrides: Any
    ) -> nn.Module:
        model = make(**{**read(text(config)), **overrides})
        if dtype == "auto":
            dtype = config_dtype(dict(config))
        return model.to(dtype) if isinstance(dtype, torch.dtype) else model

    build.__doc__ = f"""Build the model a ``config.json`` describes (random weights).

    Args:
        config: The parsed ``config.json``, written by transformers 4 or 5.
        dtype: Parameter dtype; ``"auto"`` takes the config's; ``None`` keeps torch's default.
        **overrides: Replace any :func:`~tunesmith_gemma.{make.__name__}` argument.

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    return build


#: ``f(config, *, dtype=None, **overrides)``: the checkpoint adapters' ``build_from_hf_config``.
build_gemma_from_hf_config = _builder(gemma, gemma_args_from_hf_config)
build_gemma2_from_hf_config = _builder(gemma2, gemma2_args_from_hf_config)
build_gemma3_text_from_hf_config = _builder(gemma3, gemma3_args_from_hf_config)
build_gemma3_from_hf_config = _builder(gemma3, gemma3_args_from_hf_config, _text_config)
