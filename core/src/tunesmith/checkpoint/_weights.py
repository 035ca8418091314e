"""Copying a native state dict into a model, with one clear error when they differ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from tunesmith.errors import CheckpointError

__all__ = ["LoadResult", "load_model_weights"]

_SHOWN = 5
# Native names of the tied pair (see the native model contract).
_EMBEDDING, _OUTPUT = "tok_embeddings.weight", "output.weight"


class LoadResult(NamedTuple):
    """Keys that did not line up (always empty after a ``strict=True`` load)."""

    missing: list[str]
    unexpected: list[str]


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (
        f", … ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    )


def _alias_groups(model: nn.Module) -> dict[str, str]:
    """Alias key -> canonical key, for parameters shared under several names (tied)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def _retie(model: nn.Module, aliases: Mapping[str, str]) -> None:
    # load_state_dict(assign=True) replaces parameter objects one name at a time, which
    # unties shared ones; point every alias back at its canonical parameter.
    for alias, canonical in aliases.items():
        module_name, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(module_name), attr, model.get_parameter(canonical))


def load_model_weights(
    model: nn.Module,
    native_state_dict: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
) -> LoadResult:
    """Copy a native state dict into ``model``, checking that they describe the same model.

    Tied embeddings are handled both ways: a model whose output layer shares the
    embedding needs no ``output.weight``, and one stored anyway is accepted when it
    equals ``tok_embeddings.weight``. Buffers the checkpoint lacks (RoPE caches, KV
    caches) are left as built. A model on the ``meta`` device receives the checkpoint's
    tensors themselves (``assign=True``); otherwise tensors are copied into the model's
    parameters, taking their dtype and device.

    Args:
        model: A native model (``TransformerDecoder``).
        native_state_dict: Native key -> tensor, e.g. from ``Checkpointer.load_state_dict()``.
        strict: Raise when keys are missing or unexpected. Shape mismatches always raise.

    Returns:
        The missing and unexpected keys (empty when ``strict``).

    Raises:
        CheckpointError: one error listing the mismatched shapes, missing and unexpected
            keys (the first few of each), and how to build a matching model.
    """
    expected = model.state_dict(keep_vars=True)
    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    aliases = _alias_groups(model)
    state = dict(native_state_dict)

    untied_output: list[str] = []
    if _OUTPUT in state and _OUTPUT not in expected and _EMBEDDING in expected:
        embedding = state.get(_EMBEDDING)
        if embedding is not None and torch.equal(state[_OUTPUT].to(embedding), embedding):
            del state[_OUTPUT]  # tied in the checkpoint too, just stored twice
        else:
            untied_output.append(_OUTPUT)

    provided = set(state)
    for alias, canonical in aliases.items():
        # One name of a tied parameter is enough: load it through the canonical name.
        if alias in state:
            state.setdefault(canonical, state.pop(alias))
            provided.add(canonical)
        if canonical in provided:
            provided.add(alias)

    missing = sorted(k for k in expected if k not in provided and k in param_names)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = [
        f"{k}: checkpoint {_shape(state[k])} vs model {_shape(expected[k])}"
        for k in expected  # in the model's order: embeddings, then layer by layer
        if k in state and state[k].shape != expected[k].shape
    ]

    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) ({_listed(mismatched)})")
    if strict and missing:
        problems.append(f"{len(missing)} key(s) the model needs are missing ({_listed(missing)})")
    if strict and unexpected:
        note = (
            "; the model ties its output layer to the embedding but the checkpoint has its "
            "own output weight"
            if untied_output
            else ""
        )
        problems.append(
            f"{len(unexpected)} unexpected key(s) in the checkpoint ({_listed(unexpected)}){note}"
        )
    if problems:
        raise CheckpointError(
            "the checkpoint does not match the model: "
            + "; ".join(problems)
            + " — build the model from the checkpoint with model: {_component_: auto}, or "
            "choose the builder that matches the checkpoint's config.json"
        )

    to_load = {k: v for k, v in state.items() if k in expected}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(to_load, strict=False, assign=on_meta)
    if on_meta:
        _retie(model, aliases)
    return LoadResult(missing, unexpected)
