"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`)."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_configs

__all__ = ["RECIPES", "SIZES", "shipped_configs"]

#: Recipe kind -> the recipe its configs run: the core's kinds, plus those torchtune ships
#: for some sizes only (:data:`_ONLY`).
RECIPES = {
    **FINETUNE_KINDS,
    "full_low_memory": "full_finetune_single_device",
    "dora_single_device": "lora_finetune_single_device",
    "dora_distributed": "lora_finetune_distributed",
    "qdora_single_device": "qlora_finetune_single_device",
}
# Kind -> the configs (prefix/size) that ship it: full_low_memory for the 7B sizes of
# Llama 2 and Code Llama, DoRA for Llama 3 8B (torchtune's llama3/8B_dora and so on).
_ONLY = {
    "full_low_memory": {"llama2/7B", "code_llama2/7B"},
    **{kind: {"llama3/8B"} for kind in RECIPES if "dora" in kind},
}
# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind, recipe in RECIPES.items() if "lora" in recipe}


def _size(title: str, model: str, repo: str, *, big: bool) -> dict:
    # Activation checkpointing on one device: always for full fine-tuning except the
    # small Llama 3.2s; for LoRA only from 70B up. (Distributed configs always use it.)
    small = model.startswith("llama3_2")
    return dict(title=title, model=model, repo=repo, checkpoint_full=not small,
                checkpoint_lora=big)  # fmt: skip


#: Config prefix -> size -> template variables.
SIZES = {
    "llama2": {
        f"{n}B": _size(f"Llama 2 {n}B", f"llama2_{n}b", f"meta-llama/Llama-2-{n}b-hf", big=n == 70)
        for n in (7, 13, 70)
    },
    "code_llama2": {
        f"{n}B": _size(f"Code Llama {n}B", f"code_llama2_{n}b",
                       f"codellama/CodeLlama-{n}b-Instruct-hf", big=n == 70)
        for n in (7, 13, 70)
    },
    "llama3": {
        f"{n}B": _size(f"Llama 3 {n}B", f"llama3_{n}b", f"meta-llama/Meta-Llama-3-{n}B-Instruct",
                       big=n == 70)
        for n in (8, 70)
    },
    "llama3_1": {
        f"{n}B": _size(f"Llama 3.1 {n}B", f"llama3_1_{n}b", f"meta-llama/Llama-3.1-{n}B-Instruct",
                       big=n >= 70)
        for n in (8, 70, 405)
    },
    "llama3_2": {
        f"{n}B": _size(f"Llama 3.2 {n}B", f"llama3_2_{n}b", f"meta-llama/Llama-3.2-{n}B-Instruct",
                       big=False)
        for n in (1, 3)
    },
    "llama3_3": {
        "70B": _size("Llama 3.3 70B", "llama3_3_70b", "meta-llama/Llama-3.3-70B-Instruct",
                     big=True)
    },
}  # fmt: skip


def shipped_configs() -> list[Config]:
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind (those of
    :data:`_ONLY` where it names the size)."""
    return [
        config
        for prefix, sizes in SIZES.items()
        for config in render_configs(
            family=prefix, sizes=sizes, recipes=RECIPES, requires=_REQUIRES,
            kinds={size: _kinds(f"{prefix}/{size}") for size in sizes},
        )
    ]  # fmt: skip


def _kinds(prefix_size: str) -> tuple[str, ...]:
    return tuple(kind for kind in RECIPES if prefix_size in _ONLY.get(kind, {prefix_size}))
