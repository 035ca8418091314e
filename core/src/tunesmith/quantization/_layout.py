"""The files of a quantized model directory (cheap to import: no torch)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FORMAT", "QUANTIZATION_CONFIG", "WEIGHTS_NAME", "is_quantized_dir"]

#: Written last by the quantize recipe; its presence marks a quantized model directory.
QUANTIZATION_CONFIG = "quantization_config.json"
#: ``torch.save`` of the quantized state dict.
WEIGHTS_NAME = "model.pt"
#: ``quantization_config.json``'s ``format``.
FORMAT = "tunesmith-torchao"


def is_quantized_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a model written by ``tunesmith run quantize``."""
    return (Path(directory).expanduser() / QUANTIZATION_CONFIG).is_file()
