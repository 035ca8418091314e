"""Built-in recipes. Importing this package is cheap: each recipe's module (and
torch) loads when the recipe runs, so ``tunesmith ls`` stays fast.

Plugins alias the fine-tuning recipe with their own defaults::

    Recipe(name="lora_finetune_single_device", run=run_finetune, keys=FINETUNE_KEYS,
           required=FINETUNE_REQUIRED_KEYS, defaults={"peft": {"_component_": "lora"}})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "FINETUNE_KEYS",
    "FINETUNE_REQUIRED_KEYS",
    "GENERATE_KEYS",
    "QUANTIZE_KEYS",
    "QUANTIZE_REQUIRED_KEYS",
    "checkpoint_dir_of",
    "lazy_recipe",
    "load_for_inference",
    "run_finetune",
    "run_generate",
    "run_quantize",
]

#: Every top-level key the ``finetune`` recipe reads.
FINETUNE_KEYS = frozenset(
    {
        "output_dir", "model", "tokenizer", "checkpointer", "peft", "save_adapter_weights_only",
        "dataset", "validation_dataset", "run_val_every_n_steps", "max_val_steps",
        "seed", "shuffle", "batch_size", "epochs", "max_steps_per_epoch",
        "gradient_accumulation_steps", "clip_grad_norm", "optimizer", "lr_scheduler", "loss",
        "device", "dtype", "enable_activation_checkpointing", "enable_activation_offloading",
        "compile", "metric_logger", "log_every_n_steps", "log_peak_memory_stats",
        "save_every_n_steps", "keep_last_n_epochs", "resume_from_checkpoint", "num_workers",
    }
)  # fmt: skip
FINETUNE_REQUIRED_KEYS = frozenset({"output_dir", "checkpointer", "dataset", "optimizer"})

#: Every top-level key the ``generate`` recipe reads.
GENERATE_KEYS = frozenset(
    {
        "model", "tokenizer", "checkpointer", "adapter", "prompt", "chat", "max_new_tokens",
        "temperature", "top_k", "top_p", "seed", "enable_kv_cache", "device", "dtype",
        "output_dir",
    }
)  # fmt: skip

#: Every top-level key the ``quantize`` recipe reads.
QUANTIZE_KEYS = frozenset({"checkpointer", "output_dir", "quantizer", "adapter", "device", "dtype"})
QUANTIZE_REQUIRED_KEYS = frozenset({"checkpointer", "output_dir", "quantizer"})


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
