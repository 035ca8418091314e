"""Plugin discovery and the component tables.

Plugins are the core's built-ins (:data:`DEFAULT_PLUGINS`) plus every entry point
in the ``tunesmith`` group. Each is loaded on its own: one that fails to import,
declares an unsupported plugin-API version or implements an unknown hook is
recorded in :attr:`Registry.plugins` and skipped, and the rest keeps working.

Environment:
    TUNESMITH_LOAD_PLUGINS: comma-separated entry-point names to load (empty: none).
    TUNESMITH_STRICT_PLUGINS=1: raise on the first plugin problem (for plugin authors).
    TUNESMITH_TRACE_PLUGINS=1: print every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from tunesmith import hookspecs
from tunesmith._components import (
    CheckpointAdapter,
    Config,
    Dataset,
    Evaluator,
    Model,
    Origin,
    PeftMethod,
    Quantizer,
    Recipe,
    Tokenizer,
)
from tunesmith.errors import NotFoundError, PluginError, did_you_mean

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginInfo",
    "Registry",
    "get_registry",
    "load_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "tunesmith"

#: The core's own components, registered through the same hooks as any plugin.
DEFAULT_PLUGINS = (
    "tunesmith.builtins.models",
    "tunesmith.builtins.recipes",
    "tunesmith.builtins.datasets",
    "tunesmith.builtins.tokenizers",
    "tunesmith.builtins.quantizers",
)

#: Table name -> record type, in display order.
KINDS: dict[str, type] = {
    "models": Model,
    "tokenizers": Tokenizer,
    "checkpoint_adapters": CheckpointAdapter,
    "peft_methods": PeftMethod,
    "recipes": Recipe,
    "configs": Config,
    "evaluators": Evaluator,
    "quantizers": Quantizer,
    "datasets": Dataset,
}

#: Hook name -> the record types its ``register`` callback accepts.
HOOKS: dict[str, tuple[type, ...]] = {
    "register_models": (Model,),
    "register_tokenizers": (Tokenizer,),
    "register_checkpoint_adapters": (CheckpointAdapter,),
    "register_peft_methods": (PeftMethod,),
    "register_recipes": (Recipe, Config),
    "register_evaluators": (Evaluator,),
    "register_quantizers": (Quantizer,),
    "register_datasets": (Dataset,),
}


@dataclass
class PluginInfo:
    """What ``tunesmith plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool = False
    api: int | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "api": self.api,
            "hooks": self.hooks,
            "components": self.components,
            "error": self.error,
        }


@dataclass(frozen=True)
class _Conflict:
    kind: str
    name: str
    origins: tuple[Origin, ...]

    def message(self) -> str:
        sides = " and ".join(f"{o.distribution} {o.version}" for o in self.origins)
        return (
            f"{self.kind[:-1].replace('_', ' ')} '{self.name}' is registered by both {sides}: "
            "uninstall one of them, or choose plugins with TUNESMITH_LOAD_PLUGINS"
        )


class Registry:
    """The component tables, filled by calling every loaded plugin's hooks."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.conflicts: dict[tuple[str, str], _Conflict] = {}

    # ---- lookups ---------------------------------------------------------

    def get(self, kind: str, name: str) -> Any:
        """The component ``name`` of table ``kind``.

        Raises:
            NotFoundError: nothing has that name; the message lists close matches.
            PluginError: two plugins registered that name.
        """
        if kind not in self.tables:
            raise KeyError(f"no table {kind!r}: choose one of {', '.join(KINDS)}")
        if (kind, name) in self.conflicts:
            raise PluginError(self.conflicts[kind, name].message())
        try:
            return self.tables[kind][name]
        except KeyError:
            what = kind[:-1].replace("_", " ")
            hint = did_you_mean(name, self.tables[kind]) or (
                f"; run `tunesmith {'ls' if kind in ('recipes', 'configs') else 'plugins'}` "
                "to see what is installed"
            )
            raise NotFoundError(f"unknown {what} '{name}'{hint}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.tables[kind])

    def values(self, kind: str) -> list[Any]:
        return [self.tables[kind][n] for n in self.names(kind)]

    def find(self, name: str) -> list[tuple[str, Any]]:
        """Every ``(kind, component)`` registered under ``name``, in any table."""
        return [(kind, t[name]) for kind, t in self.tables.items() if name in t]

    def missing_requirements(self) -> dict[str, list[str]]:
        """Distribution -> the shipped configs that need it: their recipe is not
        registered and their ``Config.requires`` names the distribution that has it."""
        missing: dict[str, list[str]] = {}
        for config in self.values("configs"):
            if config.recipe not in self.tables["recipes"] and config.requires:
                missing.setdefault(config.requires, []).append(config.name)
        return missing

    def load_errors(self) -> dict[str, str]:
        return {p.name: p.error for p in self.plugins.values() if p.error}

    # ---- filling ---------------------------------------------------------

    def _register(self, info: PluginInfo, hook: str, component: Any) -> None:
        """Add a type-checked component (see ``_Loader._call``), stamping its origin."""
        # isinstance, not type(): a plugin may register a subclass of a record.
        kind = next(k for k, record in KINDS.items() if isinstance(component, record))
        origin = Origin(info.name, info.distribution, info.version)
        component = replace(component, origin=origin)
        name = component.name
        table = self.tables[kind]
        if (kind, name) in self.conflicts:
            conflict = self.conflicts[kind, name]
            self.conflicts[kind, name] = replace(conflict, origins=(*conflict.origins, origin))
        elif name in table:
            conflict = _Conflict(kind, name, (table.pop(name).origin, origin))
            self.conflicts[kind, name] = conflict
            warnings.warn(conflict.message(), stacklevel=2)
        else:
            table[name] = component
        info.components.setdefault(kind, []).append(name)


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _strict() -> bool:
    return os.environ.get("TUNESMITH_STRICT_PLUGINS", "") not in ("", "0")


def _short_error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


class _Loader:
    """Loads plugins one by one into a pluggy manager and records each one's fate."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("TUNESMITH_TRACE_PLUGINS", "") not in ("", "0"):
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)

    @staticmethod
    def _trace_before(hook_name: str, hook_impls: list, kwargs: dict) -> None:
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"tunesmith: calling {hook_name} on {names}", file=sys.stderr)

    @staticmethod
    def _trace_after(outcome: Any, hook_name: str, hook_impls: list, kwargs: dict) -> None:
        if outcome.exception is not None:
            print(f"tunesmith: {hook_name} raised {outcome.exception!r}", file=sys.stderr)

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        info.error = message
        if _strict():
            raise PluginError(f"plugin '{info.name}' ({info.distribution}): {message}") from exc

    def add(self, info: PluginInfo, load: Any) -> None:
        """Import a plugin (``load()`` returns its module or object) and register it."""
        first = self.registry.plugins.get(info.name)
        if first is not None:
            # Keep the first one's record; pluggy would refuse the second name anyway.
            self.registry.plugins[f"{info.name} ({info.distribution})"] = info
            return self._fail(
                info,
                f"plugin name '{info.name}' is already taken by {first.distribution} "
                f"{first.version}: uninstall one of them",
            )
        self.registry.plugins[info.name] = info
        try:
            plugin = load()
        except Exception as exc:  # a broken plugin must not break the others
            return self._fail(info, f"failed to import: {_short_error(exc)}", exc)
        try:
            hash(plugin)  # pluggy keeps plugins in sets: an unhashable one breaks every call
        except TypeError:
            return self._fail(
                info, "the plugin object is not hashable: point the entry point at a module"
            )
        api = getattr(plugin, "TUNESMITH_PLUGIN_API", hookspecs.PLUGIN_API_VERSION)
        info.api = api
        if api not in hookspecs.SUPPORTED_PLUGIN_APIS:
            supported = " and ".join(map(str, hookspecs.SUPPORTED_PLUGIN_APIS))
            return self._fail(
                info,
                f"built for plugin API {api}, but this tunesmith supports plugin API "
                f"{supported}: install a version of {info.distribution} made for this tunesmith",
            )
        try:
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            return self._fail(info, f"invalid hooks: {exc}", exc)
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])

    def call_hooks(self) -> None:
        """Call every hook once per plugin, with a ``register`` bound to that plugin.

        A plugin's components enter the tables only once all its hooks succeeded, so a
        plugin that fails is reported and contributes nothing, not half of itself.
        """
        plugins = dict(self.pm.list_name_plugin())
        for name, info in self.registry.plugins.items():
            if name not in plugins or info.error:
                continue
            others = [p for n, p in plugins.items() if n != name]
            staged: list[tuple[str, Any]] = []
            try:
                for hook in HOOKS:
                    if hook in info.hooks:
                        self._call(hook, info, others, staged)
            except Exception as exc:
                self._fail(info, f"{hook} raised {_short_error(exc)}", exc)
                continue
            for hook, component in staged:
                self.registry._register(info, hook, component)

    def _call(self, hook: str, info: PluginInfo, others: list, staged: list) -> None:
        def register(component: Any) -> None:
            allowed = HOOKS[hook]
            if not isinstance(component, allowed):
                expected = " or ".join(t.__name__ for t in allowed)
                raise PluginError(
                    f"plugin '{info.name}' passed {type(component).__name__} to {hook}'s "
                    f"register: expected {expected}"
                )
            staged.append((hook, component))

        self.pm.subset_hook_caller(hook, remove_plugins=others)(register=register)


def _core_version() -> str:
    from tunesmith import __version__

    return __version__


def load_registry(
    *, builtins: bool = True, entry_points: bool = True, extra: dict[str, Any] | None = None
) -> Registry:
    """Build a registry from the built-ins, installed entry points and ``extra`` plugins.

    Args:
        builtins: Register :data:`DEFAULT_PLUGINS`.
        entry_points: Load the ``tunesmith`` entry points (filtered by
            ``TUNESMITH_LOAD_PLUGINS``).
        extra: ``{name: plugin_object}`` registered as-is (tests use this).
    """
    registry = Registry()
    loader = _Loader(registry)
    version = _core_version()
    if builtins:
        for module in DEFAULT_PLUGINS:
            info = PluginInfo(module, "tunesmith", version, builtin=True)
            loader.add(info, lambda m=module: importlib.import_module(m))
    if entry_points:
        wanted = _env_list("TUNESMITH_LOAD_PLUGINS")
        if wanted is None:
            wanted = _env_list("TUNESMITH_PLUGINS")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                dist.metadata["Name"] if dist else "unknown",
                dist.version if dist else "unknown",
            )
            loader.add(info, ep.load)
    for name, plugin in (extra or {}).items():
        loader.add(PluginInfo(name, name, "0"), lambda p=plugin: p)
    loader.call_hooks()
    return registry


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
        for name, error in _REGISTRY.load_errors().items():
            warnings.warn(f"tunesmith plugin '{name}' was skipped: {error}", stacklevel=2)
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the loaded registry (or install ``registry``); the next lookup reloads."""
    global _REGISTRY
    _REGISTRY = registry
