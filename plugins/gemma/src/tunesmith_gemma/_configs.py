"""The shipped configs: one template per recipe kind (``templates/<kind>.yaml``, sharing
``templates/_*.yaml`` pieces) and a row per released size, rendered by
:func:`tunesmith.config.render_configs`."""

from __future__ import annotations

from pathlib import Path

from tunesmith import Config
from tunesmith.config import render_configs

__all__ = ["RECIPES", "SIZES", "TEMPLATES", "shipped_configs"]

TEMPLATES = Path(__file__).parent / "templates"

#: Recipe kind -> the recipe its configs run. (QLoRA under FSDP2 does not run yet: the
#: NF4 weights do not shard, so there is no qlora_distributed kind.)
RECIPES = {
    "full_single_device": "full_finetune_single_device",
    "full_distributed": "full_finetune_distributed",
    "lora_single_device": "lora_finetune_single_device",
    "lora_distributed": "lora_finetune_distributed",
    "qlora_single_device": "qlora_finetune_single_device",
}
# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in RECIPES if "lora" in kind}


def _size(title: str, model: str, repo: str, billions: float) -> dict:
    # Activation checkpointing on one device: for full fine-tuning from 2B up (Gemma's
    # 256k-token vocabulary makes activations large), for (Q)LoRA from 27B up.
    return dict(title=title, model=model, repo=repo, checkpoint_full=billions >= 2,
                checkpoint_lora=billions >= 27)  # fmt: skip


#: Config prefix -> size -> template variables.
SIZES = {
    "gemma": {
        f"{n}B": _size(f"Gemma {n}B", f"gemma_{n}b", f"google/gemma-{n}b-it", n) for n in (2, 7)
    },
    "gemma2": {
        f"{n}B": _size(f"Gemma 2 {n}B", f"gemma2_{n}b", f"google/gemma-2-{n}b-it", n)
        for n in (2, 9, 27)
    },
    "gemma3": {
        f"{n}B": _size(f"Gemma 3 {n}B", f"gemma3_{n}b", f"google/gemma-3-{n}b-it", n)
        for n in (1, 4, 12, 27)
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
