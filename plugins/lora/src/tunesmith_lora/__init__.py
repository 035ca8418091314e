"""tunesmith-lora: LoRA, DoRA and QLoRA for every tunesmith model family.

One generic transform wraps the ``nn.Linear`` layers a ``peft:`` config names
(``lora_attn_modules``, ``apply_lora_to_mlp``, ``apply_lora_to_output``), saves
adapters in PEFT's format and merges them into plain weights::

    from tunesmith_lora import LoRATransform

    lora = LoRATransform(lora_attn_modules=["q_proj", "v_proj"], lora_rank=8, lora_alpha=16)
    lora.apply(model)                      # wraps in place, freezes the base
    optimizer = torch.optim.AdamW(lora.trainable_params(model).values())
    ...
    lora.save_adapter(model, "out/epoch_0", adapter=adapter, base_model_name_or_path="...")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "ATTN_MODULES",
    "MLP_MODULES",
    "OUTPUT_MODULE",
    "LoRALinear",
    "LoRATransform",
    "__version__",
    "build_dora",
    "build_lora",
    "build_qlora",
    "disable_adapters",
    "is_nf4",
    "load_adapter",
    "lora_modules",
    "merge_weight",
    "merged_state_dict",
    "read_peft_adapter",
    "save_adapter",
]

# Public name -> private module; resolved on first access so that loading the
# plugin (``tunesmith plugins``) does not import torch.
_LAZY = {
    "ATTN_MODULES": "_transform",
    "MLP_MODULES": "_transform",
    "OUTPUT_MODULE": "_transform",
    "LoRALinear": "_layers",
    "LoRATransform": "_transform",
    "build_dora": "_transform",
    "build_lora": "_transform",
    "build_qlora": "_transform",
    "disable_adapters": "_wrapping",
    "is_nf4": "_layers",
    "lora_modules": "_wrapping",
    "load_adapter": "_merge",
    "merge_weight": "_layers",
    "merged_state_dict": "_wrapping",
    "read_peft_adapter": "_peft_format",
    "save_adapter": "_merge",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tunesmith_lora.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tunesmith_lora' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
