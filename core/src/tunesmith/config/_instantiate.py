"""Turning ``_component_`` nodes into objects.

``_component_`` names a registered component first (``llama3_2_1b``, ``alpaca``),
a dotted import path second (``torch.optim.AdamW``). The config key a node sits
under says which table to look in (``model`` -> models), so the same name may
exist in two tables without ambiguity.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunesmith._quiet import quiet_import
from tunesmith.config._trust import check_dotted_path, check_target
from tunesmith.errors import ConfigError, NotFoundError, did_you_mean
from tunesmith.registry import get_registry

__all__ = ["KIND_BY_KEY", "argument_problem", "instantiate", "resolve_component"]

#: Config key -> the registry table its ``_component_`` names.
KIND_BY_KEY = {
    "model": "models",
    "tokenizer": "tokenizers",
    "dataset": "datasets",
    "validation_dataset": "datasets",
    "peft": "peft_methods",
    "quantizer": "quantizers",
    "evaluator": "evaluators",
}

_BUILDER_KINDS = ("models", "tokenizers", "datasets", "peft_methods", "quantizers", "evaluators")


def _import_dotted(path: str) -> Callable[..., Any] | None:
    module_name, _, attr = path.rpartition(".")
    while module_name:
        try:
            with quiet_import(module_name):
                module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and not module_name.startswith(exc.name):
                raise  # the module exists but one of its own imports is missing
            module_name, _, head = module_name.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                return None
            obj = getattr(obj, part)
        return obj
    return None


def list_key(key: str) -> str:
    """The key of the list an item's key (``dataset.0``) sits in; other keys unchanged."""
    return re.sub(r"\.\d+$", "", key)


def resolve_component(name: str, *, key: str | None = None) -> Callable[..., Any]:
    """The callable a ``_component_`` value names.

    Args:
        name: A registry name or a dotted import path.
        key: The config key the node sits under (``model``, ``dataset``, ...).

    Raises:
        NotFoundError: nothing by that name; the message suggests close names.
    """
    registry = get_registry()
    kind = KIND_BY_KEY.get(list_key(key or ""))
    if kind and name in registry.tables[kind]:
        return registry.get(kind, name).builder
    if "." not in name:
        found = [(k, c) for k, c in registry.find(name) if k in _BUILDER_KINDS]
        if len(found) == 1:
            return found[0][1].builder
        if len(found) > 1 and not kind:
            tables = " and ".join(k for k, _ in found)
            raise NotFoundError(
                f"component '{name}'{f' (under {key!r})' if key else ''} is registered in both "
                f"{tables}: put it under the config key of the one you mean (e.g. 'model')"
            )
        if kind:
            registry.get(kind, name)  # raises with suggestions from the right table
        choices = [n for k in _BUILDER_KINDS for n in registry.tables[k]]
        where = f" (under '{key}')" if key else ""
        raise NotFoundError(
            f"unknown component '{name}'{where}{did_you_mean(name, choices)}: use a registered "
            "name (see `tunesmith plugins`) or a dotted path like torch.optim.AdamW"
        )
    check_dotted_path(name, key=key)  # before importing: importing can run code
    target = _import_dotted(name)
    if target is None or not callable(target):
        module_name, _, attr = name.rpartition(".")
        public = [a for a in dir(sys.modules.get(module_name)) if not a.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3, cutoff=0.6)
        hint = did_you_mean(name, [f"{module_name}.{a}" for a in close])
        raise NotFoundError(
            f"cannot import '{name}' named by _component_{f' under {key!r}' if key else ''}"
            f"{hint}: check the spelling of the dotted path, or use a registered name"
        )
    check_target(name, target, key=key)
    return target


def _to_python(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException as exc:
            # OmegaConf appends "full_key: ... object_type=..." lines: keep the first.
            reason = str(exc.msg).splitlines()[0]
            raise ConfigError(
                f"cannot resolve '{exc.full_key or 'config'}': {reason}: fix the ${{...}} reference"
            ) from None
    return node


def instantiate(
    node: Any,
    *args: Any,
    key: str | None = None,
    context: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """Build the object a config node describes.

    ``node`` is a mapping with ``_component_``; its other keys (nested components
    instantiated first) plus ``overrides`` become keyword arguments, ``args`` are
    passed first (``instantiate(cfg.optimizer, model.parameters())``). ``None``
    returns ``None`` so optional blocks stay optional.

    ``context`` holds what the recipe knows that a component may need, by parameter
    name (``{"checkpointer": ...}``): each entry is passed only to a target whose
    signature names that parameter, and only if the node does not set it. This is how
    ``auto`` components read the run's checkpoint.

    Raises:
        ConfigError: the node has no ``_component_`` or the call rejects its arguments.
    """
    if node is None:
        return None
    if not isinstance(node, (dict, DictConfig)):
        raise ConfigError(f"'{key or 'config'}' must be a mapping with _component_, not {node!r}")
    kwargs = _to_python(node) if isinstance(node, DictConfig) else dict(node)
    if "_component_" not in kwargs:
        raise ConfigError(f"'{key or 'config'}' has no _component_: name what to build")
    target = resolve_component(kwargs.pop("_component_"), key=key)
    for name, value in kwargs.items():
        if isinstance(value, dict) and "_component_" in value:
            kwargs[name] = instantiate(value, key=name)
    kwargs.update(overrides)
    for name, value in (context or {}).items():
        if name not in kwargs and _accepts(target, name):
            kwargs[name] = value
    problem = argument_problem(target, args, kwargs)
    if problem:
        raise ConfigError(f"cannot build '{key or 'config'}': {problem}")
    try:
        return target(*args, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        # The component refused its arguments (torch.optim: "Invalid learning rate").
        name = getattr(target, "__qualname__", repr(target))
        raise ConfigError(
            f"cannot build '{key or 'config'}' ({name}): {str(exc).splitlines()[0]}: fix the "
            f"arguments under '{key or 'config'}'"
        ) from exc


def _accepts(target: Callable[..., Any], name: str) -> bool:
    try:
        parameter = inspect.signature(target).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        parameter.POSITIONAL_OR_KEYWORD,
        parameter.KEYWORD_ONLY,
    )


def argument_problem(
    target: Callable[..., Any],
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    partial: bool = False,
) -> str | None:
    """Why ``target(*args, **kwargs)`` would be rejected, or ``None``.

    With ``partial``, missing arguments are allowed (the recipe passes them at call time).
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    kwargs = kwargs or {}
    try:
        (signature.bind_partial if partial else signature.bind)(*args, **kwargs)
    except TypeError as exc:
        name = getattr(target, "__qualname__", repr(target))
        accepted = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = [k for k in kwargs if k not in accepted]
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        if unknown and not takes_kwargs:
            return "; ".join(
                f"{name} has no argument '{k}'{did_you_mean(k, accepted)}" for k in unknown
            )
        return f"{name}: {exc}"
    return None
