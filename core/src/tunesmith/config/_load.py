"""Finding, loading and overriding YAML configs."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunesmith._components import Recipe
from tunesmith.errors import ConfigError, NotFoundError, did_you_mean
from tunesmith.registry import get_registry

__all__ = [
    "apply_overrides",
    "config_source",
    "find_config",
    "load_config",
    "load_recipe_config",
    "parse_value",
]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``lr: 2e-5`` as a string; configs (torchtune's too) mean a float."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)[eE][+-]?\d+$"),
    list("+-.0123456789"),
)


def config_source(name_or_path: str | Path) -> tuple[str, str, str | None]:
    """``(yaml_text, where, recipe)`` of a config argument: a file's contents (``recipe``
    ``None``), or a shipped config's YAML (read or rendered) and the recipe it is for.

    Raises:
        NotFoundError: neither a file nor a registered config.
        ConfigError: the file cannot be read.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path} ({exc}): check the file") from None
    find_config(name_or_path)  # raises with the right message
    config = get_registry().get("configs", _shipped_name(str(name_or_path)))
    return config.read_text(), f"config {config.name}", config.recipe


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
    name = _shipped_name(str(name_or_path))
    if (
        str(name_or_path).endswith((".yaml", ".yml"))
        and name not in get_registry().tables["configs"]
    ):
        raise NotFoundError(
            f"config file {path} does not exist: check the path, or run `tunesmith ls`"
        )
    if name.endswith("/evaluation") and name not in get_registry().tables["configs"]:
        raise NotFoundError(
            f"unknown config '{name}': tunesmith ships one evaluation config for every family, "
            "eleuther_evaluation (the model comes from checkpointer.checkpoint_dir): "
            "tunesmith run eleuther_eval --config eleuther_evaluation "
            "checkpointer.checkpoint_dir=<your model>"
        )
    config = get_registry().get("configs", name)
    return config.path, config.recipe


def _shipped_name(name: str) -> str:
    """The name a shipped config is registered under, torchtune's names for the
    distributed configs included: torchtune calls ``llama3_2/1B_lora`` what tunesmith
    ships as ``llama3_2/1B_lora_distributed``."""
    configs = get_registry().tables["configs"]
    name = name.removesuffix(".yaml").removesuffix(".yml")
    if name not in configs and f"{name}_distributed" in configs:
        return f"{name}_distributed"
    return name


_INTERPOLATION_FIX = "write ${key} or ${key.subkey} (\\${ for a literal ${)"


def _check_interpolations(value: Any, where: str, problems: list[str]) -> Any:
    """``value`` with each malformed ``${...}`` reported and escaped, so that loading goes
    on and every other problem is found too."""
    if isinstance(value, dict):
        return {
            k: _check_interpolations(v, f"{where}.{k}" if where else str(k), problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_check_interpolations(v, f"{where}.{i}", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            OmegaConf.create({"value": value})
        except OmegaConfBaseException:
            problems.append(
                f"'{where}' has a malformed interpolation {value!r}: {_INTERPOLATION_FIX}"
            )
            return value.replace("${", "\\${")
    return value


def _read(name_or_path: str | Path, problems: list[str]) -> dict[str, Any]:
    text, path, _ = config_source(name_or_path)
    try:
        loaded = yaml.load(text, Loader=_YamlLoader) or {}
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
    return _check_interpolations(loaded, "", problems)


def _create(raw: dict[str, Any]) -> DictConfig:
    """``OmegaConf.create(raw)``, its parse errors as one ConfigError line.

    ``_check_interpolations`` has escaped every value it could not parse; still, in one
    full-suite CI run a fuzzed value it had accepted was refused here (not reproduced
    alone), so this parse is guarded too.
    """
    try:
        return OmegaConf.create(raw)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "a value"
        raise ConfigError(f"'{key}' has a malformed interpolation: {_INTERPOLATION_FIX}") from None


def _raise(problems: list[str]) -> None:
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        from tunesmith.config._validate import format_problems

        raise ConfigError(format_problems(problems))


def load_config(
    name_or_path: str | Path, overrides: Iterable[str] = (), *, defaults: Any = None
) -> DictConfig:
    """Load a YAML config, lay it over ``defaults`` and apply command-line overrides.

    Raises:
        ConfigError: invalid YAML, a malformed ``${...}``, or an override that does not
            apply (all of them, one per line).
    """
    problems: list[str] = []
    cfg = _create(_read(name_or_path, problems))
    if defaults:
        cfg = OmegaConf.merge(OmegaConf.create(dict(defaults)), cfg)
    cfg = apply_overrides(cfg, overrides, problems=problems)
    _raise(problems)
    return cfg


def load_recipe_config(
    name_or_path: str | Path, recipe: Recipe, overrides: Iterable[str] = ()
) -> DictConfig:
    """The config ``recipe`` runs with, as ``tunesmith run`` and ``validate`` build it.

    Layers, lowest first: the schema's defaults, the recipe's (alias) ``defaults``, the
    file, the overrides. Any key of the schema may be overridden without ``+``, even
    when the file leaves it out; deleting one (``~key``) brings its default back. The
    result is validated, and top-level keys that only serve as ``${...}`` variables
    (``base_dir``) are resolved into the values that use them and dropped.

    Raises:
        ConfigError: every problem (bad overrides, malformed or broken ``${...}``,
            unknown or missing keys, wrong types and ranges, bad component arguments),
            one per line, each with a fix.
    """
    from tunesmith.config._validate import _problems, config_variables, format_problems

    schema = recipe.schema
    assert schema is not None  # Recipe derives one
    problems: list[str] = []
    raw = _read(name_or_path, problems)
    overrides = list(overrides)
    torchtune = _torchtune_overrides(raw, overrides)
    if torchtune:
        # Overrides name torchtune's keys too (model.lora_rank=16): apply them first.
        raw = _from_torchtune(raw, overrides, recipe, schema.names, problems)
        overrides = []
    cfg = _create(raw)
    if recipe.defaults:
        cfg = OmegaConf.merge(OmegaConf.create(dict(recipe.defaults)), cfg)
    # Before the overrides, so they can set a default's keys (prompt.user=...); after
    # them, so that ~key brings a key's default back.
    cfg = schema.with_defaults(cfg)
    cfg = apply_overrides(cfg, overrides, known=schema.names, problems=problems)
    cfg = schema.with_defaults(cfg)
    problems += _problems(cfg, recipe)
    if problems:
        raise ConfigError(format_problems(problems))
    variables = config_variables(cfg, schema)
    if variables:
        _inline(cfg, OmegaConf.to_container(cfg, resolve=False), variables)
        for name in variables:
            del cfg[name]
    return cfg


def _torchtune_overrides(raw: dict[str, Any], overrides: list[str]) -> bool:
    from tunesmith.config._torchtune import is_torchtune_config

    return is_torchtune_config(raw) or any("=torchtune." in o for o in overrides)


def _from_torchtune(
    raw: dict[str, Any],
    overrides: list[str],
    recipe: Recipe,
    known: Collection[str],
    problems: list[str],
) -> dict[str, Any]:
    """A torchtune config, overrides applied, in tunesmith's schema; each translation
    is printed as one line (by the launching process only, under torchrun)."""
    import os
    import sys

    from tunesmith.config._torchtune import translate_torchtune_config

    # As torchtune's own command line: key=value sets a key whether the file has it or not.
    overrides = [o if o.startswith(("~", "+")) else f"+{o}" for o in overrides]
    cfg = apply_overrides(_create(raw), overrides, known=known, problems=problems)
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    translation = translate_torchtune_config(plain, recipe=recipe.name, known=known)
    if not os.environ.get("LOCAL_RANK"):
        for line in translation.notes:
            print(f"torchtune config: {line}", file=sys.stderr)
    if translation.problems:
        problems += translation.problems
    if problems:
        from tunesmith.config._validate import format_problems

        raise ConfigError("this torchtune config does not translate — " + format_problems(problems))
    return translation.config


def _inline(node: Any, raw: Any, variables: frozenset[str], top: bool = True) -> None:
    """Replace each ``${...}`` that mentions one of ``variables`` by its value."""
    items = raw.items() if isinstance(raw, dict) else enumerate(raw)
    for key, value in items:
        if top and key in variables:
            continue
        if isinstance(value, (dict, list)):
            _inline(node[key], value, variables, top=False)
        elif isinstance(value, str) and any(
            re.search(rf"\$\{{\s*{re.escape(v)}\b", value) for v in variables
        ):
            node[key] = node[key]


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


def _walk(cfg: DictConfig, parts: list[str], full_key: str, known: Collection[str] = ()) -> Any:
    """The node holding the last part of ``parts``; errors on a missing parent."""
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, DictConfig) or part not in node:
            prefix = ".".join(parts[:i]) or "the config"
            choices = list(node.keys()) if isinstance(node, DictConfig) else []
            if i == 0:
                choices += sorted(set(known) - set(choices))
            raise ConfigError(
                f"cannot override '{full_key}': '{part}' is not a key of {prefix}"
                f"{did_you_mean(part, choices)}"
            )
        node = node[part]
    return node


def _component_arguments(node: Any, key: str) -> list[str]:
    """The keyword arguments the ``_component_`` of a block accepts by name (so
    ``peft.lora_rank=16`` needs no ``+`` where the block leaves lora_rank out); empty
    when the block names no component, or one that cannot be resolved."""
    import inspect

    if not isinstance(node, DictConfig) or OmegaConf.is_interpolation(node, "_component_"):
        return []
    name = node.get("_component_")
    if not isinstance(name, str):
        return []
    from tunesmith.config._instantiate import resolve_component
    from tunesmith.errors import TunesmithError

    try:
        parameters = inspect.signature(resolve_component(name, key=key)).parameters.values()
    except (TunesmithError, ImportError, TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in kinds and p.name != "self"]


def _apply_one(cfg: DictConfig, override: str, known: Collection[str]) -> None:
    if override.startswith("~"):
        parts = _split_key(override[1:])
        if not parts:
            raise ConfigError(f"override '{override}' names no key: write ~key to delete one")
        parent = _walk(cfg, parts, override[1:], known)
        if not isinstance(parent, DictConfig) or parts[-1] not in parent:
            raise ConfigError(f"cannot delete '{override[1:]}': no such key in the config")
        del parent[parts[-1]]
        return
    key, sep, text = override.partition("=")
    if not sep or not _split_key(key.lstrip("+")):
        raise ConfigError(
            f"override '{override}' is not of the form key=value (or ~key to delete, +key=value to add)"
        )
    add = key.startswith("+")
    parts = _split_key(key.lstrip("+"))
    full_key = ".".join(parts)
    top = parts[0]
    if (
        len(parts) > 1
        and top in known
        and (top not in cfg or (not OmegaConf.is_interpolation(cfg, top) and cfg[top] is None))
    ):
        cfg[top] = {}  # a block of the recipe's schema that the file leaves out: start it
        add = True  # whatever goes into it is new (validation checks the block's keys)
    parent = _walk(cfg, parts, full_key, known)
    leaf = parts[-1]
    malformed: list[str] = []
    value = _check_interpolations(parse_value(text), full_key, malformed)
    if malformed:
        raise ConfigError(f"override {override!r}: {malformed[0]}")
    if isinstance(parent, ListConfig):
        if not leaf.isdigit() or int(leaf) >= len(parent):
            raise ConfigError(f"cannot override '{full_key}': index {leaf} is outside the list")
        parent[int(leaf)] = value
        return
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"cannot override '{full_key}': its parent is not a mapping")
    schema_key = parent is cfg and leaf in known
    arguments = _component_arguments(parent, parts[-2]) if len(parts) > 1 else []
    if leaf not in parent and not add and not schema_key and leaf not in arguments:
        choices = list(parent.keys()) + [a for a in arguments if a not in parent]
        if parent is cfg:
            choices += sorted(set(known) - set(choices))
        raise ConfigError(
            f"cannot override '{full_key}': no such key{did_you_mean(leaf, choices)}"
            f" (to add a new key, write +{full_key}={text})"
        )
    parent[leaf] = value


def apply_overrides(
    cfg: DictConfig,
    overrides: Iterable[str],
    *,
    known: Collection[str] = (),
    problems: list[str] | None = None,
) -> DictConfig:
    """Apply ``key=value``, ``a.b.c=value``, ``+new=value`` and ``~key`` overrides in order.

    Values are parsed as YAML (``lr=1e-4``, ``modules=[q_proj,v_proj]``, ``x=null``).
    Overriding a key that does not exist is an error; ``+key=value`` adds one. Within a
    component block, an argument its ``_component_`` takes by name counts as existing
    (``peft.lora_rank=16``, ``optimizer.weight_decay=0.1``).

    Args:
        cfg: The config; it is not modified (a copy is returned).
        overrides: The overrides, applied in order.
        known: Top-level keys that may be set without ``+`` even when absent (the
            recipe's schema); ``known.x=1`` also starts an absent or null ``known`` block.
        problems: Collect each failing override's message here and go on with the
            next, instead of raising at the first.

    Raises:
        ConfigError: an override does not apply (unless ``problems`` is given).
    """
    cfg = cfg.copy()
    for override in overrides:
        try:
            try:
                _apply_one(cfg, override, known)
            except OmegaConfBaseException as exc:
                reason = str(exc.msg).splitlines()[0]  # drop OmegaConf's full_key/object_type lines
                raise ConfigError(f"cannot apply override '{override}': {reason}") from None
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return cfg
