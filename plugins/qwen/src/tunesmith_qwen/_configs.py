"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`)."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_config_table

__all__ = ["SIZES", "shipped_configs"]

# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in FINETUNE_KINDS if "lora" in kind}


def _size(title: str, model: str, repo: str, billions: float) -> dict:
    # Activation checkpointing on one device: for full fine-tuning from 3B up, for
    # (Q)LoRA from 32B up (distributed configs always use it). LoRA's lr is Qwen's 2e-4.
    return dict(
        title=title, model=model, repo=repo, lr_lora="2.0e-4",
        checkpoint_full=billions >= 3, checkpoint_lora=billions >= 32,
    )  # fmt: skip


def _qwen2(size: str, builder: str) -> dict:
    return _size(f"Qwen2 {size}", builder, f"Qwen/Qwen2-{size}-Instruct",
                 float(size[:-1]))  # fmt: skip


def _qwen2_5(size: str, builder: str) -> dict:
    return _size(f"Qwen2.5 {size} Instruct", builder, f"Qwen/Qwen2.5-{size}-Instruct",
                 float(size[:-1]))  # fmt: skip


def _qwen3(size: str, builder: str) -> dict:
    return _size(f"Qwen3 {size}", builder, f"Qwen/Qwen3-{size}", float(size[:-1]))  # fmt: skip


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
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind."""
    return render_config_table(SIZES, requires=_REQUIRES)
