"""Shipped configs without copies: one template per recipe kind, one row per model size.

A family plugin keeps ``configs/<kind>.yaml`` Jinja templates (``full_single_device``,
``lora_single_device``, ...) and a table of sizes; :func:`render_configs` makes a
:class:`tunesmith.Config` for every size x kind, named ``<family>/<size>_<kind>``,
holding the complete rendered YAML (what ``tunesmith ls``/``cp``/``cat`` show).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith._components import Config
from tunesmith.errors import PluginError

__all__ = ["render_configs"]


def render_configs(
    *,
    family: str,
    sizes: Mapping[str, Mapping[str, Any]],
    templates: str | Path,
    recipes: Mapping[str, str],
    requires: Mapping[str, str] | None = None,
    kinds: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Config]:
    """A :class:`tunesmith.Config` per size and recipe kind.

    Each template is rendered with the size's row plus ``family``, ``size``, ``kind``,
    ``name`` (``<family>/<size>_<kind>``) and ``recipe``; a row names at least the
    ``model`` builder. Templates open with the comment showing the command that runs
    the config (``tunesmith run {{ recipe }} --config {{ name }} ...``).

    Args:
        family: Name prefix (``"qwen2_5"``).
        sizes: Size -> template variables (``{"0.5B": {"model": "qwen2_5_0_5b", ...}}``).
        templates: Directory holding ``<kind>.yaml`` Jinja templates.
        recipes: Kind -> the recipe its configs are for.
        requires: Kind -> the distribution that registers that recipe when another
            plugin does (``{"lora_single_device": "tunesmith-lora"}``).
        kinds: Size -> the kinds it ships (default: every kind in ``recipes``).

    Raises:
        PluginError: a template is missing, does not render, or does not open with a
            comment.
    """
    import jinja2

    directory = Path(templates)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    configs = []
    for size, row in sizes.items():
        for kind in (kinds or {}).get(size, tuple(recipes)):
            name = f"{family}/{size}_{kind}"
            variables = {
                **row, "family": family, "size": size, "kind": kind, "name": name,
                "recipe": recipes[kind],
            }  # fmt: skip
            try:
                text = environment.get_template(f"{kind}.yaml").render(**variables)
            except jinja2.TemplateError as exc:
                raise PluginError(
                    f"config template {directory / (kind + '.yaml')} does not render for "
                    f"{name}: {exc}"
                ) from None
            if not text.startswith("#"):
                raise PluginError(
                    f"config {name} does not open with a comment showing how to run it: "
                    f"start {directory / (kind + '.yaml')} with one"
                )
            configs.append(
                Config(
                    name=name,
                    recipe=recipes[kind],
                    path=directory / f"{kind}.yaml",
                    text=text,
                    description=f"{family} {size}: {recipes[kind].replace('_', ' ')}",
                    requires=(requires or {}).get(kind),
                )
            )
    return configs
