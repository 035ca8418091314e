"""Checking a whole config before anything runs, reporting every problem at once."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunesmith._components import Recipe
from tunesmith.config._instantiate import KIND_BY_KEY, argument_problem, resolve_component
from tunesmith.errors import ConfigError, TunesmithError, did_you_mean

__all__ = ["validate"]

# Top-level keys every recipe reads the same way, with the types they must have.
_COMMON_TYPES: dict[str, tuple[type, ...]] = {
    "output_dir": (str,),
    "batch_size": (int,),
    "epochs": (int,),
    "max_steps_per_epoch": (int, type(None)),
    "gradient_accumulation_steps": (int,),
    "seed": (int, type(None)),
    "shuffle": (bool,),
    "compile": (bool,),
    "enable_activation_checkpointing": (bool,),
    "enable_activation_offloading": (bool,),
    "resume_from_checkpoint": (bool,),
    "save_every_n_steps": (int, type(None)),
    "keep_last_n_epochs": (int, type(None)),
    "log_every_n_steps": (int,),
    "clip_grad_norm": (int, float, type(None)),
    "device": (str,),
    "dtype": (str,),
}
_POSITIVE = {"batch_size", "epochs", "gradient_accumulation_steps", "log_every_n_steps"}

# Components the recipe builds itself from the checkpoint directory.
_AUTO = "auto"


def _type_problem(key: str, value: Any, types: tuple[type, ...]) -> str | None:
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types) or (float in types and isinstance(value, int))
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        return f"'{key}' must be {names}, not {value!r}"
    if key in _POSITIVE and value < 1:
        return f"'{key}' must be at least 1, not {value}"
    return None


def _annotation_types(target: Callable[..., Any], name: str) -> tuple[type, ...] | None:
    """The plain types a parameter accepts, when its annotation says so simply."""
    # A class's own annotations are its attributes; its arguments are __init__'s.
    annotated = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(annotated)
    except Exception:  # unresolvable annotations: skip the check
        return None
    hint = hints.get(name)
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if is_union else (hint,)
    plain = {int, float, str, bool, type(None), list, dict}
    accepted = tuple(typing.get_origin(a) or a for a in options)
    if not accepted or not all(t in plain for t in accepted):
        return None
    return accepted


def _check_component(key: str, node: dict, problems: list[str]) -> None:
    name = node.get("_component_")
    if name == _AUTO and key in ("model", "tokenizer"):
        return
    if not isinstance(name, str):
        problems.append(f"'{key}._component_' must be a name or dotted path, not {name!r}")
        return
    try:
        target = resolve_component(name, key=key)
    except TunesmithError as exc:
        problems.append(str(exc))
        return
    kwargs = {k: v for k, v in node.items() if k != "_component_"}
    problem = argument_problem(target, (), kwargs, partial=True)
    if problem:
        problems.append(f"{key}: {problem}")
        return
    for arg, value in kwargs.items():
        if isinstance(value, dict) and "_component_" in value:
            _check_component(f"{key}.{arg}", value, problems)
            continue
        accepted = _annotation_types(target, arg)
        if accepted and value is not None:
            problem = _type_problem(f"{key}.{arg}", value, accepted)
            if problem:
                problems.append(problem)


def validate(cfg: DictConfig, recipe: Recipe | None = None) -> None:
    """Check keys, types, interpolations and every component's arguments.

    Args:
        cfg: The loaded config (overrides applied).
        recipe: The recipe it is for; its ``keys`` and ``required`` are enforced.

    Raises:
        ConfigError: listing every problem found, one per line, each with a fix.
    """
    problems: list[str] = []
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        reason = str(exc.msg).splitlines()[0]  # drop OmegaConf's full_key/object_type lines
        raise ConfigError(
            f"cannot resolve '{exc.full_key}': {reason}: fix the ${{...}} reference"
        ) from None
    assert isinstance(data, dict)
    if recipe is not None and recipe.keys is not None:
        for key in data:
            if key not in recipe.keys:
                hint = (
                    did_you_mean(key, recipe.keys) or " (remove it, or check the recipe's configs)"
                )
                problems.append(f"unknown key '{key}' for recipe {recipe.name}{hint}")
    if recipe is not None:
        for key in sorted(recipe.required - data.keys()):
            problems.append(f"missing required key '{key}' for recipe {recipe.name}")
    for key, value in data.items():
        if key in _COMMON_TYPES:
            problem = _type_problem(key, value, _COMMON_TYPES[key])
            if problem:
                problems.append(problem)
        if isinstance(value, dict) and "_component_" in value:
            _check_component(key, value, problems)
        elif key in KIND_BY_KEY and isinstance(value, dict):
            problems.append(f"'{key}' has no _component_: add one (e.g. {key}._component_=...)")
    if problems:
        raise ConfigError(
            f"config has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
