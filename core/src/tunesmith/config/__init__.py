"""Configs: YAML loading, command-line overrides, ``${...}`` interpolation, ``_component_``
instantiation, recipe schemas and validation.

Example::

    recipe = get_registry().get("recipes", "lora_finetune_single_device")
    cfg = load_recipe_config("llama3_2/1B_lora_single_device", recipe, ["batch_size=2"])
    optimizer = instantiate(cfg.optimizer, model.parameters())

A recipe declares what it reads as a :class:`RecipeSchema` of :class:`Key` records
(type, default, required, help, range check); see ``docs/plugins.md``.
"""

from tunesmith.config._instantiate import (
    KIND_BY_KEY,
    argument_problem,
    instantiate,
    resolve_component,
)
from tunesmith.config._load import (
    apply_overrides,
    config_source,
    find_config,
    load_config,
    load_recipe_config,
    parse_value,
)
from tunesmith.config._schema import (
    NO_DEFAULT,
    Key,
    RecipeSchema,
    at_least,
    greater_than,
    in_range,
)
from tunesmith.config._templates import (
    CORE_TEMPLATES,
    FINETUNE_KINDS,
    render_config_table,
    render_configs,
)
from tunesmith.config._validate import validate

__all__ = [
    "CORE_TEMPLATES",
    "FINETUNE_KINDS",
    "KIND_BY_KEY",
    "NO_DEFAULT",
    "Key",
    "RecipeSchema",
    "apply_overrides",
    "argument_problem",
    "at_least",
    "config_source",
    "find_config",
    "greater_than",
    "in_range",
    "instantiate",
    "load_config",
    "load_recipe_config",
    "parse_value",
    "render_config_table",
    "render_configs",
    "resolve_component",
    "validate",
]
