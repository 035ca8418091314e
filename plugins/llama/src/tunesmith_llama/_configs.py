"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`)."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_config_table

__all__ = ["RECIPES", "SIZES", "shipped_configs"]

#: Recipe kind -> the recipe its configs run: the core's kinds, and full_low_memory for
#: the 7B sizes of Llama 2 and Code Llama (as torchtune ships them).
RECIPES = {**FINETUNE_KINDS, "full_low_memory": "full_finetune_single_device"}
# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in RECIPES if "lora" in kind}


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
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind."""
    sizes = {size for table in SIZES.values() for size in table}
    kinds = {
        size: tuple(kind for kind in RECIPES if kind != "full_low_memory" or size == "7B")
        for size in sizes
    }
    return render_config_table(SIZES, recipes=RECIPES, requires=_REQUIRES, kinds=kinds)
