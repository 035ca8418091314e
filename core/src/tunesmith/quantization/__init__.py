"""Post-training quantization through torchao (``pip install 'tunesmith[quantize]'``).

The built-in quantizers (registered as ``int8_weight_only``,
``int8_dynamic_activation_int8_weight``, ``int4_weight_only`` and
``int8_dynamic_activation_int4_weight``) swap the weights of a model's ``nn.Linear``
layers for torchao tensor subclasses; ``tunesmith run quantize`` applies one to a
checkpoint and writes the result, which :func:`load_quantized` (and
``tunesmith.load_pretrained``) load back::

    from tunesmith.quantization import Int8WeightOnly, load_quantized
    model, tokenizer = tunesmith.load_pretrained("models/Llama-3.2-1B-Instruct")
    Int8WeightOnly().quantize(model, "cpu")
    model, tokenizer = load_quantized("out/Llama-3.2-1B-int8")   # a quantize recipe output

The recipe writes the built-in quantizers' output as a Hugging Face checkpoint (torchao
tensors in safetensors, a torchao ``quantization_config`` in ``config.json``) that
transformers' ``from_pretrained`` loads unchanged; :func:`load_quantized` reads
it, the torch layout (``model.pt``) other quantizers get, and torchao checkpoints
transformers wrote.

Importing this package is cheap; torch loads with the functions that need it and
torchao when a quantizer runs.
"""

from __future__ import annotations

from typing import Any

from tunesmith.quantization._layout import (
    QUANTIZATION_CONFIG,
    WEIGHTS_NAME,
    is_quantize_output,
    is_quantized_dir,
)
from tunesmith.quantization._quantizers import (
    Int4WeightOnly,
    Int8DynamicActivationInt4Weight,
    Int8DynamicActivationInt8Weight,
    Int8WeightOnly,
    TorchaoQuantizer,
)
from tunesmith.quantization._torchao import INSTALL_HINT, import_torchao

__all__ = [
    "INSTALL_HINT",
    "QUANTIZATION_CONFIG",
    "WEIGHTS_NAME",
    "Int4WeightOnly",
    "Int8DynamicActivationInt4Weight",
    "Int8DynamicActivationInt8Weight",
    "Int8WeightOnly",
    "TorchaoQuantizer",
    "hf_layout_blocker",
    "import_torchao",
    "is_quantize_output",
    "is_quantized_dir",
    "load_quantized",
    "model_size_bytes",
    "read_quantization_config",
    "save_quantized",
    "tensor_bytes",
]

# Names whose module imports torch: resolved on first access.
_LAZY = {
    "hf_layout_blocker",
    "load_quantized",
    "model_size_bytes",
    "read_quantization_config",
    "save_quantized",
    "tensor_bytes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tunesmith.quantization import _io

        return getattr(_io, name)
    raise AttributeError(f"module 'tunesmith.quantization' has no attribute {name!r}")
