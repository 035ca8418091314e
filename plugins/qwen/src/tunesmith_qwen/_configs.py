"""The shipped configs: one template per recipe kind (``templates/<kind>.yaml``) and a
row per released size, rendered by :func:`tunesmith.config.render_configs`."""

from __future__ import annotations

from pathlib import Path

from tunesmith import Config
from tunesmith.config import render_configs

__all__ = ["RECIPES", "SIZES", "TEMPLATES", "shipped_configs"]

TEMPLATES = Path(__file__).parent / "templates"

#: Recipe kind -> the recipe its configs run.
RECIPES = {
    "full_single_device": "full_finetune_single_device",
    "full_distributed": "full_finetune_distributed",
    "lora_single_device": "lora_finetune_single_device",
    "lora_distributed": "lora_finetune_distributed",
    "qlora_single_device": "qlora_finetune_single_device",
}
# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in RECIPES if "lora" in kind}


def _size(title: str, model: str, repo: str, billions: float, tokenizer: str) -> dict:
    # Activation checkpointing on one device: for full fine-tuning from 3B up, for
    # (Q)LoRA from 32B up. (Distributed configs always use it.)
    return dict(
        title=title, model=model, repo=repo, tokenizer=tokenizer,
        checkpoint_full=billions >= 3, checkpoint_lora=billions >= 32,
    )  # fmt: skip


def _qwen2(size: str, builder: str) -> dict:
    return _size(f"Qwen2 {size}", builder, f"Qwen/Qwen2-{size}-Instruct",
                 float(size[:-1]), "qwen2_tokenizer")  # fmt: skip


def _qwen2_5(size: str, builder: str) -> dict:
    return _size(f"Qwen2.5 {size} Instruct", builder, f"Qwen/Qwen2.5-{size}-Instruct",
                 float(size[:-1]), "qwen2_tokenizer")  # fmt: skip


def _qwen3(size: str, builder: str) -> dict:
    return _size(f"Qwen3 {size}", builder, f"Qwen/Qwen3-{size}", float(size[:-1]),
                 "qwen3_tokenizer")  # fmt: skip


#: Config prefix -> size -> template variables (torchtune's config names).
SIZES = {
    "qwen2": {
        "0.5B": _qwen2("0.5B", "qwen2_0_5b"),
        "1.5B": _qwen2("1.5B", "qwen2_1_5b"),
        "7B": _qwen2("7B", "qwen2_7b"),
        "72B": _qwen2("72B", "qwen2_72b"),
    },
    "qwen2_5": {
        "0.5B": _qwen2_5("0.5B", "qwen2_5_0_5b"),
        "1.5B": _qwen2_5("1.5B", "qwen2_5_1_5b_instruct"),
        "3B": _qwen2_5("3B", "qwen2_5_3b"),
        "7B": _qwen2_5("7B", "qwen2_5_7b_instruct"),
        "14B": _qwen2_5("14B", "qwen2_5_14b_instruct"),
        "32B": _qwen2_5("32B", "qwen2_5_32b_instruct"),
        "72B": _qwen2_5("72B", "qwen2_5_72b_instruct"),
    },
    "qwen3": {
        "0.6B": _qwen3("0.6B", "qwen3_0_6b_instruct"),
        "1.7B": _qwen3("1.7B", "qwen3_1_7b_instruct"),
        "4B": _qwen3("4B", "qwen3_4b_instruct"),
        "8B": _qwen3("8B", "qwen3_8b_instruct"),
        "14B": _qwen3("14B", "qwen3_14b_instruct"),
        "32B": _qwen3("32B", "qwen3_32b"),
    },
}


def shipped_configs() -> list[Config]:
    """Every shipped config: each size of :data:`SIZES` in each kind of :data:`RECIPES`."""
    return [
        config
        for prefix, sizes in SIZES.items()
        for config in render_configs(
            family=prefix, sizes=sizes, templates=TEMPLATES, recipes=RECIPES, requires=_REQUIRES
        )
    ]
