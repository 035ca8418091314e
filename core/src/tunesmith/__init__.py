"""tunesmith: fine-tune, evaluate, quantize and run LLMs; extended by plugins.

The public API plugins and users build on. Heavy parts (torch, models) load on
first use so ``tunesmith --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from tunesmith._components import (
    CheckpointAdapter,
    Config,
    Dataset,
    Evaluator,
    FusedModule,
    Model,
    Origin,
    PeftMethod,
    Quantizer,
    Recipe,
    Tokenizer,
)
from tunesmith.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NotFoundError,
    PluginError,
    TunesmithError,
)
from tunesmith.hookspecs import PLUGIN_API_VERSION, hookimpl
from tunesmith.registry import get_registry

__version__ = "0.1.0"

__all__ = [
    "PLUGIN_API_VERSION",
    "CheckpointAdapter",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "Dataset",
    "Evaluator",
    "FusedModule",
    "Model",
    "NotFoundError",
    "Origin",
    "PeftMethod",
    "PluginError",
    "Quantizer",
    "Recipe",
    "Tokenizer",
    "TunesmithError",
    "__version__",
    "convert_checkpoint",
    "generate",
    "get_registry",
    "hookimpl",
    "load_pretrained",
    "merge_adapter",
]

# Public names that import torch: resolved on first access.
_LAZY = {
    "load_pretrained": "tunesmith._pretrained",
    "merge_adapter": "tunesmith._pretrained",
    "convert_checkpoint": "tunesmith._pretrained",
    "generate": "tunesmith.generation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
