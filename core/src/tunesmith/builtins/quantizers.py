"""The core's quantizers, registered like any plugin's (torchao loads when one runs)."""

from __future__ import annotations

from collections.abc import Callable

from tunesmith import Quantizer, hookimpl
from tunesmith.quantization import (
    Int4WeightOnly,
    Int8DynamicActivationInt4Weight,
    Int8DynamicActivationInt8Weight,
    Int8WeightOnly,
)


@hookimpl
def register_quantizers(register: Callable[[Quantizer], None]) -> None:
    register(
        Quantizer(
            name=Int8WeightOnly.name,
            builder=Int8WeightOnly,
            description="int8 linear weights, per-channel scales (torchao); CPU and CUDA",
        )
    )
    register(
        Quantizer(
            name=Int8DynamicActivationInt8Weight.name,
            builder=Int8DynamicActivationInt8Weight,
            description="int8 linear weights and per-token int8 activations (torchao); CPU and CUDA",
        )
    )
    register(
        Quantizer(
            name=Int4WeightOnly.name,
            builder=Int4WeightOnly,
            description="4-bit linear weights in groups of `groupsize` (torchao): packed "
            "tinygemm layout on CUDA (bf16), int4 values in int8 storage on CPU",
        )
    )
    register(
        Quantizer(
            name=Int8DynamicActivationInt4Weight.name,
            builder=Int8DynamicActivationInt4Weight,
            description="per-token int8 activations and 4-bit linear weights in groups of "
            "`groupsize` (torchao; torchtune's 8da4w), int4 values in int8 storage; CPU and CUDA",
        )
    )
