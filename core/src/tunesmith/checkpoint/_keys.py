"""Renaming state-dict keys through a family's table of templated names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tunesmith.errors import CheckpointError

__all__ = ["remap_keys"]


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
