"""Typed records of the components plugins register.

A plugin builds one of these and hands it to the ``register`` callback its hook
receives; the registry stamps ``origin`` (which distribution registered it) and
refuses a second component with the same name in the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointAdapter",
    "Config",
    "Dataset",
    "Evaluator",
    "Model",
    "Origin",
    "PeftMethod",
    "Quantizer",
    "Recipe",
    "Tokenizer",
]


@dataclass(frozen=True)
class Origin:
    """Where a component came from: the plugin name and its distribution."""

    plugin: str
    distribution: str
    version: str


_UNKNOWN = Origin("unknown", "unknown", "0")


@dataclass(frozen=True)
class Model:
    """A model builder, e.g. ``llama3_2_1b``.

    Attributes:
        name: Registry key, used as ``model._component_``.
        builder: Keyword-only callable returning an ``nn.Module`` (a ``TransformerDecoder``).
        family: The checkpoint-adapter family whose weights it loads (``"llama"``).
        hf_repo: The Hugging Face repository whose weights it matches, if any.
        description: One line for ``tunesmith ls`` and ``plugins``.
    """

    name: str
    builder: Callable[..., Any]
    family: str
    hf_repo: str | None = None
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer builder, e.g. ``llama3_tokenizer``.

    Attributes:
        name: Registry key, used as ``tokenizer._component_``.
        builder: Callable ``builder(path, *, max_seq_len=None, **kwargs)`` returning an
            object implementing :class:`tunesmith.data.ModelTokenizer`.
        files: Paths relative to a checkpoint directory this tokenizer loads from, in
            order of preference; ``tokenizer: {_component_: auto}`` picks the first
            registered tokenizer of the checkpoint's family whose file exists.
        family: The model family it belongs to, or ``None`` for a generic tokenizer.
        priority: Higher wins when several tokenizers match a checkpoint directory.
    """

    name: str
    builder: Callable[..., Any]
    files: tuple[str, ...] = ()
    family: str | None = None
    priority: int = 0
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class CheckpointAdapter:
    """How one model family's checkpoints map onto native modules.

    Key maps are tables of templated names: ``{}`` stands for a layer index, e.g.
    ``{"model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight"}``.
    :func:`tunesmith.checkpoint.remap_keys` applies them in either direction.

    Attributes:
        family: Registry key (``"llama"``).
        model_types: The Hugging Face ``config.json`` ``model_type`` values it reads.
        hf_to_native: HF key template -> native key template.
        build_from_hf_config: ``f(config: dict, **overrides) -> nn.Module``: the
            architecture described by a ``config.json``.
        meta_to_native: ``f(state_dict, params: dict) -> native state_dict`` for Meta
            ``consolidated.*.pth`` + ``params.json`` checkpoints, if the family has them.
        build_from_meta_params: ``f(params: dict, **overrides) -> nn.Module`` for Meta
            checkpoints.
        hf_config_from_meta_params: ``f(params: dict) -> dict``: the ``config.json`` to
            write beside weights converted from a Meta checkpoint.
    """

    family: str
    model_types: tuple[str, ...]
    hf_to_native: Mapping[str, str]
    build_from_hf_config: Callable[..., Any]
    meta_to_native: Callable[[dict, dict], dict] | None = None
    build_from_meta_params: Callable[..., Any] | None = None
    hf_config_from_meta_params: Callable[[dict], dict] | None = None
    description: str = ""
    origin: Origin = _UNKNOWN

    @property
    def name(self) -> str:
        return self.family

    @property
    def native_to_hf(self) -> dict[str, str]:
        return {native: hf for hf, native in self.hf_to_native.items()}

    def hf_module_name(self, native_module: str) -> str:
        """The Hugging Face leaf module name for a native leaf name (``output_proj`` -> ``o_proj``)."""
        for hf, native in self.hf_to_native.items():
            parts = native.split(".")
            if native_module in parts:
                return hf.split(".")[parts.index(native_module) - len(parts)]
        raise KeyError(native_module)


@dataclass(frozen=True)
class PeftMethod:
    """A parameter-efficient fine-tuning method, e.g. ``lora``.

    Attributes:
        name: Registry key, used as ``peft._component_``.
        builder: ``builder(**peft_config) -> transform``, taking the ``peft:`` config
            keys. The transform has ``apply(model)`` (wraps in place, freezes the base),
            ``trainable_params(model) -> {name: Parameter}``,
            ``merged_state_dict(model, state_dict=None)`` (the plain model's weights;
            ``state_dict`` is a gathered full state dict under FSDP), ``merge(model)``,
            ``save_adapter(model, directory, *, adapter, base_model_name_or_path,
            state_dict=None)`` (PEFT-format files) and
            ``load_adapter(model, directory, *, adapter)``.
    """

    name: str
    builder: Callable[..., Any]
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Recipe:
    """A runnable job, e.g. ``finetune`` or its alias ``lora_finetune_single_device``.

    Attributes:
        name: Registry key, used as ``tunesmith run <name>``.
        run: ``run(cfg: omegaconf.DictConfig) -> None``.
        keys: The top-level config keys the recipe accepts (for validation and
            typo suggestions); ``None`` accepts anything.
        required: Top-level keys that must be present.
        defaults: Config values applied beneath the user's config (how aliases differ).
        distributed: Whether the recipe may be launched through torchrun.
    """

    name: str
    run: Callable[[Any], None]
    keys: frozenset[str] | None = None
    required: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    distributed: bool = False
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Config:
    """A shipped YAML config, e.g. ``llama3_2/1B_lora_single_device`` for recipe
    ``lora_finetune_single_device``. Registered through ``register_recipes``."""

    name: str
    recipe: str
    path: Path
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Evaluator:
    """An evaluation back-end, e.g. ``eleuther``.

    Attributes:
        builder: ``builder(**config)`` returning an object with
            ``evaluate(model, tokenizer) -> dict`` of metrics.
    """

    name: str
    builder: Callable[..., Any]
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Quantizer:
    """A post-training quantizer, e.g. ``int8_weight_only``.

    Attributes:
        builder: ``builder(**config)`` returning an object with
            ``quantize(model, device) -> nn.Module``.
    """

    name: str
    builder: Callable[..., Any]
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Dataset:
    """A dataset builder, e.g. ``alpaca``.

    Attributes:
        builder: ``builder(tokenizer, **config) -> torch.utils.data.Dataset`` whose items
            are ``{"tokens": list[int], "labels": list[int]}``.
    """

    name: str
    builder: Callable[..., Any]
    description: str = ""
    origin: Origin = _UNKNOWN
