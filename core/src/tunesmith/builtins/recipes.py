"""The core's recipes and their torchtune-named aliases, registered like any plugin's."""

from __future__ import annotations

from pathlib import Path

from tunesmith import Config, Recipe, hookimpl
from tunesmith.recipes import (
    FINETUNE_SCHEMA,
    GENERATE_SCHEMA,
    QUANTIZE_SCHEMA,
    run_finetune,
    run_generate,
    run_quantize,
)

_CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def _finetune(name: str, description: str, *, distributed: bool) -> Recipe:
    return Recipe(
        name=name,
        run=run_finetune,
        schema=FINETUNE_SCHEMA,
        distributed=distributed,
        description=description,
    )


@hookimpl
def register_recipes(register):
    register(
        _finetune("finetune", "Full or PEFT fine-tuning, one device or FSDP2", distributed=True)
    )
    register(
        _finetune(
            "full_finetune_single_device", "Full fine-tuning on one device", distributed=False
        )
    )
    register(
        _finetune(
            "full_finetune_distributed",
            "Full fine-tuning with FSDP2 via torchrun",
            distributed=True,
        )
    )
    register(
        Recipe(
            name="generate",
            run=run_generate,
            schema=GENERATE_SCHEMA,
            description="Generate text from a checkpoint (optionally with a PEFT adapter)",
        )
    )
    register(
        Recipe(
            name="quantize",
            run=run_quantize,
            schema=QUANTIZE_SCHEMA,
            description="Post-training quantization of a checkpoint through torchao",
        )
    )
    register(
        Config(
            name="demo/tiny_full_single_device",
            recipe="full_finetune_single_device",
            path=_CONFIGS / "demo" / "tiny_full_single_device.yaml",
            description="The quick-start job run by `tunesmith demo`",
        )
    )
    register(
        Config(
            name="generation",
            recipe="generate",
            path=_CONFIGS / "generation.yaml",
            description="Chat with any checkpoint",
        )
    )
    register(
        Config(
            name="quantization",
            recipe="quantize",
            path=_CONFIGS / "quantization.yaml",
            description="int8/int4 weight quantization of any checkpoint",
        )
    )
