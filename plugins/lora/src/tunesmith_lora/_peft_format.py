"""PEFT's adapter directory format: ``adapter_config.json`` + ``adapter_model.safetensors``.

A tensor key is the Hugging Face module path under PEFT's wrapper prefix, then
the adapter part::

    base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight     (r, in)
    base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight     (out, r)
    base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector   (out,)  DoRA

Native module paths are translated through the family's checkpoint adapter, so
this works for every family that maps its linear weights one to one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith import CheckpointAdapter
from tunesmith.checkpoint import atomic_write, remap_keys
from tunesmith.errors import CheckpointError, ConfigError
from tunesmith_lora._layers import LoRALinear
from tunesmith_lora._transform import (
    _linear_leaves,
    freeze_non_adapter_params,
    lora_modules,
    wrap_linears,
)

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "load_peft_adapter",
    "read_peft_adapter",
    "save_peft_adapter",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
_ADAPTER_WEIGHTS_BIN = "adapter_model.bin"
_PREFIX = "base_model.model."
# native parameter (relative to a LoRALinear) <-> PEFT's suffix in the file
_SUFFIXES = {
    "lora_a.weight": "lora_A.weight",
    "lora_b.weight": "lora_B.weight",
    "magnitude": "lora_magnitude_vector",
}
_NATIVE_OF = {peft: native for native, peft in _SUFFIXES.items()}


# ---- module names -----------------------------------------------------------


def _native_to_hf_modules(paths: list[str], adapter: CheckpointAdapter) -> dict[str, str]:
    """Native module path -> Hugging Face module path, through the weight key table."""
    try:
        hf = remap_keys(
            {f"{p}.weight": p for p in paths}, adapter.native_to_hf, source="native model"
        )
    except CheckpointError as exc:
        raise CheckpointError(
            f"the '{adapter.family}' checkpoint adapter has no Hugging Face name for some "
            f"adapted layers ({exc}): adapt only layers that exist in the Hugging Face model"
        ) from None
    return {native: key.removesuffix(".weight") for key, native in hf.items()}


def _hf_to_native_modules(paths: list[str], adapter: CheckpointAdapter) -> dict[str, str]:
    """Hugging Face module path -> native module path."""
    try:
        native = remap_keys(
            {f"{p}.weight": p for p in paths}, adapter.hf_to_native, source="adapter"
        )
    except CheckpointError as exc:
        raise CheckpointError(
            f"the adapter targets layers the '{adapter.family}' model family does not have "
            f"({exc}): load it onto the model it was trained for"
        ) from None
    return {hf: key.removesuffix(".weight") for key, hf in native.items()}


# ---- writing ----------------------------------------------------------------


def _common(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The most common value, and the entries that differ from it (PEFT's *_pattern)."""
    common = Counter(values.values()).most_common(1)[0][0]
    return common, {k: v for k, v in values.items() if v != common}


def save_peft_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    adapter: CheckpointAdapter,
    base_model_name_or_path: str,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write the model's adapters as a PEFT directory (see the module docstring).

    Everything is read off the model's :class:`LoRALinear` layers (rank, alpha,
    dropout, DoRA), so adapters loaded from PEFT files save back faithfully. The
    tensors come from ``state_dict`` when given (a gathered FSDP2 state dict).

    Raises:
        ConfigError: the model has no adapters, or mixes LoRA and DoRA layers.
        CheckpointError: an adapted layer has no Hugging Face name.
    """
    from safetensors.torch import save_file

    loras = lora_modules(model)
    if not loras:
        raise ConfigError("the model has no LoRA adapters to save: apply a LoRA transform first")
    if len({m.use_dora for m in loras.values()}) > 1:
        raise ConfigError("cannot save a mix of LoRA and DoRA layers as one PEFT adapter")
    hf_of = _native_to_hf_modules(list(loras), adapter)

    tensors: dict[str, torch.Tensor] = {}
    for path, module in loras.items():
        for name in module.adapter_params():
            key = f"{_PREFIX}{hf_of[path]}.{_SUFFIXES[name]}"
            if state_dict is None:
                value = module.get_parameter(name)
            else:
                value = state_dict[f"{path}.{name}" if path else name]
            tensors[key] = value.detach().to("cpu").contiguous()

    # target_modules: a leaf name when every layer with that leaf is adapted (what PEFT
    # users write), otherwise the exact module paths, which PEFT matches as suffixes.
    leaves = _linear_leaves(model)
    by_leaf: dict[str, list[str]] = {}
    for path in loras:
        by_leaf.setdefault(path.rpartition(".")[2], []).append(path)
    targets: list[str] = []
    for leaf, paths in by_leaf.items():
        if leaves.get(leaf):  # some layers with this leaf name were left plain
            targets += [hf_of[p] for p in paths]
        else:
            targets.append(adapter.hf_module_name(leaf))

    rank, rank_pattern = _common({hf_of[p]: m.rank for p, m in loras.items()})
    alpha, alpha_pattern = _common({hf_of[p]: m.alpha for p, m in loras.items()})
    first = next(iter(loras.values()))
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_dora": first.use_dora,
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
    }

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(
        directory / ADAPTER_WEIGHTS_NAME,
        lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}),
    )
    atomic_write(
        directory / ADAPTER_CONFIG_NAME,
        lambda tmp: tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"),
    )
    return directory


# ---- reading ----------------------------------------------------------------

_UNSUPPORTED = {
    "use_rslora": (True, "rank-stabilised scaling (use_rslora)"),
    "fan_in_fan_out": (True, "fan_in_fan_out weights (GPT-2 style Conv1D)"),
    "lora_bias": (True, "trainable LoRA biases (lora_bias)"),
}


def read_peft_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a PEFT adapter directory: its config and its tensors (keys as in the file).

    Raises:
        CheckpointError: the directory, config or weights are missing or invalid, or the
            adapter is not a LoRA/DoRA adapter this plugin can load.
    """
    directory = Path(directory)
    fix = (
        "point it at a directory holding adapter_config.json and adapter_model.safetensors "
        "(written by tunesmith's save_adapter or PEFT's save_pretrained)"
    )
    if not directory.is_dir():
        raise CheckpointError(f"no adapter directory at {directory}: {fix}")
    config_path = directory / ADAPTER_CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"no {ADAPTER_CONFIG_NAME} in {directory}: {fix}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({exc}): re-save the adapter"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object: re-save the adapter")
    if config.get("peft_type") != "LORA":
        raise CheckpointError(
            f"{config_path} describes a {config.get('peft_type')!r} adapter; only LoRA and DoRA "
            "adapters (peft_type LORA) can be loaded"
        )
    for key, (bad, what) in _UNSUPPORTED.items():
        if config.get(key) == bad:
            raise CheckpointError(f"{config_path} uses {what}, which tunesmith does not support")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise CheckpointError(
            f"{config_path} also trains biases or whole modules (bias / modules_to_save), "
            "which tunesmith's LoRA does not support: use an adapter with bias 'none'"
        )

    weights = directory / ADAPTER_WEIGHTS_NAME
    try:
        if weights.is_file():
            from safetensors.torch import load_file

            tensors = load_file(str(weights))
        elif (directory / _ADAPTER_WEIGHTS_BIN).is_file():
            tensors = torch.load(
                directory / _ADAPTER_WEIGHTS_BIN, map_location="cpu", weights_only=True
            )
        else:
            raise CheckpointError(f"no {ADAPTER_WEIGHTS_NAME} in {directory}: {fix}")
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"cannot read the adapter weights in {directory} ({exc}): {fix}"
        ) from exc
    return config, tensors


def _alpha_for(config: dict[str, Any], hf_path: str) -> float:
    # PEFT matches pattern keys as a suffix of the module path
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", hf_path):
            return float(value)
    return float(config.get("lora_alpha", 8))


def _split_keys(
    tensors: dict[str, torch.Tensor], where: Path
) -> dict[str, dict[str, torch.Tensor]]:
    """File keys -> {HF module path: {native param name: tensor}}."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in tensors.items():
        body = key.removeprefix(_PREFIX)
        for peft_suffix, native in _NATIVE_OF.items():
            if body.endswith("." + peft_suffix):
                modules.setdefault(body[: -len(peft_suffix) - 1], {})[native] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"the adapter in {where} holds tensors that are not LoRA/DoRA weights "
            f"({', '.join(sorted(unknown)[:3])}{' …' if len(unknown) > 3 else ''}): "
            "only lora_A / lora_B / lora_magnitude_vector tensors can be loaded"
        )
    for hf_path, params in modules.items():
        if "lora_a.weight" not in params or "lora_b.weight" not in params:
            raise CheckpointError(
                f"the adapter in {where} has an incomplete layer {hf_path} (needs both lora_A "
                "and lora_B): re-save the adapter"
            )
    return modules


@torch.no_grad()
def load_peft_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    adapter: CheckpointAdapter,
    quantize_base: bool = False,
) -> None:
    """Load a PEFT LoRA/DoRA adapter directory into a native model, in place.

    A model without adapters is first wrapped exactly where the file has tensors
    (rank from the tensors, alpha from ``lora_alpha`` / ``alpha_pattern``, DoRA from
    ``use_dora``); a model that already has adapters must have them in the same
    places with the same ranks. Everything but the adapters ends up frozen.

    Args:
        model: A native model with its base weights loaded.
        directory: The adapter directory.
        adapter: The family's checkpoint adapter (HF -> native names).
        quantize_base: Quantize adapted base weights to NF4 (QLoRA) when wrapping.

    Raises:
        CheckpointError: the directory is unusable, or its adapter does not fit the model.
    """
    directory = Path(directory)
    config, tensors = read_peft_adapter(directory)
    by_hf = _split_keys(tensors, directory)
    native_of = _hf_to_native_modules(list(by_hf), adapter)
    use_dora = bool(config.get("use_dora", False))
    for hf_path, params in by_hf.items():
        if ("magnitude" in params) != use_dora:
            raise CheckpointError(
                f"{directory / ADAPTER_CONFIG_NAME} says use_dora={use_dora}, but layer {hf_path} "
                f"{'has' if 'magnitude' in params else 'lacks'} a DoRA magnitude: re-save the adapter"
            )

    existing = lora_modules(model)
    targets = {native_of[hf]: params for hf, params in by_hf.items()}
    if existing:
        hf_of = {p: hf for hf, p in native_of.items()}
        if set(existing) != set(targets) or any(
            m.use_dora != use_dora or m.alpha != _alpha_for(config, hf_of[p])
            for p, m in existing.items()
        ):
            raise CheckpointError(
                f"the adapter in {directory} does not match the model's existing adapters "
                "(different layers, lora_alpha or use_dora): load it onto a model without adapters"
            )
    else:
        missing = [p for p in targets if not _is_linear(model, p)]
        if missing:
            raise CheckpointError(
                f"the adapter in {directory} targets {', '.join(missing[:3])}, which this model "
                "does not have as linear layers: load it onto the model it was trained for"
            )
        wrap_linears(
            model,
            list(targets),
            rank={p: int(params["lora_a.weight"].shape[0]) for p, params in targets.items()},
            alpha={p: _alpha_for(config, hf) for hf, p in native_of.items()},
            dropout=float(config.get("lora_dropout", 0.0) or 0.0),
            use_dora=use_dora,
            quantize_base=quantize_base,
        )
    loras = lora_modules(model)
    for path, params in targets.items():
        module: LoRALinear = loras[path]
        for name, value in params.items():
            param = module.get_parameter(name)
            if tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(
                    f"adapter tensor for {path}.{name} has shape {tuple(value.shape)} but the "
                    f"model expects {tuple(param.shape)}: load it onto the model (and rank) it "
                    "was trained for"
                )
            param.copy_(value.to(device=param.device, dtype=param.dtype))
    freeze_non_adapter_params(model)


def _is_linear(model: nn.Module, path: str) -> bool:
    try:
        return isinstance(model.get_submodule(path), nn.Linear)
    except AttributeError:
        return False
