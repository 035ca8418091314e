"""Finding, loading and overriding YAML configs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunesmith.errors import ConfigError, NotFoundError, did_you_mean
from tunesmith.registry import get_registry

__all__ = ["apply_overrides", "find_config", "load_config", "parse_value"]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``lr: 2e-5`` as a string; configs (torchtune's too) mean a float."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)[eE][+-]?\d+$"),
    list("+-.0123456789"),
)


def find_config(name_or_path: str | Path) -> tuple[Path, str | None]:
    """Resolve a config argument to ``(path, recipe)``.

    A path that exists wins; otherwise the name of a shipped config (``recipe`` is
    then the recipe it was shipped for; ``None`` for a file).

    Raises:
        NotFoundError: neither a file nor a registered config.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, None
    name = str(name_or_path)
    registry = get_registry()
    if (
        name.endswith((".yaml", ".yml"))
        and name.rsplit(".", 1)[0] not in registry.tables["configs"]
    ):
        raise NotFoundError(
            f"config file {path} does not exist: check the path, or run `tunesmith ls`"
        )
    config = registry.get("configs", name.removesuffix(".yaml").removesuffix(".yml"))
    return config.path, config.recipe


def load_config(
    name_or_path: str | Path, overrides: Iterable[str] = (), *, defaults: Any = None
) -> DictConfig:
    """Load a YAML config, lay it over ``defaults`` and apply command-line overrides."""
    path, _ = find_config(name_or_path)
    try:
        loaded = yaml.load(path.read_text(), Loader=_YamlLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where} is not valid YAML ({exc.__class__.__name__}): fix the syntax"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys to values, not {type(loaded).__name__}"
        )
    cfg = OmegaConf.create(loaded)
    if defaults:
        cfg = OmegaConf.merge(OmegaConf.create(dict(defaults)), cfg)
    return apply_overrides(cfg, overrides)


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it, plus ``1e-4``-style floats YAML 1.1 misses."""
    if _NUMBER.match(text.strip()):
        number = float(text)
        return int(number) if re.fullmatch(r"[+-]?\d+", text.strip()) else number
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _split_key(key: str) -> list[str]:
    return [part for part in key.split(".") if part]


def _walk(cfg: DictConfig, parts: list[str], full_key: str) -> Any:
    """The node holding the last part of ``parts``; errors on a missing parent."""
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, DictConfig) or part not in node:
            prefix = ".".join(parts[:i]) or "the config"
            choices = list(node.keys()) if isinstance(node, DictConfig) else []
            raise ConfigError(
                f"cannot override '{full_key}': '{part}' is not a key of {prefix}"
                f"{did_you_mean(part, choices)}"
            )
        node = node[part]
    return node


def _apply_one(cfg: DictConfig, override: str) -> None:
    if override.startswith("~"):
        parts = _split_key(override[1:])
        parent = _walk(cfg, parts, override[1:])
        if not isinstance(parent, DictConfig) or parts[-1] not in parent:
            raise ConfigError(f"cannot delete '{override[1:]}': no such key in the config")
        del parent[parts[-1]]
        return
    key, sep, text = override.partition("=")
    if not sep or not key.strip("+"):
        raise ConfigError(
            f"override '{override}' is not of the form key=value (or ~key to delete, +key=value to add)"
        )
    add = key.startswith("+")
    parts = _split_key(key.lstrip("+"))
    full_key = ".".join(parts)
    parent = _walk(cfg, parts, full_key)
    leaf = parts[-1]
    value = parse_value(text)
    if isinstance(parent, ListConfig):
        if not leaf.isdigit() or int(leaf) >= len(parent):
            raise ConfigError(f"cannot override '{full_key}': index {leaf} is outside the list")
        parent[int(leaf)] = value
        return
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"cannot override '{full_key}': its parent is not a mapping")
    if leaf not in parent and not add:
        raise ConfigError(
            f"cannot override '{full_key}': no such key{did_you_mean(leaf, list(parent.keys()))}"
            f" (to add a new key, write +{full_key}={text})"
        )
    parent[leaf] = value


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply ``key=value``, ``a.b.c=value``, ``+new=value`` and ``~key`` overrides in order.

    Values are parsed as YAML (``lr=1e-4``, ``modules=[q_proj,v_proj]``, ``x=null``).
    Overriding a key that does not exist is an error; ``+key=value`` adds one.
    """
    cfg = cfg.copy()
    for override in overrides:
        try:
            _apply_one(cfg, override)
        except OmegaConfBaseException as exc:
            reason = str(exc.msg).splitlines()[0]  # drop OmegaConf's full_key/object_type lines
            raise ConfigError(f"cannot apply override '{override}': {reason}") from None
    return cfg
