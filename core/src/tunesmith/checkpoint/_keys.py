"""Renaming state-dict keys through a family's table of templated names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tunesmith.errors import CheckpointError

__all__ = ["detect_key_layout", "hf_to_native_state_dict", "native_to_hf_state_dict", "remap_keys"]


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{\}", r"(\d+)") + "$")


def remap_keys(
    state_dict: Mapping[str, Any],
    key_map: Mapping[str, str],
    *,
    ignore: tuple[str, ...] = (),
    source: str = "checkpoint",
) -> dict[str, Any]:
    """Rename every key of ``state_dict`` through ``key_map``.

    Args:
        state_dict: Tensors under source names.
        key_map: Source template -> target template; ``{}`` matches a layer index,
            e.g. ``{"model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight"}``.
        ignore: Regular expressions for source keys to drop (e.g. rotary buffers).
        source: What the keys come from, for the error message.

    Returns:
        A new dict under target names, same tensor objects.

    Raises:
        CheckpointError: a key matches no template; the message lists them.
    """
    patterns = [(_pattern(src), dst) for src, dst in key_map.items()]
    ignored = [re.compile(p) for p in ignore]
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for pattern, target in patterns:
            match = pattern.match(key)
            if match:
                out[target.format(*match.groups())] = value
                break
        else:
            if not any(p.search(key) for p in ignored):
                unknown.append(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:5]) + (" …" if len(unknown) > 5 else "")
        raise CheckpointError(
            f"{len(unknown)} key(s) in the {source} have no known mapping ({shown}): "
            "the checkpoint is not of the family this adapter reads — check config.json's "
            "model_type or choose the matching model"
        )
    return out


# ---- whole state dicts through a family's checkpoint adapter -----------------

_FUSED_SUFFIXES = ("weight", "bias")


def _fused_patterns(fused: Any) -> list[tuple[Any, re.Pattern[str], str]]:
    return [
        (spec, _pattern(f"{spec.hf}.{suffix}"), suffix)
        for spec in fused
        for suffix in _FUSED_SUFFIXES
    ]


def _split_fused(
    state_dict: Mapping[str, Any], fused: Any, config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(native tensors split out of fused HF tensors, the remaining HF tensors)``."""
    patterns = _fused_patterns(fused)
    native: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in state_dict.items():
        for spec, pattern, suffix in patterns:
            match = pattern.match(key)
            if match:
                sizes = list(spec.sizes(config))
                if sum(sizes) != value.shape[0]:
                    raise CheckpointError(
                        f"{key} has {value.shape[0]} rows but config.json describes "
                        f"{' + '.join(map(str, sizes))}: the checkpoint does not match its "
                        "config.json — re-download it"
                    )
                for part, piece in zip(spec.parts, value.split(sizes, dim=0), strict=True):
                    native[f"{part.format(*match.groups())}.{suffix}"] = piece
                break
        else:
            rest[key] = value
    return native, rest


def _fuse_parts(state_dict: Mapping[str, Any], fused: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(fused HF tensors, the remaining native tensors)``."""
    import torch

    rest = dict(state_dict)
    out: dict[str, Any] = {}
    for spec in fused:
        for suffix in _FUSED_SUFFIXES:
            first = _pattern(f"{spec.parts[0]}.{suffix}")
            for key in [k for k in rest if first.match(k)]:
                groups = first.match(key).groups()  # type: ignore[union-attr]
                names = [f"{part.format(*groups)}.{suffix}" for part in spec.parts]
                missing = [n for n in names if n not in rest]
                if missing:
                    raise CheckpointError(
                        f"cannot fuse {key} into {spec.hf.format(*groups)}.{suffix}: "
                        f"{', '.join(missing)} missing from the model state dict"
                    )
                out[f"{spec.hf.format(*groups)}.{suffix}"] = torch.cat(
                    [rest.pop(n) for n in names], dim=0
                )
    return out, rest


def detect_key_layout(keys: Any, adapter: Any) -> Mapping[str, str] | None:
    """The entry of ``adapter.key_layouts`` a checkpoint's keys are stored in, or
    ``None`` when they use the names of the adapter's own table.

    Args:
        keys: The checkpoint's HF keys (a state dict or any iterable of names).
        adapter: The family's :class:`~tunesmith.CheckpointAdapter`.
    """
    for layout in getattr(adapter, "key_layouts", ()):
        stored = tuple(s for table, s in layout.items() if s != table)
        if stored and any(key.startswith(stored) for key in keys):
            return layout
    return None


def _reprefix(state_dict: Mapping[str, Any], prefixes: Mapping[str, str]) -> dict[str, Any]:
    """Replace the first of ``prefixes`` (old -> new) that begins each key."""
    out = {}
    for key, value in state_dict.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def hf_to_native_state_dict(
    state_dict: Mapping[str, Any],
    adapter: Any,
    config: Mapping[str, Any],
    *,
    ignore: tuple[str, ...] = (),
    source: str = "checkpoint",
) -> dict[str, Any]:
    """A Hugging Face state dict under native names, through a family's adapter.

    Applies, in order: the adapter's ``key_layouts`` (keys stored under another
    prefix are renamed to the table's, see :func:`detect_key_layout`), its
    ``convert_from_hf`` (arbitrary conversions), its ``fused`` specs (split a fused HF
    tensor into native parts), then its ``hf_to_native`` key table. Keys matching
    ``adapter.passthrough`` are dropped (the checkpointer keeps them aside).

    Raises:
        CheckpointError: a key no rule names, or a fused tensor whose size does not
            match ``config``.
    """
    layout = detect_key_layout(state_dict, adapter)
    if layout is not None:
        state_dict = _reprefix(state_dict, {s: table for table, s in layout.items()})
    if adapter.convert_from_hf is not None:
        state_dict = adapter.convert_from_hf(dict(state_dict), config)
    native, rest = _split_fused(state_dict, adapter.fused, config)
    ignore = (*ignore, *adapter.passthrough)
    native.update(remap_keys(rest, adapter.hf_to_native, ignore=ignore, source=source))
    return native


def native_to_hf_state_dict(
    state_dict: Mapping[str, Any],
    adapter: Any,
    config: Mapping[str, Any],
    *,
    source: str = "model state dict",
    layout: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The inverse of :func:`hf_to_native_state_dict`: native names -> Hugging Face
    names, fusing parts, applying the adapter's ``convert_to_hf``, then storing the
    keys in ``layout`` (an entry of ``adapter.key_layouts``, as
    :func:`detect_key_layout` found it in the source checkpoint; ``None``: the table's
    own names)."""
    hf, rest = _fuse_parts(state_dict, adapter.fused)
    hf.update(remap_keys(rest, adapter.native_to_hf, source=source))
    if adapter.convert_to_hf is not None:
        hf = adapter.convert_to_hf(hf, config)
    if layout is not None:
        hf = _reprefix(hf, layout)
    return hf
