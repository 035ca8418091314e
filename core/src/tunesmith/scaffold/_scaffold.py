"""Rendering a plugin package from the templates in ``templates/``.

Each kind's files are ``templates/<kind>/**.j2``; ``templates/common/`` holds the
pieces every kind shares (``pyproject.toml``, the README skeleton, ``__init__.py``
and the ``plugin.py`` header, which the kinds extend) and is used wherever a kind has
no file of the same path. ``PACKAGE`` and ``NAME`` in a template's path become the
import package and the plugin name.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import ConfigError

__all__ = ["PLUGIN_KINDS", "check_name", "new_plugin", "render_plugin"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_SUFFIX = ".j2"


@dataclass(frozen=True)
class _Kind:
    """What differs between kinds outside their own template files."""

    summary: str  # completes "A tunesmith plugin that adds ..."
    dependencies: tuple[str, ...] = ()  # beyond tunesmith; "# ..." lines are comments
    test_dependencies: tuple[str, ...] = ()  # beyond pytest
    package_data: str | None = None  # glob of the non-Python files the package ships
    tunesmith_extra: str = ""  # e.g. "[quantize]"


_LORA = ("# its LoRA configs run tunesmith-lora's recipes", "tunesmith-lora")
# The kit checks PEFT methods and quantizers on a tiny model of an installed family.
_TINY_FAMILY = ("tunesmith-llama",)

_KINDS = {
    "family": _Kind(
        "a model family: a decoder on tunesmith.modules, its checkpoint adapter, a model "
        "builder and shipped configs",
        dependencies=_LORA,
        package_data="templates/*.yaml",
    ),
    "peft": _Kind(
        "a PEFT method: rank-stabilised LoRA (rsLoRA) with adapters in PEFT's format",
        test_dependencies=_TINY_FAMILY,
    ),
    "recipe": _Kind(
        "a recipe that counts the tokens a dataset gives a tokenizer, and its config",
        package_data="configs/*.yaml",
    ),
    "dataset": _Kind("a dataset of question/answer rows from any file or Hub dataset"),
    "tokenizer": _Kind("a tokenizer: any tokenizer.json with a Zephyr-style chat format"),
    "evaluator": _Kind("an evaluator: the perplexity of a model on a list of texts"),
    "quantizer": _Kind(
        "a quantizer: int8 weights with a scale per group of input columns (torchao), "
        "the output head kept in full precision",
        test_dependencies=_TINY_FAMILY,
        tunesmith_extra="[quantize]",
    ),
}

#: The kinds ``tunesmith new-plugin --kind`` accepts.
PLUGIN_KINDS = tuple(_KINDS)


def _suggest(name: str) -> str:
    fixed = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    fixed = re.sub(r"_+", "_", fixed).removeprefix("tunesmith_")
    fixed = fixed.lstrip("0123456789_")
    if not fixed:
        return "acme"
    return f"{fixed}_plugin" if keyword.iskeyword(fixed) else fixed


def check_name(name: str) -> None:
    """Refuse a plugin name that cannot name the package ``tunesmith_NAME``.

    Raises:
        ConfigError: ``name`` is not a lowercase Python identifier (the message
            suggests one), or it names a plugin or package that is already installed.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ConfigError(
            f"plugin name {name!r} is not a lowercase Python identifier (letters, digits and "
            f"underscores, starting with a letter): try {_suggest(name)!r}"
        )
    if name.endswith("_") or "__" in name:
        raise ConfigError(f"plugin name {name!r} has stray underscores: try {_suggest(name)!r}")
    from importlib.metadata import entry_points

    if any(ep.name == name for ep in entry_points(group="tunesmith")):
        raise ConfigError(
            f"a plugin named {name!r} is already installed (see `tunesmith plugins`): choose "
            "another name"
        )
    if importlib.util.find_spec(f"tunesmith_{name}") is not None:
        raise ConfigError(f"a package tunesmith_{name} is already importable: choose another name")


def _compatible(version: str) -> str:
    """A version range compatible with ``version`` (same minor release before 1.0)."""
    from packaging.version import Version

    v = Version(version)
    if v.major == 0:
        return f">={v.major}.{v.minor},<{v.major}.{v.minor + 1}"
    return f">={v.major}.{v.minor},<{v.major + 1}"


def _import_order(names: list[str]) -> list[str]:
    """``names`` in the order isort (and ruff's ``I`` rules) want them in one import:
    constants, then classes, then the rest, each alphabetically."""

    def key(name: str) -> tuple[int, str]:
        kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
        return kind, name.lower()

    return sorted(names, key=key)


_FROM_IMPORT = re.compile(r"^( *)from (\S+) import (?:\(\n(.*?),?\n\1\)|([^(\n]+))$", re.M | re.S)


def _tidy_imports(text: str, package: str, width: int = 100) -> str:
    """Sort and wrap the ``from <package>... import`` statements of generated code as
    isort does: their names and length depend on the plugin's name."""

    def tidy(match: re.Match[str]) -> str:
        indent, module, vertical, inline = match.groups()
        if module.split(".")[0] != package:
            return match.group(0)
        names = _import_order([n.strip() for n in (vertical or inline).split(",") if n.strip()])
        line = f"{indent}from {module} import {', '.join(names)}"
        if inline is not None and len(line) <= width:
            return line
        body = "".join(f"{indent}    {n},\n" for n in names)
        return f"{indent}from {module} import (\n{body}{indent})"

    return _FROM_IMPORT.sub(tidy, text)


def _variables(name: str, kind: str) -> dict[str, object]:
    from tunesmith import __version__

    spec = _KINDS[kind]
    compatible = _compatible(__version__)
    pinned = [d if d.startswith("#") else f"{d}{compatible}" for d in spec.dependencies]
    distribution = f"tunesmith-{name.replace('_', '-')}"
    return {
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "package": f"tunesmith_{name}",
        "distribution": distribution,
        "kind": kind,
        "summary": spec.summary,
        "dependencies": [f"tunesmith{spec.tunesmith_extra}{compatible}", *pinned],
        "test_dependencies": ["pytest>=8", *(f"{d}{compatible}" for d in spec.test_dependencies)],
        "package_data": spec.package_data,
        "tunesmith_version": __version__,
    }


def _sources(kind: str) -> dict[str, str]:
    """Output path template -> template name: the kind's files over the common ones."""
    sources: dict[str, str] = {}
    for layer in ("common", kind):
        root = _TEMPLATES / layer
        for path in sorted(root.rglob(f"*{_SUFFIX}")):
            relative = path.relative_to(root).as_posix()
            sources[relative.removesuffix(_SUFFIX)] = f"{layer}/{relative}"
    return sources


def render_plugin(name: str, kind: str) -> dict[str, str]:
    """The files of a new plugin package, rendered in memory.

    Args:
        name: The plugin name (entry point ``name``, package ``tunesmith_<name>``).
        kind: One of :data:`PLUGIN_KINDS`.

    Returns:
        Path inside ``tunesmith-<name>/`` -> file text.

    Raises:
        ConfigError: an invalid name or an unknown kind.
    """
    import jinja2

    if kind not in _KINDS:
        from tunesmith.errors import did_you_mean

        raise ConfigError(
            f"unknown plugin kind {kind!r}{did_you_mean(kind, _KINDS)}: choose one of "
            f"{', '.join(PLUGIN_KINDS)}"
        )
    check_name(name)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Not Jinja's {{ }}: a family's config templates are Jinja themselves.
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
    variables = _variables(name, kind)
    package = str(variables["package"])
    files = {}
    for target, source in _sources(kind).items():
        path = target.replace("PACKAGE", package).replace("NAME", name)
        text = environment.get_template(source).render(**variables)
        files[path] = _tidy_imports(text, package) if path.endswith(".py") else text
    return files


def new_plugin(name: str, *, kind: str, output_dir: str | os.PathLike = ".") -> list[Path]:
    """Write a new plugin package ``tunesmith-<name>/`` under ``output_dir``.

    Everything is rendered first and written to a temporary folder beside the target,
    then renamed into place: an error leaves nothing behind.

    Returns:
        The files written.

    Raises:
        ConfigError: an invalid name or kind, or a target that exists and is not empty.
    """
    files = render_plugin(name, kind)
    parent = Path(output_dir).expanduser()
    target = parent / f"tunesmith-{name.replace('_', '-')}"
    if target.is_file() or (target.is_dir() and any(target.iterdir())):
        raise ConfigError(
            f"{target} already exists and is not empty: choose another --output-dir or name"
        )
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the package folder
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.is_dir():
            target.rmdir()  # empty: checked above
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / relative for relative in files]
