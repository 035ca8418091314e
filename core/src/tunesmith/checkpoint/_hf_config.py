"""Reading the decoder settings a Hugging Face ``config.json`` records.

Hub checkpoints were mostly written by transformers 4 (top-level ``rope_theta`` and
``rope_scaling``, ``torch_dtype``); transformers 5 writes ``rope_parameters`` and
``dtype``. These helpers read both, so a family's adapter reads neither by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.checkpoint._dtypes import config_dtype
from tunesmith.errors import CheckpointError
from tunesmith.modules import ACTIVATIONS, ROPE_TYPES

__all__ = ["HFDecoderConfig", "hf_decoder_config", "hf_rope_settings"]

# What transformers assumes when a key is missing (PretrainedConfig 4.x omitted
# tie_word_embeddings from config.json when it was true).
_FALLBACKS: dict[str, Any] = {
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "sliding_window": None,
    "use_sliding_window": True,
    "max_window_layers": None,
    "layer_types": None,
    "partial_rotary_factor": 1.0,
}
_REQUIRED = (
    "vocab_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_size",
    "intermediate_size",
    "max_position_embeddings",
)
_LAYER_TYPES = ("full_attention", "sliding_attention")
# Variants whose tables depend on the pretraining context length.
_NEEDS_ORIGINAL_LENGTH = ("llama3", "yarn", "longrope")


def _missing(key: str) -> CheckpointError:
    return CheckpointError(
        f"config.json has no {key!r}, which the model needs: point checkpointer.checkpoint_dir "
        "at a Hugging Face model directory with a complete config.json, or add the key to it"
    )


def _is_nested(params: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    labels = set(config.get("layer_types") or ()) | set(_LAYER_TYPES)
    return bool(params) and all(key in labels for key in params)


def hf_rope_settings(
    config: Mapping[str, Any],
    *,
    layer_type: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, scaling)`` from a ``config.json`` of either layout.

    Reads transformers 5's ``rope_parameters`` (flat, or nested by layer type as
    Gemma 3 writes it) or transformers 4's top-level ``rope_theta`` and
    ``rope_scaling`` (which may spell ``rope_type`` as ``type``). The result is ready for
    :class:`tunesmith.modules.RotaryPositionalEmbeddings`: ``scaling`` is ``None`` for
    plain RoPE, otherwise a dict with ``rope_type`` and the variant's keys, completed as
    transformers' ``standardize_rope_params`` does: ``original_max_position_embeddings``
    for llama3/yarn/longrope (a top-level value wins, as for Phi-3; else
    ``max_position_embeddings``) and, for yarn/longrope without a ``factor``,
    ``max_position_embeddings / original_max_position_embeddings``.
    ``partial_rotary_factor`` is not part of it (see :class:`HFDecoderConfig`).

    Args:
        config: The parsed ``config.json``.
        layer_type: For configs with per-layer-type RoPE: ``"full_attention"`` or
            ``"sliding_attention"``; ignored by flat configs.
        aliases: Family-specific old names of variants, e.g. Phi-3's
            ``{"su": "longrope", "yarn": "longrope"}``.

    Raises:
        CheckpointError: a variant :data:`tunesmith.modules.ROPE_TYPES` lacks, settings
            nested by layer type without ``layer_type``, or a variant without the
            lengths it needs.
    """
    params = config.get("rope_parameters")
    if params is None:
        params = config.get("rope_scaling")
    params = dict(params or {})
    if _is_nested(params, config):
        if layer_type is None:
            raise CheckpointError(
                f"config.json sets RoPE per layer type ({', '.join(params)}): the family's "
                "adapter must read each with hf_rope_settings(config, layer_type=...)"
            )
        params = dict(params.get(layer_type) or {})
    theta = params.pop("rope_theta", None)
    theta = float(theta if theta is not None else config.get("rope_theta") or 10_000.0)
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    params.pop("partial_rotary_factor", None)
    rope_type = (aliases or {}).get(rope_type, rope_type)
    if rope_type not in ROPE_TYPES:
        raise CheckpointError(
            f"config.json asks for RoPE scaling {rope_type!r}, which tunesmith does not implement "
            f"(it supports {', '.join(ROPE_TYPES)}): use a checkpoint without it or pass the "
            "model override rope_scaling=null to fine-tune at the original context"
        )
    if rope_type == "default":
        return theta, None
    scaling = {"rope_type": rope_type, **params}
    if rope_type in _NEEDS_ORIGINAL_LENGTH:
        max_len = config.get("max_position_embeddings")
        if config.get("original_max_position_embeddings") is not None:
            scaling["original_max_position_embeddings"] = config["original_max_position_embeddings"]
        elif scaling.get("original_max_position_embeddings") is None:
            if max_len is None:
                raise _missing("max_position_embeddings")
            scaling["original_max_position_embeddings"] = max_len
        if rope_type in ("yarn", "longrope") and scaling.get("factor") is None:
            if max_len is None:
                raise _missing("max_position_embeddings")
            scaling["factor"] = max_len / scaling["original_max_position_embeddings"]
    return theta, scaling


@dataclass(frozen=True)
class HFDecoderConfig:
    """The decoder settings every family's ``config.json`` shares, under the argument
    names of :func:`tunesmith.modules.build_decoder` (the HF key in brackets).

    Attributes:
        vocab_size: [``vocab_size``].
        num_layers: [``num_hidden_layers``].
        num_heads: [``num_attention_heads``].
        num_kv_heads: [``num_key_value_heads``]; ``num_heads`` when missing or null.
        embed_dim: [``hidden_size``].
        intermediate_dim: [``intermediate_size``].
        head_dim: [``head_dim``]; ``hidden_size // num_attention_heads`` when missing or null.
        max_seq_len: [``max_position_embeddings``].
        norm_eps: [``rms_norm_eps``].
        rope_base: RoPE theta, see :func:`hf_rope_settings`; for per-layer-type RoPE the
            ``full_attention`` entry.
        rope_scaling: RoPE variant, as ``rope_base``.
        partial_rotary_factor: [``partial_rotary_factor``, top level or in
            ``rope_parameters``]; 1.0 when missing.
        tie_word_embeddings: [``tie_word_embeddings``].
        attention_bias: [``attention_bias``].
        mlp_bias: [``mlp_bias``].
        hidden_act: [``hidden_act``].
        sliding_window: [``sliding_window``], ``None`` when ``use_sliding_window`` is
            false (Qwen 2/3 default).
        layer_types: [``layer_types``] (transformers 5), or ``None``.
        sliding_windows: The window of each layer: ``sliding_window`` for layers whose
            ``layer_types`` entry is ``"sliding_attention"``; without ``layer_types``, for
            layers from ``max_window_layers`` on when the config has it (Qwen 2/3), else
            for every layer (Mistral, Phi-3). ``None`` entries: full attention.
        dtype: [``dtype`` or ``torch_dtype``], see :func:`tunesmith.checkpoint.config_dtype`.
    """

    vocab_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    embed_dim: int
    intermediate_dim: int
    head_dim: int
    max_seq_len: int
    norm_eps: float
    rope_base: float
    rope_scaling: dict[str, Any] | None
    partial_rotary_factor: float
    tie_word_embeddings: bool
    attention_bias: bool
    mlp_bias: bool
    hidden_act: str
    sliding_window: int | None
    layer_types: tuple[str, ...] | None
    sliding_windows: tuple[int | None, ...]
    dtype: torch.dtype | None

    @property
    def rope_dim(self) -> int:
        """Rotary dimension: ``int(head_dim * partial_rotary_factor)``."""
        return int(self.head_dim * self.partial_rotary_factor)

    def activation(self, family: str) -> str:
        """``hidden_act``, checked against :data:`tunesmith.modules.ACTIVATIONS`.

        Raises:
            CheckpointError: an activation tunesmith lacks; the message names ``family``
                (the family's display name) as the model ``checkpoint_dir`` should hold.
        """
        if self.hidden_act not in ACTIVATIONS:
            raise CheckpointError(
                f"config.json has hidden_act={self.hidden_act!r}, which tunesmith does not "
                f"implement (it knows {', '.join(ACTIVATIONS)}): check that checkpoint_dir "
                f"holds a {family} model"
            )
        return self.hidden_act

    def decoder_args(self) -> dict[str, Any]:
        """The arguments every family's decoder builder takes from a ``config.json``, by
        :func:`tunesmith.modules.build_decoder`'s names: sizes, norm epsilon, RoPE and
        tied embeddings. Families add their own (biases, windows, activations, ...)."""
        return {
            name: getattr(self, name)
            for name in (
                "vocab_size", "num_layers", "num_heads", "num_kv_heads", "embed_dim",
                "intermediate_dim", "head_dim", "max_seq_len", "norm_eps", "rope_base",
                "rope_scaling", "tie_word_embeddings",
            )
        }  # fmt: skip


def hf_decoder_config(
    config: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    rope_aliases: Mapping[str, str] | None = None,
) -> HFDecoderConfig:
    """Read the shared decoder settings of a ``config.json`` (transformers 4 or 5).

    Args:
        config: The parsed ``config.json``.
        defaults: The family's values for keys a config may omit, by HF key (its
            transformers config class defaults, e.g. ``{"max_position_embeddings": 4096}``,
            Gemma 2's ``{"layer_types": [...]}`` for files written before transformers 5).
            Without one, a missing optional key takes transformers' generic default.
        rope_aliases: The family's old names of RoPE variants, passed to
            :func:`hf_rope_settings` (Phi-3's ``{"su": "longrope", "yarn": "longrope"}``).

    Raises:
        CheckpointError: a required key is missing (the message names it and the fix),
            an unsupported RoPE variant, or a ``layer_types`` entry other than
            ``full_attention``/``sliding_attention``.
    """
    full = {**(defaults or {}), **config}

    def get(key: str) -> Any:
        if key in full:
            return full[key]
        if key in _FALLBACKS:
            return _FALLBACKS[key]
        raise _missing(key)

    required = {key: get(key) for key in _REQUIRED}
    for key, value in required.items():
        if value is None:
            raise _missing(key)
    heads, layers = required["num_attention_heads"], required["num_hidden_layers"]
    nested = _is_nested(_rope_dict(full), full)
    theta, scaling = hf_rope_settings(
        full, layer_type="full_attention" if nested else None, aliases=rope_aliases
    )
    # transformers 5 moves partial_rotary_factor into (flat) rope_parameters.
    partial = None if nested else _rope_dict(full).get("partial_rotary_factor")
    if partial is None:
        partial = get("partial_rotary_factor")

    window = get("sliding_window") if get("use_sliding_window") else None
    layer_types = get("layer_types")
    layer_types = tuple(layer_types) if layer_types is not None else None
    if layer_types is not None:
        unknown = sorted(set(layer_types) - set(_LAYER_TYPES))
        if unknown:
            raise CheckpointError(
                f"config.json has layer_types {unknown}, which tunesmith's decoder does not "
                f"implement (it knows {', '.join(_LAYER_TYPES)})"
            )
        if len(layer_types) != layers:
            raise CheckpointError(
                f"config.json lists {len(layer_types)} layer_types for {layers} layers: fix "
                "layer_types or num_hidden_layers"
            )
        windows = tuple(window if t == "sliding_attention" else None for t in layer_types)
    elif get("max_window_layers") is not None:
        first = get("max_window_layers")
        windows = tuple(window if i >= first else None for i in range(layers))
    else:
        windows = (window,) * layers

    return HFDecoderConfig(
        vocab_size=required["vocab_size"],
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=full.get("num_key_value_heads") or heads,
        embed_dim=required["hidden_size"],
        intermediate_dim=required["intermediate_size"],
        head_dim=full.get("head_dim") or required["hidden_size"] // heads,
        max_seq_len=required["max_position_embeddings"],
        norm_eps=get("rms_norm_eps"),
        rope_base=theta,
        rope_scaling=scaling,
        partial_rotary_factor=float(1.0 if partial is None else partial),
        tie_word_embeddings=bool(get("tie_word_embeddings")),
        attention_bias=bool(get("attention_bias")),
        mlp_bias=bool(get("mlp_bias")),
        hidden_act=get("hidden_act"),
        sliding_window=window,
        layer_types=layer_types,
        sliding_windows=windows,
        dtype=config_dtype(dict(config)),
    )


def _rope_dict(config: Mapping[str, Any]) -> Mapping[str, Any]:
    params = config.get("rope_parameters")
    return (params if params is not None else config.get("rope_scaling")) or {}
