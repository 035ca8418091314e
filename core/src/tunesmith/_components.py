"""Typed records of the components plugins register.

A plugin builds one of these and hands it to the ``register`` callback its hook
receives; the registry stamps ``origin`` (which distribution registered it) and
refuses a second component with the same name in the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunesmith.config._schema import RecipeSchema
    from tunesmith.protocols import (
        ModelEvaluator,
        ModelQuantizer,
        ModelTokenizer,
        NativeModel,
        PeftTransform,
        TrainingDataset,
    )

__all__ = [
    "CheckpointAdapter",
    "Config",
    "Dataset",
    "Evaluator",
    "FusedModule",
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
        builder: Keyword-only callable returning a :class:`tunesmith.protocols.NativeModel`
            (e.g. a ``tunesmith.modules.TransformerDecoder``). Called under the target
            default device and dtype (see ``NativeModel``).
        family: The checkpoint-adapter family whose weights it loads (``"llama"``);
            ``None`` for a builder that reads the family from the checkpoint (``auto``).
        hf_repo: The Hugging Face repository whose weights it matches, if any.
        description: One line for ``tunesmith ls`` and ``plugins``.
    """

    name: str
    builder: Callable[..., NativeModel]
    family: str | None
    hf_repo: str | None = None
    description: str = ""
    origin: Origin = _UNKNOWN

    @classmethod
    def for_builder(
        cls, builder: Callable[..., NativeModel], *, family: str | None, hf_repo: str | None = None
    ) -> Model:
        """The record of a model builder: named after the function, described by the
        first line of its docstring (``register(Model.for_builder(acme_1b, family="acme"))``)."""
        description = (builder.__doc__ or "").strip().splitlines()
        return cls(
            name=builder.__name__,
            builder=builder,
            family=family,
            hf_repo=hf_repo,
            description=description[0] if description else "",
        )


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer builder, e.g. ``llama3_tokenizer``.

    Attributes:
        name: Registry key, used as ``tokenizer._component_``.
        builder: Callable ``builder(path, *, max_seq_len=None, **kwargs)`` returning a
            :class:`tunesmith.protocols.ModelTokenizer`.
        files: Paths relative to a checkpoint directory this tokenizer loads from, in
            order of preference; ``tokenizer: {_component_: auto}`` picks the first
            registered tokenizer of the checkpoint's family whose file exists.
        family: The model family it belongs to (or a tuple of families, for one
            tokenizer serving several checkpoint adapters), or ``None`` for a generic
            tokenizer.
        priority: Higher wins when several tokenizers match a checkpoint directory.
    """

    name: str
    builder: Callable[..., ModelTokenizer]
    files: tuple[str, ...] = ()
    family: str | tuple[str, ...] | None = None
    priority: int = 0
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class FusedModule:
    """A Hugging Face module whose weight stacks several native modules' weights.

    Phi-3's ``qkv_proj`` is native ``q_proj``, ``k_proj`` and ``v_proj`` concatenated
    along the output dimension; the checkpointer splits it on load and fuses it on
    save, and PEFT methods export adapters of the parts as one adapter of the fused
    module (and split them on load). ``.weight`` and ``.bias`` both follow the rule.

    Attributes:
        hf: The HF module path template, ``{}`` for the layer index
            (``"model.layers.{}.self_attn.qkv_proj"``).
        parts: The native module path templates, in stacking order
            (``("layers.{}.attn.q_proj", "layers.{}.attn.k_proj", "layers.{}.attn.v_proj")``).
        sizes: ``f(config.json dict) -> rows of each part`` (e.g. ``(q, kv, kv)`` dims).
    """

    hf: str
    parts: tuple[str, ...]
    sizes: Callable[[Mapping[str, Any]], tuple[int, ...]]


@dataclass(frozen=True)
class CheckpointAdapter:
    """How one model family's checkpoints map onto native modules.

    Key maps are tables of templated names: ``{}`` stands for a layer index, e.g.
    ``{"model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight"}``.
    :meth:`hf_to_native_state_dict` / :meth:`native_to_hf_state_dict` convert whole
    state dicts: ``convert_from_hf`` first, then ``fused`` splits, then the table
    (and the reverse on the way out).

    Attributes:
        family: Registry key (``"llama"``).
        model_types: The Hugging Face ``config.json`` ``model_type`` values it reads,
            matched exactly.
        hf_to_native: HF key template -> native key template, for keys that map one to one.
        build_from_hf_config: ``f(config: dict, **overrides) -> NativeModel``: the
            architecture described by a ``config.json``; called under the target default
            device and dtype.
        aliases: Other names that select this adapter in ``checkpointer.model_type``,
            matched case-insensitively (torchtune's ``LLAMA3_2``, ``PHI3_MINI``).
        fused: :class:`FusedModule` specs for HF tensors that hold several native ones.
        convert_from_hf: ``f(hf_state_dict, config) -> hf_state_dict`` applied before
            the renames (permute, derive or drop keys), or ``None``.
        convert_to_hf: ``f(hf_state_dict, config) -> hf_state_dict`` applied after the
            renames on the way out, or ``None``.
        passthrough: Regular expressions of HF keys that are not part of the native
            model (e.g. a multimodal checkpoint's vision tower): they are not loaded,
            and are written back unchanged beside the trained weights.
        key_layouts: Other layouts a checkpoint of this family may store its keys in,
            each ``{prefix the hf_to_native table uses: prefix stored instead}`` (a
            multimodal checkpoint whose text model transformers versions save under
            different prefixes). A checkpoint is read in whichever layout its keys use
            (the first whose stored prefixes begin a key), and the checkpointer writes
            the trained weights back in that same layout. The table's own names are the
            ones PEFT adapters use (the module names of the transformers model).
        tiny_config: ``f() -> dict``: a tiny ``config.json`` of this family (a few
            layers, small widths) for tests, the conformance kit and ``tunesmith demo``.
        meta_to_native: ``f(state_dict, params: dict) -> native state_dict`` for Meta
            ``consolidated.*.pth`` + ``params.json`` checkpoints, if the family has them.
        build_from_meta_params: ``f(params: dict, **overrides) -> NativeModel`` for Meta
            checkpoints.
        hf_config_from_meta_params: ``f(params: dict) -> dict``: the ``config.json`` to
            write beside weights converted from a Meta checkpoint.
    """

    family: str
    model_types: tuple[str, ...]
    hf_to_native: Mapping[str, str]
    build_from_hf_config: Callable[..., NativeModel]
    aliases: tuple[str, ...] = ()
    fused: tuple[FusedModule, ...] = ()
    convert_from_hf: Callable[[dict, Mapping[str, Any]], dict] | None = None
    convert_to_hf: Callable[[dict, Mapping[str, Any]], dict] | None = None
    passthrough: tuple[str, ...] = ()
    key_layouts: tuple[Mapping[str, str], ...] = ()
    tiny_config: Callable[[], dict[str, Any]] | None = None
    meta_to_native: Callable[[dict, dict], dict] | None = None
    build_from_meta_params: Callable[..., NativeModel] | None = None
    hf_config_from_meta_params: Callable[[dict], dict] | None = None
    description: str = ""
    origin: Origin = _UNKNOWN

    @property
    def name(self) -> str:
        return self.family

    @property
    def native_to_hf(self) -> dict[str, str]:
        return {native: hf for hf, native in self.hf_to_native.items()}

    def hf_to_native_state_dict(
        self, state_dict: Mapping[str, Any], config: Mapping[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        """A Hugging Face state dict under native names (see the class docstring)."""
        from tunesmith.checkpoint._keys import hf_to_native_state_dict

        return hf_to_native_state_dict(state_dict, self, config, **kwargs)

    def native_to_hf_state_dict(
        self, state_dict: Mapping[str, Any], config: Mapping[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        """A native state dict under Hugging Face names (see the class docstring)."""
        from tunesmith.checkpoint._keys import native_to_hf_state_dict

        return native_to_hf_state_dict(state_dict, self, config, **kwargs)

    def hf_module(self, native_path: str) -> tuple[str, int | None]:
        """The HF module path of a native module path, and its index among a
        :class:`FusedModule`'s parts (``None`` when it maps one to one).

        Raises:
            KeyError: no rule names the module.
        """
        from tunesmith.checkpoint._keys import _pattern, remap_keys

        for spec in self.fused:
            for index, part in enumerate(spec.parts):
                match = _pattern(part).match(native_path)
                if match:
                    return spec.hf.format(*match.groups()), index
        try:
            key = next(iter(remap_keys({f"{native_path}.weight": 0}, self.native_to_hf)))
        except Exception:
            raise KeyError(native_path) from None
        return key.removesuffix(".weight"), None

    def native_modules(self, hf_path: str) -> tuple[str, ...]:
        """The native module paths an HF module path stands for: one, or a
        :class:`FusedModule`'s parts in stacking order.

        Raises:
            KeyError: no rule names the module.
        """
        from tunesmith.checkpoint._keys import _pattern, remap_keys

        for spec in self.fused:
            match = _pattern(spec.hf).match(hf_path)
            if match:
                return tuple(part.format(*match.groups()) for part in spec.parts)
        try:
            key = next(iter(remap_keys({f"{hf_path}.weight": 0}, self.hf_to_native)))
        except Exception:
            raise KeyError(hf_path) from None
        return (key.removesuffix(".weight"),)

    def hf_module_name(self, native_module: str) -> str:
        """The Hugging Face leaf module name for a native leaf name (``output_proj`` -> ``o_proj``)."""
        for spec in self.fused:
            for part in spec.parts:
                if part.rpartition(".")[2] == native_module:
                    return spec.hf.rpartition(".")[2]
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
        builder: ``builder(**peft_block) -> PeftTransform`` (see
            :class:`tunesmith.protocols.PeftTransform`), taking the ``peft:`` config keys.
        peft_type: The ``peft_type`` of the ``adapter_config.json`` files this method
            loads (``"LORA"``), or ``None`` for a training variant whose adapters another
            method loads (QLoRA writes plain LoRA adapters).
        adapter_match: ``adapter_config.json`` fields that must hold these values for
            this method to load an adapter (``{"use_dora": True}``); among the methods of
            one ``peft_type``, the one matching the most fields wins. A missing field
            counts as ``False``/``None``.
        from_adapter_config: ``f(adapter_config: dict) -> PeftTransform`` able to load
            that adapter directory (required with ``peft_type``).
    """

    name: str
    builder: Callable[..., PeftTransform]
    peft_type: str | None = None
    adapter_match: Mapping[str, Any] = field(default_factory=dict)
    from_adapter_config: Callable[[Mapping[str, Any]], PeftTransform] | None = None
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Recipe:
    """A runnable job, e.g. ``finetune`` or its alias ``lora_finetune_single_device``.

    Attributes:
        name: Registry key, used as ``tunesmith run <name>``.
        run: ``run(cfg: omegaconf.DictConfig) -> None``. ``tunesmith run`` hands it the
            config resolved, checked against ``schema``, with the schema's defaults filled
            in beneath the user's and ``${...}``-only variables dropped.
        keys: Plugin API 1: the top-level config keys the recipe accepts; ``None``
            accepts anything. Derived from ``schema`` when that is given.
        required: Plugin API 1: top-level keys that must be present. Derived from
            ``schema`` when that is given.
        defaults: Config values applied beneath the user's config and above the
            schema's defaults (how aliases differ); their keys must be in ``schema``.
        distributed: Whether the recipe may be launched through torchrun.
        schema: Every key the recipe reads, with types, ranges, defaults and help
            (:class:`tunesmith.config.RecipeSchema`). Without one, a permissive schema is
            derived from ``keys`` and ``required``: each listed name with the type the
            core's recipes give it, no defaults; ``keys=None`` accepts any key.
    """

    name: str
    run: Callable[[Any], None]
    keys: frozenset[str] | None = None
    required: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    distributed: bool = False
    description: str = ""
    origin: Origin = _UNKNOWN
    schema: RecipeSchema | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from tunesmith.config._schema import RecipeSchema

        if self.schema is None:
            schema = RecipeSchema.from_keys(self.keys, self.required)
            object.__setattr__(self, "schema", schema)
            object.__setattr__(self, "keys", None if schema.open else schema.names)
            object.__setattr__(self, "required", schema.required)
            return
        if not isinstance(self.schema, RecipeSchema):
            raise TypeError(f"recipe {self.name!r}: schema must be a RecipeSchema")
        keys = None if self.schema.open else self.schema.names
        if self.keys is None and not self.required:
            object.__setattr__(self, "keys", keys)
            object.__setattr__(self, "required", self.schema.required)
        elif (self.keys, frozenset(self.required)) != (keys, self.schema.required):
            raise ValueError(
                f"recipe {self.name!r}: give schema or keys/required, not both "
                "(keys and required are derived from the schema)"
            )
        unknown = sorted(set(self.defaults) - self.schema.names)
        if unknown and not self.schema.open:
            raise ValueError(
                f"recipe {self.name!r}: defaults for keys not in its schema: {unknown}"
            )


@dataclass(frozen=True)
class Config:
    """A shipped YAML config, e.g. ``llama3_2/1B_lora_single_device`` for recipe
    ``lora_finetune_single_device``. Registered through ``register_recipes``.

    Attributes:
        path: The YAML file (or, with ``text``, the template it was rendered from).
        text: The complete YAML, when it was rendered rather than read from ``path``
            (see :func:`tunesmith.config.render_configs`).
        requires: The distribution that registers ``recipe`` when another plugin does
            (``"tunesmith-lora"``): while it is missing the config is hidden from
            ``tunesmith ls`` and ``tunesmith plugins`` says what to install.
    """

    name: str
    recipe: str
    path: Path
    description: str = ""
    text: str | None = None
    requires: str | None = None
    origin: Origin = _UNKNOWN

    def read_text(self) -> str:
        """The config's YAML: ``text``, or the contents of ``path``."""
        return self.text if self.text is not None else self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Evaluator:
    """An evaluation back-end, e.g. ``eleuther``.

    Attributes:
        builder: ``builder(**evaluator_block)`` returning a
            :class:`tunesmith.protocols.ModelEvaluator` (``evaluate(model, tokenizer) -> dict``).
    """

    name: str
    builder: Callable[..., ModelEvaluator]
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Quantizer:
    """A post-training quantizer, e.g. ``int8_weight_only``.

    Attributes:
        builder: ``builder(**quantizer_block)`` returning a
            :class:`tunesmith.protocols.ModelQuantizer` (``quantize(model, device) -> model``).
    """

    name: str
    builder: Callable[..., ModelQuantizer]
    description: str = ""
    origin: Origin = _UNKNOWN


@dataclass(frozen=True)
class Dataset:
    """A dataset builder, e.g. ``alpaca``.

    Attributes:
        builder: ``builder(tokenizer, **dataset_block)`` returning a
            :class:`tunesmith.protocols.TrainingDataset` of
            ``{"tokens": list[int], "labels": list[int]}`` items.
    """

    name: str
    builder: Callable[..., TrainingDataset]
    description: str = ""
    origin: Origin = _UNKNOWN
