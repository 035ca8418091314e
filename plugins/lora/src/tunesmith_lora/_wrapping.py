"""A model's LoRA layers: find them, wrap ``nn.Linear`` leaves, freeze the rest, switch
the adapters off, and fold them into plain weights. The config-driven
:class:`~tunesmith_lora.LoRATransform` and the PEFT-format files both build on these."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith_lora._layers import (
    NF4_BLOCK_SIZE,
    LoRALinear,
    _dense,
    is_nf4,
    merge_weight,
    nf4_shards_evenly,
)

__all__ = [
    "disable_adapters",
    "freeze_non_adapter_params",
    "lora_modules",
    "merged_state_dict",
    "wrap_linears",
]


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` in ``model``, by module path, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, new)


def wrap_linears(
    model: nn.Module,
    paths: Iterable[str],
    *,
    rank: int | Mapping[str, int],
    alpha: float | Mapping[str, float],
    use_rslora: bool = False,
    dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> None:
    """Replace the ``nn.Linear`` at each module path by a :class:`LoRALinear`, in place.

    Args:
        model: The model to change.
        paths: Module paths (``"layers.0.attn.q_proj"``), each naming an ``nn.Linear``.
        rank: One rank for all, or a rank per path.
        alpha: One alpha for all, or an alpha per path.
        use_rslora: Scale by ``alpha / sqrt(rank)`` (rsLoRA) instead of ``alpha / rank``.
        dropout: Adapter-input dropout probability.
        use_dora: Build DoRA layers.
        quantize_base: Store the frozen weights in NF4 (QLoRA).

    Raises:
        ConfigError: a weight cannot be quantized to NF4.
    """
    paths = list(paths)
    for path in paths:  # check everything first: never leave a half-wrapped model
        base = model.get_submodule(path)
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{path} is a {type(base).__name__}, not an nn.Linear")
        if quantize_base and not is_nf4(base.weight) and base.weight.numel() % NF4_BLOCK_SIZE:
            raise ConfigError(
                f"cannot quantize {path} to NF4 (QLoRA): its {tuple(base.weight.shape)} weight "
                f"is not a multiple of {NF4_BLOCK_SIZE} values — set peft.quantize_base: false "
                "or leave this layer out of the LoRA targets"
            )
    if quantize_base:
        _check_nf4_sharding(model, paths)
    for path in paths:
        base = model.get_submodule(path)
        try:
            wrapped = LoRALinear(
                base,
                rank=rank[path] if isinstance(rank, Mapping) else rank,
                alpha=alpha[path] if isinstance(alpha, Mapping) else alpha,
                use_rslora=use_rslora,
                dropout=dropout,
                use_dora=use_dora,
                quantize_base=quantize_base,
            )
        except ValueError as exc:
            raise ConfigError(f"cannot wrap {path} with LoRA: {exc}") from exc
        _replace(model, path, wrapped)


def _check_nf4_sharding(model: nn.Module, paths: list[str]) -> None:
    """Under FSDP2 (torch.distributed initialised, several processes) every NF4 weight is
    split across the processes: refuse, naming them, the weights that do not split."""
    import torch.distributed as dist

    shards = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if shards == 1:
        return
    uneven = [
        f"{path} {tuple(weight.shape)}"
        for path in paths
        if not nf4_shards_evenly(tuple((weight := model.get_submodule(path).weight).shape), shards)
    ]
    if uneven:
        more = f" and {len(uneven) - 3} more" if len(uneven) > 3 else ""
        raise ConfigError(
            f"QLoRA under FSDP2 splits each NF4 weight into {shards} shards, and torchao needs "
            f"each shard to hold whole quantization groups; these weights do not split: "
            f"{', '.join(uneven[:3])}{more} — run QLoRA on one device "
            "(qlora_finetune_single_device), on a number of processes that divides them, or "
            "use LoRA (peft.quantize_base: false) with FSDP2"
        )


def freeze_non_adapter_params(model: nn.Module) -> None:
    """Freeze every parameter except the adapters' (``lora_a``, ``lora_b``, ``magnitude``)."""
    for param in model.parameters():
        param.requires_grad_(False)
    for module in lora_modules(model).values():
        for name in module.adapter_params():
            module.get_parameter(name).requires_grad_(True)


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[None]:
    """Run ``model`` as its base model inside the block (e.g. a DPO reference pass)."""
    modules = list(lora_modules(model).values())
    previous = [m.disabled for m in modules]
    for m in modules:
        m.disabled = True
    try:
        yield
    finally:
        for m, was in zip(modules, previous, strict=True):
            m.disabled = was


@torch.no_grad()
def merged_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The native state dict of the plain model equivalent to an adapted ``model``.

    See :meth:`LoRATransform.merged_state_dict`.
    """
    loras = lora_modules(model)
    skip = {
        f"{path}.{name}" if path else name
        for path, module in loras.items()
        for name in module.adapter_params()
    }
    source = model.state_dict() if state_dict is None else state_dict
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key in skip:
            continue
        path, _, leaf = key.rpartition(".")
        module = loras.get(path) if leaf == "weight" else None
        if module is not None and not module.merged:
            prefix = f"{path}." if path else ""
            value = merge_weight(
                value,
                source[f"{prefix}lora_a.weight"],
                source[f"{prefix}lora_b.weight"],
                scaling=module.scaling,
                magnitude=source[f"{prefix}magnitude"] if module.use_dora else None,
            )
        elif is_nf4(value):
            value = _dense(value)
        out[key] = value
    return out
