"""Configs: YAML loading, command-line overrides, ``_component_`` instantiation, validation.

Example::

    cfg = load_config("llama3_2/1B_lora_single_device", ["batch_size=2", "~compile"])
    validate(cfg, recipe)
    optimizer = instantiate(cfg.optimizer, model.parameters())
"""

from tunesmith.config._instantiate import (
    KIND_BY_KEY,
    argument_problem,
    instantiate,
    resolve_component,
)
from tunesmith.config._load import apply_overrides, find_config, load_config, parse_value
from tunesmith.config._validate import validate

__all__ = [
    "KIND_BY_KEY",
    "apply_overrides",
    "argument_problem",
    "find_config",
    "instantiate",
    "load_config",
    "parse_value",
    "resolve_component",
    "validate",
]
