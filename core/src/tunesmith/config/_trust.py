"""Which dotted paths a ``_component_`` may name: nothing runs that a config did not ask
for as the kind of component its key expects.

- Registered names (``llama3_2_1b``, ``alpaca``, ``lora``) are always fine: a plugin the
  user installed registered them.
- A dotted path must name the kind its key expects: under ``optimizer`` a
  ``torch.optim.Optimizer`` class, under ``lr_scheduler`` an ``LRScheduler`` class,
  under ``loss`` an ``nn.Module`` class, under ``metric_logger`` a
  ``tunesmith.training.MetricLogger`` class — from any installed package. Any other
  callable must come from tunesmith or a ``tunesmith_*`` plugin package, or from a
  module the user trusts explicitly: ``TUNESMITH_TRUSTED_MODULES=mypkg,other.sub``.
- Never, whatever is trusted: paths into modules that run programs, load pickles or
  evaluate code (``os``, ``subprocess``, ``builtins``, ``pickle``, ``torch.hub``, ...).
  They are refused before anything is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tunesmith.errors import ConfigError

__all__ = ["NEVER", "TRUSTED_MODULES_ENV", "check_dotted_path", "check_target"]

TRUSTED_MODULES_ENV = "TUNESMITH_TRUSTED_MODULES"

#: Module prefixes no ``_component_`` may reach.
NEVER = (
    "builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy",
    "pickle", "marshal", "shelve", "dill", "ctypes", "socket", "pty", "code", "codeop", "pdb",
    "webbrowser", "antigravity", "multiprocessing", "signal", "threading", "asyncio",
    "tempfile", "pathlib", "io", "glob", "inspect", "torch.hub", "torch.load", "torch.save",
    "torch.package", "torch.jit.load", "torch.serialization", "numpy.load", "joblib",
    "eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
)  # fmt: skip


def _under(path: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _trusted_prefixes() -> list[str]:
    extra = [m.strip() for m in os.environ.get(TRUSTED_MODULES_ENV, "").split(",") if m.strip()]
    return ["tunesmith", *extra]


def _from_trusted(path: str) -> bool:
    root = path.split(".")[0]
    return root.startswith("tunesmith_") or _under(path, _trusted_prefixes())


def check_dotted_path(path: str, *, key: str | None) -> None:
    """Refuse a path into a module no component may come from, before importing it.

    Raises:
        ConfigError: naming the path and what to write instead.
    """
    if _under(path, NEVER):
        raise ConfigError(
            f"'{key or 'config'}._component_: {path}' names code that runs programs, loads "
            "pickles or evaluates code, which a config may not call: name a registered "
            "component (see `tunesmith plugins`) or a component class"
        )


def _is_class_of(target: Any, base: Callable[[], type]) -> bool:
    return isinstance(target, type) and issubclass(target, base())


def _optimizer() -> type:
    import torch

    return torch.optim.Optimizer


def _scheduler() -> type:
    import torch

    return torch.optim.lr_scheduler.LRScheduler


def _module() -> type:
    from torch import nn

    return nn.Module


def _logger() -> type:
    from tunesmith.training import MetricLogger

    return MetricLogger


#: Config key -> (what a dotted path there must name, the test).
_KINDS: dict[str, tuple[str, Callable[[], type]]] = {
    "optimizer": ("a torch.optim.Optimizer class (e.g. torch.optim.AdamW)", _optimizer),
    "lr_scheduler": ("a torch LRScheduler class or a tunesmith.training schedule", _scheduler),
    "loss": ("an nn.Module loss class (e.g. tunesmith.training.ChunkedCrossEntropyLoss)", _module),
    "metric_logger": ("a tunesmith.training.MetricLogger class (e.g. DiskLogger)", _logger),
}


def check_target(path: str, target: Any, *, key: str | None) -> None:
    """Refuse an imported ``_component_`` target that is not the kind its key expects.

    Raises:
        ConfigError: naming the key, the kind expected and how to trust a module.
    """
    if _under(f"{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}", NEVER):
        check_dotted_path(getattr(target, "__module__", path), key=key)
    kind = _KINDS.get((key or "").rpartition(".")[2])
    if kind is not None and _is_class_of(target, kind[1]):
        return
    if _from_trusted(path):
        return
    expected = kind[0] if kind else "a registered component"
    raise ConfigError(
        f"'{key or 'config'}._component_: {path}' is not {expected}, and {path.split('.')[0]} "
        f"is not a trusted module: name one of those, or trust your own module with "
        f"{TRUSTED_MODULES_ENV}={path.rpartition('.')[0]}"
    )
