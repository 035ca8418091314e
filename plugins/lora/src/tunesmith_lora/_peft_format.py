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

import functools
import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from tunesmith import CheckpointAdapter
from tunesmith.checkpoint import atomic_write
from tunesmith.errors import CheckpointError, ConfigError
from tunesmith.modules import tied_heads
from tunesmith_lora._layers import LoRALinear, _dense, scale_divisor
from tunesmith_lora._torchtune_format import fix_torchtune_adapter, is_torchtune_config
from tunesmith_lora._wrapping import (
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


def _hf_modules_of(
    paths: list[str], adapter: CheckpointAdapter
) -> dict[str, tuple[str, int | None]]:
    """Native module path -> (HF module path, index among a fused module's parts)."""
    out, unknown = {}, []
    for path in paths:
        try:
            out[path] = adapter.hf_module(path)
        except KeyError:
            unknown.append(path)
    if unknown:
        raise CheckpointError(
            f"the '{adapter.family}' checkpoint adapter has no Hugging Face name for adapted "
            f"layers {', '.join(unknown[:3])}: adapt only layers that exist in the Hugging "
            "Face model"
        )
    return out


def _table_path(path: str, adapter: CheckpointAdapter) -> str:
    """An HF module path under the adapter table's prefixes (an adapter trained on a
    model whose transformers version named the modules as in ``adapter.key_layouts``)."""
    for layout in adapter.key_layouts:
        for table, stored in layout.items():
            if path.startswith(stored):
                return table + path[len(stored) :]
    return path


def _native_modules_of(paths: list[str], adapter: CheckpointAdapter) -> dict[str, tuple[str, ...]]:
    """HF module path -> the native module path(s) it stands for."""
    out, unknown = {}, []
    for path in paths:
        try:
            out[path] = adapter.native_modules(_table_path(path, adapter))
        except KeyError:
            unknown.append(path)
    kept = [p for p in unknown if any(re.search(r, f"{p}.weight") for r in adapter.passthrough)]
    if kept:
        raise CheckpointError(
            f"the adapter adapts {', '.join(sorted(kept)[:3])}, which the '{adapter.family}' "
            "family keeps unchanged (tunesmith trains only its language model): use an "
            "adapter of the language model's layers"
        )
    if unknown:
        raise CheckpointError(
            f"the adapter targets layers the '{adapter.family}' model family does not have "
            f"({', '.join(sorted(unknown)[:3])}): load it onto the model it was trained for"
        )
    return out


# ---- writing ----------------------------------------------------------------


def _common(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The most common value, and the entries that differ from it (PEFT's *_pattern)."""
    common = Counter(values.values()).most_common(1)[0][0]
    return common, {k: v for k, v in values.items() if v != common}


def _linear_paths(model: nn.Module) -> list[str]:
    """Every plain or adapted linear layer's module path."""
    return [
        name
        for name, m in model.named_modules()
        if name and isinstance(m, (nn.Linear, LoRALinear)) and ".lora_" not in f".{name}"
    ]


def _target_modules(model: nn.Module, adapted: set[str], adapter: CheckpointAdapter) -> list[str]:
    """PEFT's ``target_modules``: a leaf name when every HF module with that leaf is
    adapted (what PEFT users write), otherwise the exact paths (PEFT matches suffixes).
    Always the exact paths when the HF model holds modules the native one does not
    (``adapter.passthrough``: a vision tower has its own ``q_proj``s)."""
    if adapter.passthrough:
        return sorted(adapted)
    every: set[str] = set()
    for path in _linear_paths(model):
        try:
            every.add(adapter.hf_module(path)[0])
        except KeyError:
            continue
    targets: list[str] = []
    for leaf in sorted({hf.rpartition(".")[2] for hf in adapted}):
        same_leaf = {hf for hf in every | adapted if hf.rpartition(".")[2] == leaf}
        targets += [leaf] if same_leaf <= adapted else sorted(h for h in adapted if h in same_leaf)
    return sorted(targets)


def _fuse_adapters(model, parts, members, loras, value):
    """One LoRA of a fused HF module from LoRAs of some of its native parts.

    ``A`` stacks the parts' ``A``s (rank = the sum of their ranks) and ``B`` is block
    diagonal (zero rows for parts without an adapter), so ``B A`` restricted to a
    part's rows is that part's own update. Scalings are folded into ``B`` relative to
    the first adapted part's, which the fused adapter keeps (its alpha is chosen so
    that ``alpha / rank``, or ``alpha / sqrt(rank)`` for rsLoRA, gives it); DoRA
    magnitudes are concatenated (an unadapted part's is its weight's row norms).

    Returns:
        ``({native param name: tensor}, rank, alpha)`` of the fused adapter.
    """
    adapted = [parts[i] for i in sorted(members)]
    scaling = loras[adapted[0]].scaling
    a_blocks, b_rows, magnitudes = [], [], []
    rank = sum(loras[p].rank for p in adapted)
    offset = 0
    for part in parts:
        module = model.get_submodule(part)
        rows = module.out_features
        lora_a = value(adapted[0], "lora_a.weight")
        b = lora_a.new_zeros(rows, rank)
        if part in adapted:
            r = loras[part].rank
            a_blocks.append(value(part, "lora_a.weight"))
            b[:, offset : offset + r] = value(part, "lora_b.weight") * (
                loras[part].scaling / scaling
            )
            offset += r
            if loras[part].use_dora:
                magnitudes.append(value(part, "magnitude"))
        elif loras[adapted[0]].use_dora:
            weight = _dense(value(part, "weight")).to(lora_a.dtype)
            magnitudes.append(torch.linalg.norm(weight, dim=1))
        b_rows.append(b)
    params = {"lora_a.weight": torch.cat(a_blocks), "lora_b.weight": torch.cat(b_rows)}
    if magnitudes:
        params["magnitude"] = torch.cat(magnitudes)
    return params, rank, scaling * scale_divisor(rank, loras[adapted[0]].use_rslora)


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
        ConfigError: the model has no adapters, or mixes LoRA and DoRA layers (or
            rank-stabilised and plain scaling).
        CheckpointError: an adapted layer has no Hugging Face name.
    """
    from safetensors.torch import save_file

    loras = lora_modules(model)
    if not loras:
        raise ConfigError("the model has no LoRA adapters to save: apply a LoRA transform first")
    if len({m.use_dora for m in loras.values()}) > 1:
        raise ConfigError("cannot save a mix of LoRA and DoRA layers as one PEFT adapter")
    if len({m.use_rslora for m in loras.values()}) > 1:
        raise ConfigError("cannot save a mix of rsLoRA and LoRA scaling as one PEFT adapter")
    first = next(iter(loras.values()))

    def value(path: str, name: str) -> torch.Tensor:
        if state_dict is None:
            return model.get_parameter(f"{path}.{name}" if path else name).detach()
        return state_dict[f"{path}.{name}" if path else name]

    by_hf: dict[str, dict[int | None, str]] = {}
    for path, (hf, index) in _hf_modules_of(list(loras), adapter).items():
        by_hf.setdefault(hf, {})[index] = path
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    for hf, members in by_hf.items():
        if None in members:
            path = members[None]
            params = {name: value(path, name) for name in loras[path].adapter_params()}
            ranks[hf], alphas[hf] = loras[path].rank, loras[path].alpha
        else:
            parts = adapter.native_modules(hf)
            params, ranks[hf], alphas[hf] = _fuse_adapters(model, parts, members, loras, value)
        for name, tensor in params.items():
            tensors[f"{_PREFIX}{hf}.{_SUFFIXES[name]}"] = tensor.detach().to("cpu").contiguous()

    saved = {  # PEFT's modules_to_save that load_peft_adapter loaded: native -> HF path
        path: adapter.hf_module(path)[0]
        for path, m in model.named_modules()
        if getattr(m, "peft_saved_module", False)
    }
    for path, hf in saved.items():
        for name, _ in model.get_submodule(path).named_parameters(recurse=False):
            tensors[f"{_PREFIX}{hf}.{name}"] = value(path, name).detach().to("cpu").contiguous()
    targets = _target_modules(model, set(by_hf), adapter)
    rank, rank_pattern = _common(ranks)
    alpha, alpha_pattern = _common(alphas)
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
        "use_rslora": first.use_rslora,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": sorted({hf.rpartition(".")[2] for hf in saved.values()}) or None,
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

_MERGE = "merge it with PEFT's merge_and_unload and load the merged model"
_USE_PEFT = "use it with PEFT"
#: adapter_config.json settings under which an adapter computes something other than
#: LoRA/DoRA on the unchanged base weights: key -> (what the setting is, the fix)
_UNSUPPORTED = {
    "fan_in_fan_out": ("fan_in_fan_out weights (GPT-2 style Conv1D)", _MERGE),
    "lora_bias": ("trainable LoRA biases (lora_bias)", _MERGE),
    "alora_invocation_tokens": (
        "activated LoRA (alora_invocation_tokens: it acts only from those tokens on)",
        _USE_PEFT + " (PEFT cannot merge it either)",
    ),
    "layer_replication": ("layer_replication (the adapted model repeats base layers)", _MERGE),
    "trainable_token_indices": ("trainable token embeddings (trainable_token_indices)", _MERGE),
    "use_bdlora": ("block-diagonal LoRA (use_bdlora)", _MERGE),
    "use_qalora": ("quantization-aware LoRA (use_qalora)", _USE_PEFT),
    "kasa_config": ("KaSA (kasa_config)", _MERGE),
    "monteclora_config": ("MonteCLoRA (monteclora_config)", _USE_PEFT),
    "arrow_config": ("Arrow routing between adapters (arrow_config)", _USE_PEFT),
}
#: init_lora_weights methods that also rewrite the base weights the adapter is added to
#: (PEFT recomputes them from the base model whenever it loads such an adapter).
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def _unsupported_settings(config: Mapping[str, Any]) -> list[str]:
    """One "uses X, which ...: fix" line per setting tunesmith's LoRA does not compute."""
    problems = [
        f"uses {what}, which tunesmith's LoRA does not compute: {fix}"
        for key, (what, fix) in _UNSUPPORTED.items()
        if config.get(key) not in (None, False, [], {}, "")
    ]
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):  # pissa_niter_4
        problems.append(
            f"uses init_lora_weights={init!r}, which also rewrites the base model's weights "
            f"that the adapter applies to: {_MERGE} (or convert it to a plain LoRA adapter "
            "with PEFT's save_pretrained(..., path_initial_model_for_weight_conversion=...))"
        )
    return problems


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
    problems = _unsupported_settings(config)
    if len(problems) == 1:
        raise CheckpointError(f"{config_path} {problems[0]}")
    if problems:
        raise CheckpointError(f"{config_path}:\n" + "\n".join(f"  - {p}" for p in problems))

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


class _AdapterKeys(NamedTuple):
    """An adapter file's tensors by role, keyed by HF module path."""

    loras: dict[str, dict[str, torch.Tensor]]  # {native param name: tensor} of a LoRA layer
    whole: dict[str, dict[str, torch.Tensor]]  # {param name: tensor}: PEFT's modules_to_save
    base_copies: dict[str, torch.Tensor]  # a LoRA layer's own base weight (see below)


def _split_keys(
    tensors: dict[str, torch.Tensor], where: Path, saved_modules: list[str]
) -> _AdapterKeys:
    """Sort the file's keys (modules_to_save matched as PEFT matches them: by module path
    suffix). PEFT's ``save_embedding_layers`` also writes the base weight of an adapted
    ``lm_head`` or ``embed_tokens`` (``….base_layer.weight``), in case the vocabulary grew;
    VeLoRA's projections serve its backward pass only, so they are not needed."""
    keys = _AdapterKeys({}, {}, {})
    modules, whole = keys.loras, keys.whole
    unknown, biases, embeddings = [], [], []
    for key, value in tensors.items():
        body = key.removeprefix(_PREFIX)
        module, _, param = body.rpartition(".")
        if any(module == name or module.endswith("." + name) for name in saved_modules):
            whole.setdefault(module, {})[param] = value
            continue
        if body.endswith(".base_layer.weight"):
            keys.base_copies[body.removesuffix(".base_layer.weight")] = value
            continue
        if param.startswith("lora_embedding_"):
            embeddings.append(module)
            continue
        if param == "lora_velora_embed":
            continue
        if key.endswith(".bias"):  # bias="all" / "lora_only" on a model that has biases
            biases.append(key)
            continue
        for peft_suffix, native in _NATIVE_OF.items():
            if body.endswith("." + peft_suffix):
                modules.setdefault(body[: -len(peft_suffix) - 1], {})[native] = value
                break
        else:
            unknown.append(key)
    if embeddings:
        names = ", ".join(sorted(set(embeddings))[:2])
        raise CheckpointError(
            f"the adapter in {where} adapts embedding layers ({names}: lora_embedding_A/B), "
            f"which tunesmith's LoRA does not load: {_MERGE}"
        )
    if biases:
        raise CheckpointError(
            f"the adapter in {where} also trains biases ({', '.join(sorted(biases)[:2])}"
            f"{' …' if len(biases) > 2 else ''}: PEFT's bias 'all' or 'lora_only'), which "
            "tunesmith's LoRA does not load: merge it with PEFT's merge_and_unload and load "
            "the merged model instead"
        )
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
    return keys


def _check_base_copies(
    model: nn.Module, copies: dict[str, torch.Tensor], adapter: CheckpointAdapter, where: Path
) -> None:
    """PEFT's copies of adapted layers' base weights must be this model's own: a copy
    that differs (a grown vocabulary, another base model) would change the base."""
    differ = []
    for hf_path, value in copies.items():
        try:
            (native,) = adapter.native_modules(_table_path(hf_path, adapter))
            own = functools.reduce(getattr, native.split("."), model).weight
        except (KeyError, AttributeError, ValueError):
            differ.append(hf_path)
            continue
        if own.shape != value.shape or not torch.equal(own.detach().cpu(), value.to(own.dtype)):
            differ.append(hf_path)
    if differ:
        raise CheckpointError(
            f"the adapter in {where} carries base weights for {', '.join(sorted(differ)[:3])} "
            "(PEFT's save_embedding_layers) that differ from this model's (a grown vocabulary, "
            f"or another base model): load it onto the model it was trained on, or {_MERGE}"
        )


def _saved_module_targets(
    model: nn.Module,
    whole: dict[str, dict[str, torch.Tensor]],
    adapter: CheckpointAdapter,
    where: Path,
) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor]]]:
    """Native module path -> (its module, the tensors that replace its parameters), for
    the ``modules_to_save`` of an adapter; every problem is found before anything changes."""
    out, problems = {}, []
    # PEFT saves a copy of a tied embedding; replacing ours would change the head too.
    tied = list(tied_heads(model).values())
    for hf_path, params in whole.items():
        try:
            natives = adapter.native_modules(_table_path(hf_path, adapter))
            module = model.get_submodule(natives[0]) if len(natives) == 1 else None
        except (KeyError, AttributeError):
            module = None
        own = dict(module.named_parameters(recurse=False)) if module is not None else {}
        if module is None or set(params) != set(own) or any(e is module for e in tied):
            problems.append(hf_path)
            continue
        for name, value in params.items():
            if tuple(value.shape) != tuple(own[name].shape):
                problems.append(f"{hf_path}.{name} {tuple(value.shape)}")
        out[natives[0]] = (module, params)
    if problems:
        raise CheckpointError(
            f"the adapter in {where} saves whole modules ({', '.join(problems[:3])}: "
            "modules_to_save) that this model does not have in that form (a tied "
            "embedding, another shape, a fused layer): load it onto the model it was trained "
            "for, or merge it with PEFT's merge_and_unload and load the merged model"
        )
    return out


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
    places with the same ranks. The minimal ``adapter_config.json`` torchtune writes is
    read as torchtune meant it (DoRA from the tensors, q/k rows reordered: see
    :mod:`tunesmith_lora._torchtune_format`). Modules the file saves whole (PEFT's
    ``modules_to_save``, e.g. ``lm_head`` after adding tokens) replace the model's, and
    :func:`save_peft_adapter` writes them back. Everything but the adapters ends up frozen.

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
    saved_names = config.get("modules_to_save") or []
    by_hf, whole, base_copies = _split_keys(tensors, directory, [str(n) for n in saved_names])
    _check_base_copies(model, base_copies, adapter, directory)
    saved = _saved_module_targets(model, whole, adapter, directory)
    natives_of = _native_modules_of(list(by_hf), adapter)
    use_dora = bool(config.get("use_dora", False))
    if is_torchtune_config(config):  # torchtune's epoch_N: see _torchtune_format
        by_hf, use_dora = fix_torchtune_adapter(model, by_hf, natives_of, adapter)
    use_rslora = bool(config.get("use_rslora", False))
    for hf_path, params in by_hf.items():
        if ("magnitude" in params) != use_dora:
            raise CheckpointError(
                f"{directory / ADAPTER_CONFIG_NAME} says use_dora={use_dora}, but layer {hf_path} "
                f"{'has' if 'magnitude' in params else 'lacks'} a DoRA magnitude: re-save the adapter"
            )

    targets: dict[str, dict[str, torch.Tensor]] = {}
    hf_of: dict[str, str] = {}
    for hf, params in by_hf.items():
        for native, part in _split_fused(model, natives_of[hf], params, directory).items():
            targets[native], hf_of[native] = part, hf
    existing = lora_modules(model)
    if existing:
        if set(existing) != set(targets) or any(
            (m.use_dora, m.use_rslora, m.alpha)
            != (use_dora, use_rslora, _alpha_for(config, hf_of[p]))
            for p, m in existing.items()
        ):
            raise CheckpointError(
                f"the adapter in {directory} does not match the model's existing adapters "
                "(different layers, lora_alpha, use_rslora or use_dora): load it onto a model "
                "without adapters"
            )
    else:
        missing = [p for p in targets if not _is_linear(model, p)]
        tied = [p for p in missing if p in tied_heads(model)]
        if tied:
            raise CheckpointError(
                f"the adapter in {directory} adapts {tied[0]}, the output layer, which this "
                "model ties to its token embeddings, so tunesmith's LoRA cannot wrap it: "
                f"{_USE_PEFT}"
            )
        if missing:
            raise CheckpointError(
                f"the adapter in {directory} targets {', '.join(missing[:3])}, which this model "
                "does not have as linear layers: load it onto the model it was trained for"
            )
        wrap_linears(
            model,
            list(targets),
            rank={p: int(params["lora_a.weight"].shape[0]) for p, params in targets.items()},
            alpha={p: _alpha_for(config, hf) for p, hf in hf_of.items()},
            use_rslora=use_rslora,
            dropout=float(config.get("lora_dropout", 0.0) or 0.0),
            use_dora=use_dora,
            quantize_base=quantize_base,
        )
    loras = lora_modules(model)
    if not existing:
        for path in targets:
            _adapter_in_float32(loras[path])
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
    for module, params in saved.values():
        for name, value in params.items():
            param = module.get_parameter(name)
            param.copy_(value.to(device=param.device, dtype=param.dtype))
        module.peft_saved_module = True  # save_peft_adapter writes it back
    freeze_non_adapter_params(model)


def _adapter_in_float32(module: LoRALinear) -> None:
    """Keep a new layer's adapter in float32 over a bf16 or fp16 base, as PEFT's
    ``from_pretrained`` does by default (``autocast_adapter_dtype``): the adapter's term
    is then computed as PEFT computes it."""
    if _dense(module.weight).dtype not in (torch.bfloat16, torch.float16):
        return
    module.lora_a.float()
    module.lora_b.float()
    if module.magnitude is not None:
        module.magnitude = nn.Parameter(
            module.magnitude.detach().float(), requires_grad=module.magnitude.requires_grad
        )


def _split_fused(
    model: nn.Module, natives: tuple[str, ...], params: dict[str, torch.Tensor], where: Path
) -> dict[str, dict[str, torch.Tensor]]:
    """Native module path -> its adapter tensors. An adapter of a fused HF module gives
    each native part the whole ``A`` and its own rows of ``B`` (and of the DoRA
    magnitude): ``B_part A`` is exactly the fused update's rows for that part."""
    if len(natives) == 1:
        return {natives[0]: params}
    missing = [n for n in natives if not _is_linear(model, n)]
    if missing:
        raise CheckpointError(
            f"the adapter in {where} targets {', '.join(missing[:3])}, which this model does "
            "not have as linear layers: load it onto the model it was trained for"
        )
    sizes = [model.get_submodule(n).out_features for n in natives]
    rows = params["lora_b.weight"].shape[0]
    if rows != sum(sizes):
        raise CheckpointError(
            f"the adapter in {where} has {rows} lora_B rows for a module whose parts have "
            f"{' + '.join(map(str, sizes))}: load it onto the model it was trained for"
        )
    pieces = {
        name: params[name].split(sizes, dim=0)
        for name in ("lora_b.weight", "magnitude")
        if name in params
    }
    return {
        native: {"lora_a.weight": params["lora_a.weight"]}
        | {name: split[i] for name, split in pieces.items()}
        for i, native in enumerate(natives)
    }


def _is_linear(model: nn.Module, path: str) -> bool:
    try:
        return isinstance(model.get_submodule(path), nn.Linear)
    except AttributeError:
        return False
