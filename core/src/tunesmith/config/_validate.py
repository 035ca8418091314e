"""Checking a whole config before anything runs, reporting every problem at once."""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from tunesmith._components import Recipe
from tunesmith.config._instantiate import (
    KIND_BY_KEY,
    argument_problem,
    list_key,
    resolve_component,
)
from tunesmith.config._schema import RecipeSchema, is_instance, type_text
from tunesmith.errors import ConfigError, TunesmithError, did_you_mean

__all__ = ["config_variables", "format_problems", "validate"]

# Components the recipe builds itself from the checkpoint directory.
_AUTO = "auto"
# Top-level blocks that are always built from a ``_component_``.
_COMPONENT_BLOCKS = frozenset(KIND_BY_KEY) | {"optimizer", "lr_scheduler", "loss", "metric_logger"}
_OPEN = RecipeSchema(open=True)

# ``${name...}`` references a top-level key; ``${resolver:...}`` and ``${.rel}`` do not.
_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_][\w-]*)((?:\.[\w-]+|\[[^\]]*\])*)\s*([:}]?)")


class _Unresolved:
    """Stands for a value whose ``${...}`` failed (already reported): checks skip it."""


_UNRESOLVED = _Unresolved()


def format_problems(problems: Iterable[str]) -> str:
    """``config has N problems:`` and one ``  - problem`` line each."""
    problems = list(problems)
    return f"config has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n" + "\n".join(
        f"  - {p}" for p in problems
    )


def _plain_types(target: Callable[..., Any], name: str) -> tuple[Any, ...] | None:
    """The options of a parameter's annotation (``float | Tensor`` -> ``(float, Tensor)``),
    or ``None`` when it has none or it cannot be resolved."""
    # A class's own annotations are its attributes; its arguments are __init__'s.
    annotated = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(annotated)
    except Exception:  # unresolvable annotations: skip the check
        return None
    if name not in hints:
        return None
    hint = hints[name]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if is_union else (hint,)
    return tuple(typing.get_origin(a) or a for a in options)


def _takes_text(options: tuple[Any, ...]) -> bool:
    """Whether a string could be a valid value for a parameter with these options."""
    for option in options:
        if not isinstance(option, type) or option is object:
            return True  # Any, a TypeVar, Literal[...]: don't guess
        if issubclass(option, (str, PurePath, os.PathLike)):
            return True
    return False


def _default_of(target: Callable[..., Any], name: str) -> Any:
    try:
        parameter = inspect.signature(target).parameters.get(name)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default


def _argument_problem(target: Callable[..., Any], where: str, arg: str, value: Any) -> str | None:
    """A value of the wrong type for ``target``'s parameter ``arg``, judged from its plain
    annotation, or from a numeric annotation or default when a string is given."""
    options = _plain_types(target, arg)
    plain = {int, float, str, bool, type(None), list, dict}
    if options and all(t in plain for t in options):
        if is_instance(value, options):
            return None
        return f"'{where}' must be {type_text(options)}, not {value!r}"
    if not isinstance(value, str):
        return None
    default = _default_of(target, arg)
    numeric_default = isinstance(default, (int, float)) and not isinstance(default, bool)
    numeric_hint = options is not None and any(t in (int, float) for t in options)
    if not (numeric_default or numeric_hint) or (options is not None and _takes_text(options)):
        return None
    owner = getattr(target, "__qualname__", repr(target))
    because = f" ({owner}'s default is {default!r})" if numeric_default else ""
    return f"'{where}' must be a number, not {value!r}{because}"


def _check_component(key: str, node: dict, problems: list[str]) -> None:
    name = node.get("_component_")
    if name == _AUTO and key == "model":
        return  # its arguments are the checkpoint family's builder's, known only at run time
    if name is _UNRESOLVED:
        return
    if not isinstance(name, str):
        problems.append(f"'{key}._component_' must be a name or dotted path, not {name!r}")
        return
    try:
        target = resolve_component(name, key=key)
    except TunesmithError as exc:
        # an item of a list (dataset.1) is named: "unknown dataset" alone would not say which
        problems.append(f"{key}: {exc}" if list_key(key) != key else str(exc))
        return
    kwargs = {k: v for k, v in node.items() if k != "_component_"}
    before = len(problems)
    problem = argument_problem(target, (), kwargs, partial=True)
    if problem:
        problems.append(f"{key}: {problem}")
        return
    if KIND_BY_KEY.get(list_key(key)) == "datasets":
        from tunesmith.data._common import misspelt_options

        problems += [f"{key}: {message}" for message in misspelt_options(target, kwargs)]
    for arg, value in kwargs.items():
        if value is None or value is _UNRESOLVED:
            continue
        if isinstance(value, dict) and "_component_" in value:
            _check_component(f"{key}.{arg}", value, problems)
            continue
        problem = _argument_problem(target, f"{key}.{arg}", arg, value)
        if problem:
            problems.append(problem)
    if key.rpartition(".")[2] == "optimizer" and len(problems) == before:
        problems += _optimizer_problems(target, key, kwargs)


_OK, _OTHER = "ok", "other"


def _optimizer_problems(target: Callable[..., Any], key: str, kwargs: dict) -> list[str]:
    """The arguments an optimizer class refuses by value (``lr: -1``): it is built once on
    a dummy parameter, and each ``ValueError`` is traced to the argument whose removal
    changes it, so every bad value is named (a refusal that only another argument
    explains names the block)."""
    import warnings

    import torch

    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        return []
    if any(v is _UNRESOLVED or isinstance(v, dict) for v in kwargs.values()):
        return []

    def outcome(arguments: dict) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target([torch.zeros(1, requires_grad=True)], **arguments)
        except ValueError as exc:
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        except Exception:  # not a refused value (a device or a missing argument)
            return _OTHER
        return _OK

    name = getattr(target, "__qualname__", repr(target))
    problems: list[str] = []
    current = dict(kwargs)
    message = outcome(current)
    while message not in (_OK, _OTHER):
        for arg in current:
            rest = {k: v for k, v in current.items() if k != arg}
            without = outcome(rest)
            if without not in (message, _OTHER):
                problems.append(f"'{key}.{arg}' {current[arg]!r} is refused by {name}: {message}")
                current, message = rest, without
                break
        else:
            problems.append(f"{key}: {name} refuses these arguments: {message}")
            break
    return problems


def _check_dataset_list(items: list, problems: list[str]) -> None:
    """torchtune's ``dataset: [{...}, ...]``: each item a dataset component."""
    if not items:
        problems.append("'dataset' is an empty list: name at least one dataset")
    for i, item in enumerate(items):
        if isinstance(item, dict) and "_component_" in item:
            _check_component(f"dataset.{i}", item, problems)
        elif item is not _UNRESOLVED:
            problems.append(
                f"'dataset.{i}' must be a dataset ({{_component_: alpaca | chat | ..., "
                f"source}}), not {item!r}"
            )


def _resolution_problem(where: str, exc: OmegaConfBaseException) -> str:
    if isinstance(exc, MissingMandatoryValue):
        return f"'{where}' is ??? (a value to fill in): set {where}=<value>"
    reason = str(exc.msg).splitlines()[0]  # drop OmegaConf's full_key/object_type lines
    return f"cannot resolve '{where}': {reason}: fix the ${{...}} reference"


def _resolve(node: Any, prefix: str, problems: list[str]) -> Any:
    """``node`` as plain Python with every ``${...}`` resolved; a failing one is reported
    and left as ``_UNRESOLVED``, so every broken reference is listed, not just the first."""
    if isinstance(node, DictConfig):
        items: Iterable[Any] = node.keys()
    elif isinstance(node, ListConfig):
        items = range(len(node))
    else:
        return node
    out: dict[Any, Any] = {}
    for key in items:
        where = f"{prefix}{key}"
        try:
            value = node[key]
        except OmegaConfBaseException as exc:
            problems.append(_resolution_problem(where, exc))
            out[key] = _UNRESOLVED
            continue
        out[key] = _resolve(value, f"{where}.", problems)
    return list(out.values()) if isinstance(node, ListConfig) else out


def _references(value: Any, found: dict[str, set[str]], where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _references(item, found, where or str(key))
    elif isinstance(value, list):
        for item in value:
            _references(item, found, where)
    elif isinstance(value, str) and "${" in value:
        for match in _REFERENCE.finditer(value):
            if match.group(3) != ":":  # ${oc.env:HOME} calls a resolver
                found.setdefault(match.group(1), set()).add(where)


def config_variables(cfg: DictConfig, schema: RecipeSchema | None) -> frozenset[str]:
    """Top-level keys outside ``schema`` that only serve as ``${...}`` variables
    (``base_dir: /models`` for ``checkpoint_dir: ${base_dir}/Llama``).

    An open schema accepts every key, so nothing counts as a variable there.
    """
    if schema is None or schema.open:
        return frozenset()
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    found: dict[str, set[str]] = {}
    _references(raw, found, "")
    return frozenset(
        key
        for key in raw
        if key not in schema and key not in schema.refused and found.get(key, set()) - {key}
    )


def _problems(cfg: DictConfig, recipe: Recipe | None) -> list[str]:
    from tunesmith.recipes import well_known_key  # (tunesmith.recipes imports this package)

    problems: list[str] = []
    data = _resolve(cfg, "", problems)
    schema = recipe.schema if recipe is not None and recipe.schema is not None else _OPEN
    name = recipe.name if recipe is not None else "?"
    variables = config_variables(cfg, schema)
    for key in data:
        if key in schema or key in variables:
            continue
        if key in schema.refused:
            problems.append(f"key '{key}' is not read by recipe {name}: {schema.refused[key]}")
        elif not schema.open:
            hint = did_you_mean(key, schema.names) or (
                f" (remove it; `tunesmith run {name} --help` lists the keys it reads)"
            )
            problems.append(f"unknown key '{key}' for recipe {name}{hint}")
    for key in sorted(schema.required - data.keys()):
        spec = schema.get(key)
        what = f" ({spec.help})" if spec is not None and spec.help else ""
        problems.append(f"missing required key '{key}' for recipe {name}: add it{what}")
    for key, value in data.items():
        if value is _UNRESOLVED or key in variables or key in schema.refused:
            continue
        spec = schema.get(key) or (well_known_key(key) if schema.open else None)
        if spec is None and not schema.open:
            continue  # an unknown key: already reported, its contents are not read
        problem = spec.problem(value) if spec is not None else None
        if problem:
            problems.append(problem)
            continue
        if isinstance(value, dict) and "_component_" in value:
            _check_component(key, value, problems)
        elif key == "dataset" and isinstance(value, list):
            _check_dataset_list(value, problems)
        elif key in _COMPONENT_BLOCKS and isinstance(value, dict):
            problems.append(f"'{key}' has no _component_: add one (e.g. {key}._component_=...)")
    return problems


def validate(cfg: DictConfig, recipe: Recipe | None = None) -> None:
    """Check keys, types, ranges, interpolations and every component's arguments.

    Args:
        cfg: The loaded config (overrides applied).
        recipe: The recipe it is for: its schema's keys, types, ranges and required
            keys are enforced, and keys outside it refused unless they are only
            ``${...}`` variables. Without one, any key is allowed and well-known keys
            (``batch_size``, ...) are type-checked.

    Raises:
        ConfigError: listing every problem found, one per line, each with a fix.
    """
    problems = _problems(cfg, recipe)
    if problems:
        raise ConfigError(format_problems(problems))
