"""A registry of chosen plugins for a test, installed as the process-wide one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["plugin_registry"]


@contextlib.contextmanager
def plugin_registry(
    plugins: Mapping[str, Any] | None = None,
    *,
    entry_points: Sequence[str] = (),
    builtins: bool = True,
    strict: bool = True,
) -> Iterator[Any]:
    """Inside the block, :func:`tunesmith.get_registry` (and so every command and recipe)
    sees only the core's built-ins, the named installed entry points and ``plugins``.

    Args:
        plugins: ``{name: plugin module or object}`` registered as-is (your plugin under
            test, or throwaway objects with ``@hookimpl`` methods).
        entry_points: Installed plugins to load too, by entry-point name (``["lora"]``
            for the LoRA recipes your configs name).
        builtins: Register the core's own recipes, datasets, tokenizers, quantizers
            and ``auto`` components (what a user always has).
        strict: Raise on the first plugin problem instead of recording it
            (``TUNESMITH_STRICT_PLUGINS=1``).

    Yields:
        The registry. The previous one (and the environment) is restored on exit.

    Example:
        >>> from tunesmith_acme import plugin
        >>> with plugin_registry({"acme": plugin}, entry_points=["lora"]) as registry:
        ...     assert registry.get("models", "acme_1b").origin.plugin == "acme"
    """
    from tunesmith import registry as registry_module

    saved = {k: os.environ.get(k) for k in ("TUNESMITH_LOAD_PLUGINS", "TUNESMITH_STRICT_PLUGINS")}
    previous = registry_module._REGISTRY
    os.environ["TUNESMITH_LOAD_PLUGINS"] = ",".join(entry_points)
    os.environ["TUNESMITH_STRICT_PLUGINS"] = "1" if strict else ""
    try:
        registry = registry_module.load_registry(
            builtins=builtins, entry_points=bool(entry_points), extra=dict(plugins or {})
        )
        registry_module.reset_registry(registry)
        yield registry
    finally:
        registry_module.reset_registry(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
