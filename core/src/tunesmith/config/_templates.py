"""Shipped configs without copies: one template per recipe kind, one row per model size.

The core ships a Jinja template per fine-tuning kind (:data:`FINETUNE_KINDS`:
``full_single_device``, ``lora_single_device``, ...; ``tunesmith/config/templates/``),
so a family plugin needs only a table of sizes: :func:`render_configs` makes a
:class:`tunesmith.Config` for every size x kind, named ``<family>/<size>_<kind>``,
holding the complete rendered YAML (what ``tunesmith ls``/``cp``/``cat`` show). A
plugin may add kinds, or replace one, with templates of its own (which can
``{% include "_finetune.yaml" %}``, the shared body).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith._components import Config
from tunesmith.errors import PluginError

if TYPE_CHECKING:
    import jinja2

__all__ = ["CORE_TEMPLATES", "FINETUNE_KINDS", "render_config_table", "render_configs"]

#: The core's templates (``_finetune.yaml`` and one file per kind of :data:`FINETUNE_KINDS`).
CORE_TEMPLATES = Path(__file__).parent / "templates"

#: Fine-tuning kind -> the recipe its configs run (the LoRA ones come with tunesmith-lora).
FINETUNE_KINDS = {
    "full_single_device": "full_finetune_single_device",
    "full_distributed": "full_finetune_distributed",
    "lora_single_device": "lora_finetune_single_device",
    "lora_distributed": "lora_finetune_distributed",
    "qlora_single_device": "qlora_finetune_single_device",
    "qlora_distributed": "lora_finetune_distributed",
}


def render_configs(
    *,
    family: str,
    sizes: Mapping[str, Mapping[str, Any]],
    templates: str | Path | None = None,
    recipes: Mapping[str, str] = FINETUNE_KINDS,
    requires: Mapping[str, str] | None = None,
    kinds: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Config]:
    """A :class:`tunesmith.Config` per size and recipe kind.

    Each template is rendered with the size's row plus ``family``, ``size``, ``kind``,
    ``name`` (``<family>/<size>_<kind>``) and ``recipe``. For the core's templates a
    row names ``title``, ``model`` (a registered builder, or ``auto``) and ``repo``
    (its Hub repository); the other variables it may set are listed at the top of
    ``_finetune.yaml`` (``lora_rank``, ``lr_lora``, ``batch_size``, ...). A row's
    ``by_kind`` maps a kind to variables for that kind only
    (``{"by_kind": {"lora_distributed": {"lr": "2.0e-5"}}}``).
    Templates open with the comment showing the command that runs the config.

    Args:
        family: Name prefix (``"qwen2_5"``).
        sizes: Size -> template variables (``{"0.5B": {"model": "qwen2_5_0_5b", ...}}``),
            ``by_kind`` among them.
        templates: A directory of the plugin's own ``<kind>.yaml`` templates, searched
            before the core's; ``None``: the core's only.
        recipes: Kind -> the recipe its configs are for (default :data:`FINETUNE_KINDS`).
        requires: Kind -> the distribution that registers that recipe when another
            plugin does (``{"lora_single_device": "tunesmith-lora"}``).
        kinds: Size -> the kinds it ships (default: every kind in ``recipes``).

    Raises:
        PluginError: a template is missing, does not render, or does not open with a
            comment.
    """
    import jinja2

    searched = [Path(templates)] if templates is not None else []
    searched.append(CORE_TEMPLATES)
    environment = _environment(tuple(str(d) for d in searched))
    configs = []
    for size, row in sizes.items():
        for kind in (kinds or {}).get(size, tuple(recipes)):
            name = f"{family}/{size}_{kind}"
            variables = {
                **row, **row.get("by_kind", {}).get(kind, {}), "family": family,
                "size": size, "kind": kind, "name": name, "recipe": recipes[kind],
            }  # fmt: skip
            try:
                template = environment.get_template(f"{kind}.yaml")
                text = template.render(**variables)
            except jinja2.TemplateError as exc:
                raise PluginError(
                    f"config template {kind}.yaml (searched in {', '.join(map(str, searched))}) "
                    f"does not render for {name}: {exc}"
                ) from None
            if not text.startswith("#"):
                raise PluginError(
                    f"config {name} does not open with a comment showing how to run it: "
                    f"start {template.filename} with one"
                )
            configs.append(
                Config(
                    name=name,
                    recipe=recipes[kind],
                    path=Path(template.filename or kind),
                    text=text,
                    description=f"{family} {size}: {recipes[kind].replace('_', ' ')}",
                    requires=(requires or {}).get(kind),
                )
            )
    return configs


@functools.cache
def _environment(searched: tuple[str, ...]) -> jinja2.Environment:
    """One environment per search path, so each template compiles once per process:
    loading the registry renders every shipped config, and compiling was most of it."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(searched)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_config_table(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], **options: Any
) -> list[Config]:
    """:func:`render_configs` for every config prefix of a family's table.

    Args:
        table: Config prefix -> size -> template variables
            (``{"qwen2": {"7B": {...}}, "qwen2_5": {"7B": {...}}}``).
        **options: Passed to :func:`render_configs` (``templates``, ``recipes``,
            ``requires``, ``kinds``).
    """
    return [
        config
        for prefix, sizes in table.items()
        for config in render_configs(family=prefix, sizes=sizes, **options)
    ]
