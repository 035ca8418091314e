"""The files of a quantized model directory (cheap to import: no torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = [
    "FORMAT",
    "QUANTIZATION_CONFIG",
    "WEIGHTS_NAME",
    "is_quantize_output",
    "is_quantized_dir",
    "torchao_quantization_config",
]

#: Written last by the quantize recipe; its presence marks the recipe's output directory.
QUANTIZATION_CONFIG = "quantization_config.json"
#: The weights of the torch layout: ``torch.save`` of the quantized native state dict.
WEIGHTS_NAME = "model.pt"
#: ``quantization_config.json``'s ``format``.
FORMAT = "tunesmith-torchao"


def is_quantize_output(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` was written by ``tunesmith run quantize``."""
    return (Path(directory).expanduser() / QUANTIZATION_CONFIG).is_file()


def torchao_quantization_config(directory: str | os.PathLike) -> dict | None:
    """``config.json``'s ``quantization_config`` when it says torchao (what transformers'
    ``TorchAoConfig`` writes, and tunesmith's quantize recipe), else ``None``."""
    path = Path(directory).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    if isinstance(quantization, dict) and quantization.get("quant_method") == "torchao":
        return quantization
    return None


def is_quantized_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a torchao-quantized model: a ``tunesmith run quantize``
    output, or a Hugging Face checkpoint quantized with torchao (by transformers)."""
    return is_quantize_output(directory) or torchao_quantization_config(directory) is not None
