"""The generic LoRA transform: wrap the ``nn.Linear`` leaves a config names, in any family.

Native models name their projections the same way in every family
(``layers.{i}.attn.q_proj``, ``layers.{i}.mlp.w1``, ``output``), so one transform
selects layers by leaf name and never needs a family-specific builder.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith import CheckpointAdapter
from tunesmith.errors import CheckpointError, ConfigError, did_you_mean
from tunesmith.modules import tied_heads
from tunesmith_lora._wrapping import (
    _replace,
    freeze_non_adapter_params,
    lora_modules,
    merged_state_dict,
    wrap_linears,
)

__all__ = [
    "ATTN_MODULES",
    "build_dora",
    "build_lora",
    "build_qlora",
    "MLP_MODULES",
    "OUTPUT_MODULE",
    "LoRATransform",
]

#: Leaf names ``lora_attn_modules`` may list (the native attention projections).
ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "output_proj")
#: Leaf names ``apply_lora_to_mlp`` selects (gate, down, up).
MLP_MODULES = ("w1", "w2", "w3")
#: Leaf name ``apply_lora_to_output`` selects.
OUTPUT_MODULE = "output"

# Hugging Face names users often write from PEFT habit, and what to write instead.
_HF_NAMES = {
    "o_proj": "Hugging Face's o_proj is 'output_proj' here",
    "gate_proj": "MLP layers are selected with peft.apply_lora_to_mlp: true",
    "up_proj": "MLP layers are selected with peft.apply_lora_to_mlp: true",
    "down_proj": "MLP layers are selected with peft.apply_lora_to_mlp: true",
    "lm_head": "the output layer is selected with peft.apply_lora_to_output: true",
}


def _linear_leaves(model: nn.Module) -> dict[str, list[str]]:
    """Leaf name -> paths of the ``nn.Linear`` modules with that leaf name."""
    leaves: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name:
            leaves.setdefault(name.rpartition(".")[2], []).append(name)
    return leaves


class LoRATransform:
    """Wraps a model's projections with LoRA adapters; saves, loads and merges them.

    The builder behind the ``lora``, ``dora`` and ``qlora`` PEFT methods; its
    arguments are the ``peft:`` config keys, named as in torchtune.

    Args:
        lora_attn_modules: Attention projections to adapt, among
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp: Also adapt the MLP (``w1``, ``w2``, ``w3``).
        apply_lora_to_output: Also adapt the final ``output`` projection (not
            possible when it is tied to the token embeddings).
        lora_rank: Rank of every adapter.
        lora_alpha: Scale numerator; the update is scaled by ``lora_alpha / lora_rank``.
        use_rslora: Rank-stabilised scaling, ``lora_alpha / sqrt(lora_rank)`` (PEFT's
            ``use_rslora``): the update's size no longer shrinks as the rank grows.
        lora_dropout: Dropout on the adapter input while training.
        use_dora: Weight-decomposed adapters (DoRA).
        quantize_base: Keep the frozen base weights of adapted layers in NF4 (QLoRA).

    A transform built with no layers selected (see :meth:`from_adapter_config`) cannot
    :meth:`apply`, but loads, saves and merges adapter directories: their files say
    which layers are adapted.

    Raises:
        ConfigError: a value is out of range.
    """

    @classmethod
    def from_adapter_config(cls, config: Mapping[str, Any]) -> LoRATransform:
        """A transform for loading the LoRA/DoRA adapter an ``adapter_config.json``
        describes (the ``lora`` and ``dora`` methods' ``from_adapter_config``)."""
        return cls(
            use_dora=bool(config.get("use_dora", False)),
            use_rslora=bool(config.get("use_rslora", False)),
        )

    def __init__(
        self,
        *,
        lora_attn_modules: Iterable[str] = (),
        apply_lora_to_mlp: bool = False,
        apply_lora_to_output: bool = False,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        use_rslora: bool = False,
        use_dora: bool = False,
        quantize_base: bool = False,
    ) -> None:
        if isinstance(lora_attn_modules, str):
            lora_attn_modules = [lora_attn_modules]
        modules = [str(m) for m in (lora_attn_modules or [])]
        problems = []
        if not isinstance(lora_rank, int) or isinstance(lora_rank, bool) or lora_rank < 1:
            problems.append(f"peft.lora_rank must be a positive integer, got {lora_rank!r}")
        if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)):
            problems.append(f"peft.lora_alpha must be a number, got {lora_alpha!r}")
        if (
            isinstance(lora_dropout, bool)
            or not isinstance(lora_dropout, (int, float))
            or not (0.0 <= lora_dropout < 1.0)
        ):
            problems.append(f"peft.lora_dropout must be in [0, 1), got {lora_dropout!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        self.lora_attn_modules = tuple(dict.fromkeys(modules))
        self.apply_lora_to_mlp = bool(apply_lora_to_mlp)
        self.apply_lora_to_output = bool(apply_lora_to_output)
        self.lora_rank = lora_rank
        self.lora_alpha = float(lora_alpha)
        self.lora_dropout = float(lora_dropout)
        self.use_rslora = bool(use_rslora)
        self.use_dora = bool(use_dora)
        self.quantize_base = bool(quantize_base)

    def __repr__(self) -> str:
        return (
            f"LoRATransform(lora_attn_modules={list(self.lora_attn_modules)}, "
            f"apply_lora_to_mlp={self.apply_lora_to_mlp}, "
            f"apply_lora_to_output={self.apply_lora_to_output}, lora_rank={self.lora_rank}, "
            f"lora_alpha={self.lora_alpha:g}, lora_dropout={self.lora_dropout:g}, "
            f"use_rslora={self.use_rslora}, "
            f"use_dora={self.use_dora}, quantize_base={self.quantize_base})"
        )

    # ---- selecting and wrapping -------------------------------------------

    def target_paths(self, model: nn.Module) -> list[str]:
        """Module paths of the ``nn.Linear`` layers :meth:`apply` would wrap.

        Raises:
            ConfigError: a selected name is invalid or matches no layer, or the output
                projection is tied; one message lists every problem, the valid names and
                the model's actual linear layer names.
        """
        leaves = _linear_leaves(model)
        problems = []
        if not (self.lora_attn_modules or self.apply_lora_to_mlp or self.apply_lora_to_output):
            problems.append(
                "LoRA selects no layers: list projections in peft.lora_attn_modules "
                "(e.g. [q_proj, v_proj]) or set apply_lora_to_mlp / apply_lora_to_output"
            )
        for name in self.lora_attn_modules:
            if name not in ATTN_MODULES:
                hint = did_you_mean(name, ATTN_MODULES, n=1)
                if name in _HF_NAMES:
                    hint = f" — {_HF_NAMES[name]}"
                elif not hint and name in MLP_MODULES:
                    hint = " — MLP layers are selected with peft.apply_lora_to_mlp: true"
                elif not hint and name == OUTPUT_MODULE:
                    hint = " — the output layer is selected with peft.apply_lora_to_output: true"
                problems.append(f"'{name}' is not an attention projection{hint}")
            elif name not in leaves:
                problems.append(f"'{name}' matches no nn.Linear layer of this model")
        wanted = [n for n in self.lora_attn_modules if n in ATTN_MODULES]
        if self.apply_lora_to_mlp:
            mlp = [n for n in MLP_MODULES if n in leaves]
            if not mlp:
                problems.append(
                    "apply_lora_to_mlp is set but the model has no MLP projections "
                    f"({', '.join(MLP_MODULES)})"
                )
            wanted += mlp
        if self.apply_lora_to_output:
            # A tied head is not an nn.Linear: another module type, or core's TiedLinear,
            # a plain attribute that is not registered as a submodule at all.
            tied = [
                type(m).__name__
                for n, m in model.named_modules()
                if n.rpartition(".")[2] == OUTPUT_MODULE and not isinstance(m, nn.Linear)
            ] + [
                "TiedLinear"
                for path in tied_heads(model)
                if path.rpartition(".")[2] == OUTPUT_MODULE
            ]
            if OUTPUT_MODULE in leaves:
                wanted.append(OUTPUT_MODULE)
            elif tied:
                problems.append(
                    f"this model's output projection is tied to its token embeddings ({tied[0]}), "
                    "so LoRA cannot wrap it: set peft.apply_lora_to_output: false"
                )
            else:
                problems.append("apply_lora_to_output is set but the model has no 'output' layer")
        if problems:
            raise ConfigError(
                "invalid LoRA target(s): "
                + "; ".join(problems)
                + f". Valid peft.lora_attn_modules: {', '.join(ATTN_MODULES)}. "
                f"This model's linear layers are named: {', '.join(sorted(leaves)) or 'none'}"
            )
        return [path for name in wanted for path in leaves[name]]

    def apply(self, model: nn.Module) -> None:
        """Wrap the selected layers in place and freeze everything but the adapters.

        Raises:
            ConfigError: see :meth:`target_paths`; or the model already has adapters.
        """
        if lora_modules(model):
            raise ConfigError(
                "this model already has LoRA adapters: apply the transform to a fresh model, "
                "or load saved adapters with load_adapter"
            )
        wrap_linears(
            model,
            self.target_paths(model),
            rank=self.lora_rank,
            alpha=self.lora_alpha,
            use_rslora=self.use_rslora,
            dropout=self.lora_dropout,
            use_dora=self.use_dora,
            quantize_base=self.quantize_base,
        )
        freeze_non_adapter_params(model)

    # ---- parameters and state dicts ---------------------------------------

    def trainable_params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The adapter parameters (what an optimizer should train), by native name."""
        out: dict[str, nn.Parameter] = {}
        for path, module in lora_modules(model).items():
            for name in module.adapter_params():
                out[f"{path}.{name}" if path else name] = module.get_parameter(name)
        return out

    def adapter_keys(self, model: nn.Module) -> set[str]:
        """The state-dict keys that belong to adapters (to filter a full state dict)."""
        return set(self.trainable_params(model))

    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Only the adapter tensors, under native names (``layers.0.attn.q_proj.lora_a.weight``)."""
        return {k: p.detach() for k, p in self.trainable_params(model).items()}

    #: The name the :class:`tunesmith.PeftMethod` contract uses.
    trainable_state_dict = adapter_state_dict

    @torch.no_grad()
    def load_adapter_state_dict(
        self, model: nn.Module, state_dict: Mapping[str, torch.Tensor]
    ) -> None:
        """Copy adapter tensors (native names, as :meth:`adapter_state_dict` gives) into
        an adapted model, e.g. to resume training.

        Raises:
            CheckpointError: keys are missing or unexpected, or shapes differ.
        """
        params = self.trainable_params(model)
        missing = sorted(set(params) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(params))
        if missing or unexpected:
            raise CheckpointError(
                f"adapter state does not match the model (missing: {missing[:3]}, "
                f"unexpected: {unexpected[:3]}): resume with the same peft settings it was "
                "saved with"
            )
        for key, param in params.items():
            value = state_dict[key]
            if tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(
                    f"adapter tensor {key} has shape {tuple(value.shape)}, the model expects "
                    f"{tuple(param.shape)}: resume with the same lora_rank it was saved with"
                )
            param.copy_(value.to(param.dtype))

    @torch.no_grad()
    def merged_state_dict(
        self, model: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The native state dict of the equivalent plain model, without changing ``model``.

        Adapted weights hold ``W + scaling * B A`` (DoRA-rescaled where used), NF4 weights
        are dequantized to their compute dtype, and no adapter keys remain: the result
        loads into the un-adapted architecture and converts to Hugging Face names.

        Args:
            model: The adapted model (for its layers' rank, alpha and DoRA setting).
            state_dict: The model's full state dict when its parameters are sharded
                (e.g. gathered from FSDP2); by default ``model.state_dict()``.
        """
        return merged_state_dict(model, state_dict)

    @torch.no_grad()
    def merge(self, model: nn.Module) -> None:
        """Replace every adapted layer by a plain ``nn.Linear`` holding the merged weight."""
        for path, module in lora_modules(model).items():
            if not path:
                raise ValueError("merge() needs a model containing LoRA layers, not a LoRALinear")
            _replace(model, path, module.to_linear())

    # ---- PEFT-format files --------------------------------------------------

    def save_adapter(
        self,
        model: nn.Module,
        directory: str | Path,
        *,
        adapter: CheckpointAdapter,
        base_model_name_or_path: str,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write ``adapter_model.safetensors`` + ``adapter_config.json`` that
        ``peft.PeftModel.from_pretrained`` loads onto the Hugging Face model.

        Args:
            model: An adapted native model.
            directory: Where to write (created if needed).
            adapter: The family's checkpoint adapter (native -> HF names).
            base_model_name_or_path: Recorded in the config (a Hub id or path).
            state_dict: The model's full state dict when its parameters are sharded
                (e.g. gathered from FSDP2); by default the model's own tensors.

        Returns:
            The directory.
        """
        from tunesmith_lora._peft_format import save_peft_adapter

        return save_peft_adapter(
            model,
            directory,
            adapter=adapter,
            base_model_name_or_path=base_model_name_or_path,
            state_dict=state_dict,
        )

    def load_adapter(
        self, model: nn.Module, directory: str | Path, *, adapter: CheckpointAdapter
    ) -> None:
        """Load a PEFT-format LoRA/DoRA adapter directory into a native model, in place.

        The directory's ``adapter_config.json`` decides which layers are adapted and
        with what rank, alpha and DoRA setting; this transform's ``quantize_base``
        decides whether their base weights go to NF4.

        Raises:
            CheckpointError: the directory or its files are missing, invalid, or do not
                fit the model.
        """
        from tunesmith_lora._peft_format import load_peft_adapter

        load_peft_adapter(model, directory, adapter=adapter, quantize_base=self.quantize_base)


def _build(defaults: Mapping[str, Any], config: Mapping[str, Any]) -> LoRATransform:
    """Validate a ``peft:`` block (keys as in torchtune) and build the transform."""
    config = {k: v for k, v in config.items() if k != "_component_"}
    accepted = list(inspect.signature(LoRATransform).parameters)
    unknown = [k for k in config if k not in accepted]
    if unknown:
        raise ConfigError(
            "; ".join(f"unknown peft key '{k}'{did_you_mean(k, accepted)}" for k in unknown)
            + f". Accepted keys: {', '.join(accepted)}"
        )
    merged = {**defaults, **config}
    if "lora_attn_modules" not in merged and not (
        merged.get("apply_lora_to_mlp") or merged.get("apply_lora_to_output")
    ):
        raise ConfigError(
            "peft.lora_attn_modules is required: list the attention projections to adapt, "
            "e.g. lora_attn_modules: [q_proj, v_proj]"
        )
    modules = merged.get("lora_attn_modules", [])
    # OmegaConf hands over a ListConfig; the transform wants plain strings
    merged["lora_attn_modules"] = [modules] if isinstance(modules, str) else list(modules)
    return LoRATransform(**merged)


def build_lora(**config: Any) -> LoRATransform:
    """The ``lora`` PEFT method: ``peft: {_component_: lora, lora_attn_modules: [...], ...}``.

    Args:
        **config: :class:`LoRATransform` arguments.

    Raises:
        ConfigError: an unknown key (with a suggestion), a missing
            ``lora_attn_modules`` or an out-of-range value.
    """
    return _build({}, config)


def build_dora(**config: Any) -> LoRATransform:
    """The ``dora`` PEFT method: :func:`build_lora` with ``use_dora: true`` by default."""
    return _build({"use_dora": True}, config)


def build_qlora(**config: Any) -> LoRATransform:
    """The ``qlora`` PEFT method: :func:`build_lora` with ``quantize_base: true`` by default."""
    return _build({"quantize_base": True}, config)
