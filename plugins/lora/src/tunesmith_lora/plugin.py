"""The tunesmith-lora plugin: the ``lora``, ``dora`` and ``qlora`` PEFT methods and the
torchtune-named LoRA recipe aliases of the core ``finetune`` recipe."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from tunesmith import PeftMethod, Recipe, hookimpl

TUNESMITH_PLUGIN_API = 2

# (name, peft method, distributed, description)
_ALIASES = (
    ("lora_finetune_single_device", "lora", False, "LoRA fine-tuning on one device"),
    ("lora_finetune_distributed", "lora", True, "LoRA fine-tuning on many devices (FSDP2)"),
    ("qlora_finetune_single_device", "qlora", False, "QLoRA (NF4 base) fine-tuning on one device"),
)


def _peft_keys(
    *,
    lora_attn_modules: list[str] | None = None,
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    use_rslora: bool = False,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> None:
    """The ``peft:`` keys every method takes (its defaults may differ)."""


def _lazy(builder: str) -> Callable[..., Any]:
    """A builder that imports torch and the transform only when a config uses it.

    It carries the keys' signature and types so ``tunesmith validate`` checks a
    ``peft:`` block (typos, types) without importing torch.
    """

    def build(**config: Any) -> Any:
        from tunesmith_lora import _transform

        return getattr(_transform, builder)(**config)

    build.__name__ = builder
    build.__qualname__ = builder
    build.__signature__ = inspect.signature(_peft_keys)  # type: ignore[attr-defined]
    build.__annotations__ = dict(_peft_keys.__annotations__)
    return build


def _for_adapter(config: Mapping[str, Any]) -> Any:
    from tunesmith_lora._transform import LoRATransform

    return LoRATransform.from_adapter_config(config)


@hookimpl
def register_peft_methods(register: Callable[[PeftMethod], None]) -> None:
    # lora and dora both write peft_type LORA; use_dora tells their adapters apart.
    # qlora's adapters are plain LoRA adapters, loaded by lora: it declares no peft_type.
    register(
        PeftMethod(
            name="lora",
            builder=_lazy("build_lora"),
            peft_type="LORA",
            adapter_match={"use_dora": False},
            from_adapter_config=_for_adapter,
            description="LoRA adapters on the layers peft.lora_attn_modules names",
        )
    )
    register(
        PeftMethod(
            name="dora",
            builder=_lazy("build_dora"),
            peft_type="LORA",
            adapter_match={"use_dora": True},
            from_adapter_config=_for_adapter,
            description="DoRA: LoRA with a learned per-row magnitude (use_dora: true)",
        )
    )
    register(
        PeftMethod(
            name="qlora",
            builder=_lazy("build_qlora"),
            description="QLoRA: LoRA over NF4-quantized frozen weights (quantize_base: true)",
        )
    )


@hookimpl
def register_recipes(register: Callable[[Recipe], None]) -> None:
    # tunesmith.recipes is cheap to import: run_finetune loads the recipe (and torch)
    # only when a job runs.
    from tunesmith.recipes import FINETUNE_SCHEMA, run_finetune

    for name, method, distributed, description in _ALIASES:
        register(
            Recipe(
                name=name,
                run=run_finetune,
                schema=FINETUNE_SCHEMA,
                defaults={"peft": {"_component_": method}},
                distributed=distributed,
                description=f"{description} (the finetune recipe with peft: {method})",
            )
        )
