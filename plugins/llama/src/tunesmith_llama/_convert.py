"""Hugging Face and Meta checkpoints <-> native Llama modules.

HF weights already use the rotate-half RoPE layout of ``tunesmith.modules``, so
only names change. Meta's ``consolidated.*.pth`` rotate interleaved pairs: their
q/k rows are permuted once on the way in (the permutation HF's own conversion
script applies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tunesmith.checkpoint import config_dtype, hf_decoder_config, interleaved_to_halves, remap_keys
from tunesmith_llama._component_builders import llama

__all__ = [
    "HF_TO_NATIVE",
    "META_TO_NATIVE",
    "build_from_hf_config",
    "build_from_meta_params",
    "hf_config_dtype",
    "hf_config_from_meta_params",
    "llama_args_from_hf_config",
    "llama_args_from_meta_params",
    "meta_to_native",
    "permute_meta_qk",
]

#: HF key template -> native key template (``{}`` is the layer index).
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
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.gate_proj.bias": "layers.{}.mlp.w1.bias",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.mlp.down_proj.bias": "layers.{}.mlp.w2.bias",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.layers.{}.mlp.up_proj.bias": "layers.{}.mlp.w3.bias",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}

#: Meta ``consolidated.*.pth`` key template -> native key template.
META_TO_NATIVE = {
    "tok_embeddings.weight": "tok_embeddings.weight",
    "layers.{}.attention_norm.weight": "layers.{}.sa_norm.weight",
    "layers.{}.attention.wq.weight": "layers.{}.attn.q_proj.weight",
    "layers.{}.attention.wk.weight": "layers.{}.attn.k_proj.weight",
    "layers.{}.attention.wv.weight": "layers.{}.attn.v_proj.weight",
    "layers.{}.attention.wo.weight": "layers.{}.attn.output_proj.weight",
    "layers.{}.ffn_norm.weight": "layers.{}.mlp_norm.weight",
    "layers.{}.feed_forward.w1.weight": "layers.{}.mlp.w1.weight",
    "layers.{}.feed_forward.w2.weight": "layers.{}.mlp.w2.weight",
    "layers.{}.feed_forward.w3.weight": "layers.{}.mlp.w3.weight",
    "norm.weight": "norm.weight",
    "output.weight": "output.weight",
}

#: ``LlamaConfig`` values for keys an old or hand-written config.json may omit.
_HF_DEFAULTS = {"max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


# ---------------------------------------------------------- Hugging Face ---


def llama_args_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_llama.llama` arguments a ``config.json`` describes.

    Read as ``LlamaForCausalLM`` reads it: ``attention_bias``, ``mlp_bias``, ``hidden_act``
    and every RoPE variant of :data:`tunesmith.modules.ROPE_TYPES` (fine-tunes extend the
    context with ``linear`` or ``yarn``).

    Raises:
        CheckpointError: a required key is missing, or the config uses an activation or
            RoPE variant the native model lacks.
    """
    hf = hf_decoder_config(config, defaults=_HF_DEFAULTS)
    return dict(
        hf.decoder_args(),
        attention_bias=hf.attention_bias,
        mlp_bias=hf.mlp_bias,
        activation=hf.activation("Llama"),
    )


def hf_config_dtype(config: Mapping[str, Any]) -> torch.dtype | None:
    """The dtype a ``config.json`` records (``dtype``, or transformers-4 ``torch_dtype``)."""
    return config_dtype(dict(config))


def build_from_hf_config(
    config: Mapping[str, Any], *, dtype: torch.dtype | str | None = None, **overrides: Any
) -> nn.Module:
    """Build the model a Hugging Face ``config.json`` describes (random weights).

    Args:
        config: The parsed ``config.json``, written by transformers 4 or 5.
        dtype: Parameter dtype; ``"auto"`` takes the config's; ``None`` keeps torch's default.
        **overrides: Replace any :func:`~tunesmith_llama.llama` argument (``max_seq_len=...``).

    Raises:
        CheckpointError: the config is not one this plugin can build; the message says why.
    """
    model = llama(**{**llama_args_from_hf_config(config), **overrides})
    if dtype == "auto":
        dtype = hf_config_dtype(config)
    return model.to(dtype) if isinstance(dtype, torch.dtype) else model


# ------------------------------------------------------------------- Meta ---


def permute_meta_qk(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows from Meta's interleaved RoPE pairs to rotate-half
    (:func:`tunesmith.checkpoint.interleaved_to_halves`, per head of ``num_heads``)."""
    return interleaved_to_halves(weight, weight.shape[0] // num_heads)


def _meta_intermediate_dim(params: Mapping[str, Any]) -> int:
    # Meta's rule: 2/3 of 4*dim, times ffn_dim_multiplier, rounded up to multiple_of.
    hidden = int(2 * 4 * params["dim"] / 3)
    if params.get("ffn_dim_multiplier") is not None:
        hidden = int(params["ffn_dim_multiplier"] * hidden)
    multiple = params.get("multiple_of", 256)
    return multiple * math.ceil(hidden / multiple)


def _meta_is_llama3_2(params: Mapping[str, Any]) -> bool:
    # Meta's params.json records neither tied embeddings nor the RoPE factor; Llama
    # 3.2's text models are the only scaled-RoPE Llamas narrower than 4096.
    return bool(params.get("use_scaled_rope")) and params["dim"] < 4096


def _meta_ties_embeddings(params: Mapping[str, Any]) -> bool:
    # An explicit (non-Meta) "tie_word_embeddings" key wins over the guess.
    return bool(params.get("tie_word_embeddings", _meta_is_llama3_2(params)))


def llama_args_from_meta_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~tunesmith_llama.llama` arguments a Meta ``params.json`` describes.

    ``params.json`` omits what Meta's code hard-codes: scaled-RoPE models narrower than
    4096 are read as Llama 3.2 (tied embeddings, RoPE factor 32), others as Llama 3.1
    (factor 8). Optional keys ``rope_scaling_factor`` and ``tie_word_embeddings`` in
    ``params`` override the guess.
    """
    vocab = params.get("vocab_size", -1)
    llama3 = vocab == 128_256 or params.get("rope_theta", 10_000.0) >= 500_000
    scaling = None
    if params.get("use_scaled_rope"):
        factor = params.get("rope_scaling_factor") or (32.0 if _meta_is_llama3_2(params) else 8.0)
        scaling = dict(
            rope_type="llama3",
            factor=float(factor),
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        )
    return dict(
        vocab_size=vocab if vocab > 0 else 32_000,  # Llama 2 writes -1: the tokenizer's 32000
        num_layers=params["n_layers"],
        num_heads=params["n_heads"],
        num_kv_heads=params.get("n_kv_heads") or params["n_heads"],
        embed_dim=params["dim"],
        intermediate_dim=_meta_intermediate_dim(params),
        max_seq_len=params.get("max_seq_len") or (131_072 if scaling else 8192 if llama3 else 4096),
        norm_eps=params.get("norm_eps", 1e-5),
        rope_base=float(params.get("rope_theta", 10_000.0)),
        rope_scaling=scaling,
        tie_word_embeddings=_meta_ties_embeddings(params),
    )


def build_from_meta_params(params: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Build the model a Meta ``params.json`` describes (random weights).

    Args:
        params: The parsed ``params.json``.
        **overrides: Replace any :func:`~tunesmith_llama.llama` argument (``vocab_size=...``).
    """
    return llama(**{**llama_args_from_meta_params(params), **overrides})


def meta_to_native(state_dict: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> dict:
    """Rename a Meta ``consolidated.00.pth`` state dict to native keys, permuting q/k rows.

    Raises:
        CheckpointError: a key that is not a Llama weight.
    """
    args = llama_args_from_meta_params(params)
    native = remap_keys(
        state_dict, META_TO_NATIVE, ignore=(r"^rope\.freqs$",), source="Meta checkpoint"
    )
    for key, tensor in native.items():
        if key.endswith("attn.q_proj.weight"):
            native[key] = permute_meta_qk(tensor, args["num_heads"])
        elif key.endswith("attn.k_proj.weight"):
            native[key] = permute_meta_qk(tensor, args["num_kv_heads"])
    if args["tie_word_embeddings"]:
        native.pop("output.weight", None)
    return native


def hf_config_from_meta_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``config.json`` for HF weights converted from a Meta checkpoint.

    Written with transformers-4 key names (``rope_theta``, ``rope_scaling``,
    ``torch_dtype``), which transformers 5, vLLM and older tools all read.
    """
    args = llama_args_from_meta_params(params)
    llama3 = args["vocab_size"] == 128_256
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": args["vocab_size"],
        "hidden_size": args["embed_dim"],
        "intermediate_size": args["intermediate_dim"],
        "num_hidden_layers": args["num_layers"],
        "num_attention_heads": args["num_heads"],
        "num_key_value_heads": args["num_kv_heads"],
        "head_dim": args["embed_dim"] // args["num_heads"],
        "max_position_embeddings": args["max_seq_len"],
        "rms_norm_eps": args["norm_eps"],
        "rope_theta": args["rope_base"],
        "rope_scaling": args["rope_scaling"],
        "tie_word_embeddings": args["tie_word_embeddings"],
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "bos_token_id": 128_000 if llama3 else 1,
        "eos_token_id": 128_001 if llama3 else 2,
        "torch_dtype": "bfloat16",
    }
