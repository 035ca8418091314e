"""What a recipe reads from its config: a :class:`Key` per top-level key, gathered in a
:class:`RecipeSchema`.

Both sides read the one schema: ``tunesmith validate`` (and ``run``, before it starts)
checks types, ranges and required keys against it and refuses keys it does not list;
``tunesmith run`` lays its defaults beneath the user's config, so a recipe reads
``cfg.batch_size`` rather than ``cfg.get("batch_size", 1)``; ``tunesmith run RECIPE
--help`` prints it. Importing this module is cheap (no torch).

Example::

    SCHEMA = RecipeSchema((
        Key("output_dir", str, required=True, help="Where results are written"),
        Key("batch_size", int, 8, check=at_least(1), help="Samples per step"),
        Key("temperature", float, 0.0, check=at_least(0), help="0 is greedy"),
        Key("adapter", (str, None), None, help="A PEFT adapter directory, or null"),
    ))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NO_DEFAULT", "Key", "RecipeSchema", "at_least", "greater_than", "in_range"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: ``Key.default`` of a key the config may leave out, with nothing filled in for it.
NO_DEFAULT: Any = _NoDefault()

_NAMES = {
    type(None): "null",
    dict: "mapping",
    list: "list",
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
}


def _normalise(spec: Any) -> tuple[type, ...]:
    if spec is None:
        return ()
    options = spec if isinstance(spec, tuple) else (spec,)
    return tuple(type(None) if t is None else t for t in options)


def _yaml_float_hint(value: Any) -> str:
    """YAML's spelling of infinity and NaN, for a float written as Python writes it."""
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
        sign = "-" if value.strip().startswith("-") else ""
        return f" (YAML writes it {sign}.{'nan' if 'nan' in value.lower() else 'inf'})"
    return ""


def type_text(types: tuple[type, ...]) -> str:
    """``(int, NoneType)`` -> ``"int or null"``."""
    return " or ".join(_NAMES.get(t, getattr(t, "__name__", str(t))) for t in types) or "any"


def is_instance(value: Any, types: tuple[type, ...]) -> bool:
    """Config-style ``isinstance``: an int is a float, a bool is not an int."""
    if not types:
        return True
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (float in types and isinstance(value, int))


@dataclass(frozen=True)
class Key:
    """One top-level config key a recipe reads.

    Attributes:
        name: The key (``batch_size``).
        type: The accepted type, a tuple of them (``None`` in it allows null), or
            ``None`` for any value. ``int`` refuses ``true``; ``float`` takes ints.
        default: Filled in beneath the user's config when it leaves the key out, so the
            recipe reads ``cfg.<name>``; :data:`NO_DEFAULT` fills nothing (the recipe
            reads ``cfg.get(name)``).
        required: The config must set it (a required key has no default).
        help: One line for ``tunesmith run RECIPE --help``.
        check: ``f(value) -> problem or None`` for a non-null value of the right type;
            the problem reads after the key's name: ``"must be at least 1, not 0"``
            (see :func:`at_least`, :func:`greater_than`, :func:`in_range`).
    """

    name: str
    type: Any = None
    default: Any = NO_DEFAULT
    required: bool = False
    help: str = ""
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.required and self.has_default:
            raise ValueError(f"key {self.name!r} is required, so it cannot have a default")
        if self.has_default and not is_instance(self.default, self.types):
            raise ValueError(
                f"key {self.name!r}: default {self.default!r} is not {type_text(self.types)}"
            )

    @property
    def types(self) -> tuple[type, ...]:
        """The accepted types as a tuple (``NoneType`` for null); empty for any."""
        return _normalise(self.type)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this key, as one line, or ``None``."""
        if not is_instance(value, self.types):
            hint = _yaml_float_hint(value) if float in self.types else ""
            return f"'{self.name}' must be {type_text(self.types)}, not {value!r}{hint}"
        if value is None or self.check is None:
            return None
        try:
            problem = self.check(value)
        except (TypeError, ValueError):
            problem = f"has an invalid value {value!r}"
        return f"'{self.name}' {problem}" if problem else None

    def describe(self) -> tuple[str, str]:
        """``(type and range, default)`` as ``--help`` shows them."""
        text = type_text(tuple(t for t in self.types if t is not type(None)))
        limits = getattr(self.check, "text", "")
        if limits:
            text = f"{text} {limits}"
        if type(None) in self.types:
            text += " or null"
        if self.required:
            return text, "required"
        if not self.has_default:
            return text, "unset"
        return text, yaml_text(self.default)


def yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class RecipeSchema:
    """Every top-level key a recipe reads.

    Attributes:
        keys: The :class:`Key` records, in the order ``--help`` lists them.
        open: Accept keys it does not list (with the types the core's recipes give
            well-known names such as ``batch_size``), as ``Recipe(keys=None)`` did.
        refused: Keys users tend to write that the recipe does not read, each with why
            and what to do instead (shown instead of "unknown key").
    """

    keys: tuple[Key, ...] = ()
    open: bool = False
    refused: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "refused", dict(self.refused))
        seen: set[str] = set()
        for key in self.keys:
            if not isinstance(key, Key):
                raise TypeError(f"RecipeSchema takes Key records, not {key!r}")
            if key.name in seen:
                raise ValueError(f"key {key.name!r} appears twice in the schema")
            seen.add(key.name)
        both = seen & self.refused.keys()
        if both:
            raise ValueError(f"keys {sorted(both)} are both accepted and refused")

    @classmethod
    def from_keys(cls, keys: Iterable[str] | None, required: Iterable[str] = ()) -> RecipeSchema:
        """The permissive schema of a plugin-API-1 ``Recipe(keys=..., required=...)``.

        Each name gets the type and range the core's recipes give it (``batch_size``:
        int >= 1), no default; ``keys=None`` gives an open schema.
        """
        from tunesmith.recipes import well_known_key  # the core's recipes own those types

        required = frozenset(required)
        names = sorted(keys) if keys is not None else []
        names += sorted(required - set(names))
        derived = []
        for name in names:
            known = well_known_key(name)
            derived.append(
                Key(
                    name,
                    known.type if known else None,
                    required=name in required,
                    help=known.help if known else "",
                    check=known.check if known else None,
                )
            )
        return cls(tuple(derived), open=keys is None)

    def __contains__(self, name: object) -> bool:
        return any(key.name == name for key in self.keys)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, name: str) -> Key | None:
        return next((key for key in self.keys if key.name == name), None)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(key.name for key in self.keys)

    @property
    def required(self) -> frozenset[str]:
        return frozenset(key.name for key in self.keys if key.required)

    def defaults(self) -> dict[str, Any]:
        """``{name: default}`` of every key that has one (fresh copies)."""
        return {k.name: copy.deepcopy(k.default) for k in self.keys if k.has_default}

    def with_defaults(self, cfg: Any) -> Any:
        """A copy of the ``DictConfig`` ``cfg`` with every missing key's default filled in
        (a mapping default also fills the missing keys of the user's mapping)."""
        from omegaconf import DictConfig, OmegaConf

        cfg = cfg.copy()
        for name, default in self.defaults().items():
            if name not in cfg:
                cfg[name] = default
            elif (
                isinstance(default, dict)
                and not OmegaConf.is_interpolation(cfg, name)
                and isinstance(cfg[name], DictConfig)
            ):
                cfg[name] = OmegaConf.merge(default, cfg[name])
        return cfg

    def extend(self, *keys: Key, refused: Mapping[str, str] | None = None) -> RecipeSchema:
        """This schema plus ``keys`` (a key with an existing name replaces it)."""
        new = {key.name: key for key in keys}
        merged = [new.pop(key.name, key) for key in self.keys] + list(new.values())
        still_refused = {k: v for k, v in self.refused.items() if k not in {k.name for k in keys}}
        return RecipeSchema(tuple(merged), self.open, {**still_refused, **(refused or {})})


def _limit(text: str, ok: Callable[[Any], bool], phrase: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if ok(value) else f"must be {phrase}, not {value!r}"

    check.text = text  # type: ignore[attr-defined]
    return check


def at_least(minimum: float) -> Callable[[Any], str | None]:
    """A :attr:`Key.check`: the value is ``>= minimum``."""
    return _limit(f">= {minimum}", lambda v: v >= minimum, f"at least {minimum}")


def greater_than(bound: float) -> Callable[[Any], str | None]:
    """A :attr:`Key.check`: the value is ``> bound``."""
    return _limit(f"> {bound}", lambda v: v > bound, f"greater than {bound}")


def in_range(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[Any], str | None]:
    """A :attr:`Key.check`: the value lies between ``low`` and ``high`` (inclusive unless
    ``low_open`` / ``high_open``)."""
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def ok(v: Any) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return _limit(f"in {interval}", ok, f"in {interval}")
