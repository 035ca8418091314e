"""Built-in recipes. Importing this package is cheap: each recipe's module (and
torch) loads when the recipe runs, so ``tunesmith ls`` stays fast.

Each recipe kind has one :class:`tunesmith.config.RecipeSchema` (``FINETUNE_SCHEMA``,
``GENERATE_SCHEMA``, ``QUANTIZE_SCHEMA``) that validation, ``tunesmith run`` and the
recipe itself read. Plugins alias the fine-tuning recipe with their own defaults::

    Recipe(name="lora_finetune_single_device", run=run_finetune, schema=FINETUNE_SCHEMA,
           defaults={"peft": {"_component_": "lora"}})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tunesmith.recipes._schemas import (
    FINETUNE_SCHEMA,
    GENERATE_SCHEMA,
    QUANTIZE_SCHEMA,
    well_known_key,
)

__all__ = [
    "FINETUNE_KEYS",
    "FINETUNE_REQUIRED_KEYS",
    "FINETUNE_SCHEMA",
    "GENERATE_KEYS",
    "GENERATE_SCHEMA",
    "QUANTIZE_KEYS",
    "QUANTIZE_REQUIRED_KEYS",
    "QUANTIZE_SCHEMA",
    "checkpoint_dir_of",
    "lazy_recipe",
    "load_for_inference",
    "run_finetune",
    "run_generate",
    "run_quantize",
    "well_known_key",
]

# The key sets of plugin API 1, derived from the schemas (kept for existing plugins).
FINETUNE_KEYS = FINETUNE_SCHEMA.names
FINETUNE_REQUIRED_KEYS = FINETUNE_SCHEMA.required
GENERATE_KEYS = GENERATE_SCHEMA.names
QUANTIZE_KEYS = QUANTIZE_SCHEMA.names
QUANTIZE_REQUIRED_KEYS = QUANTIZE_SCHEMA.required


def lazy_recipe(module: str, function: str = "run") -> Callable[[Any], None]:
    """A ``run(cfg)`` that imports ``module`` only when called."""

    def run(cfg: Any) -> None:
        getattr(importlib.import_module(module), function)(cfg)

    run.__module__ = module
    run.__qualname__ = f"{module}.{function}"
    run.recipe_module = module  # type: ignore[attr-defined]
    return run


run_finetune = lazy_recipe("tunesmith.recipes.finetune")
run_generate = lazy_recipe("tunesmith.recipes.generate")
run_quantize = lazy_recipe("tunesmith.recipes.quantize")


def __getattr__(name: str) -> Any:
    # Shared by inference recipes (core and plugins); imports torch only when used.
    if name in ("checkpoint_dir_of", "load_for_inference"):
        from tunesmith.recipes import _inference

        return getattr(_inference, name)
    raise AttributeError(f"module 'tunesmith.recipes' has no attribute {name!r}")
