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

_SENTENCEPIECE = dict(tokenizer="llama2_tokenizer", tokenizer_file="tokenizer.model")
_TIKTOKEN = dict(
    tokenizer="llama3_tokenizer",
    tokenizer_file="original/tokenizer.model",
    download_flags=' --exclude "original/consolidated*"',
)


def _size(title: str, model: str, repo: str, *, big: bool, tokenizer: dict) -> dict:
    # Activation checkpointing on one device: always for full fine-tuning except the
    # small Llama 3.2s; for LoRA only from 70B up. (Distributed configs always use it.)
    small = model.startswith("llama3_2")
    return dict(
        {"download_flags": ""},
        title=title,
        model=model,
        repo=repo,
        checkpoint_full=not small,
        checkpoint_lora=big,
        **tokenizer,
    )


#: Config prefix -> size -> template variables.
SIZES = {
    "llama2": {
        f"{n}B": _size(f"Llama 2 {n}B", f"llama2_{n}b", f"meta-llama/Llama-2-{n}b-hf",
                       big=n == 70, tokenizer=_SENTENCEPIECE)
        for n in (7, 13, 70)
    },
    "code_llama2": {
        f"{n}B": _size(f"Code Llama {n}B", f"code_llama2_{n}b",
                       f"codellama/CodeLlama-{n}b-Instruct-hf", big=n == 70,
                       tokenizer=_SENTENCEPIECE)
        for n in (7, 13, 70)
    },
    "llama3": {
        f"{n}B": _size(f"Llama 3 {n}B", f"llama3_{n}b", f"meta-llama/Meta-Llama-3-{n}B-Instruct",
                       big=n == 70, tokenizer=_TIKTOKEN)
        for n in (8, 70)
    },
    "llama3_1": {
        f"{n}B": _size(f"Llama 3.1 {n}B", f"llama3_1_{n}b", f"meta-llama/Llama-3.1-{n}B-Instruct",
                       big=n >= 70, tokenizer=_TIKTOKEN)
        for n in (8, 70, 405)
    },
    "llama3_2": {
        f"{n}B": _size(f"Llama 3.2 {n}B", f"llama3_2_{n}b", f"meta-llama/Llama-3.2-{n}B-Instruct",
                       big=False, tokenizer=_TIKTOKEN)
        for n in (1, 3)
    },
}  # fmt: skip


def shipped_configs() -> list[Config]:
    """Every shipped config: each size of :data:`SIZES` in each kind of :data:`RECIPES`."""
    return [
        config
        for prefix, sizes in SIZES.items()
        for config in render_configs(
            family=prefix, sizes=sizes, templates=TEMPLATES, recipes=RECIPES, requires=_REQUIRES
        )
    ]
