"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`). (QLoRA under FSDP2 does not
run yet: the NF4 weights do not shard, so there is no qlora_distributed kind.)"""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_config_table

__all__ = ["SIZES", "shipped_configs"]

# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in FINETUNE_KINDS if "lora" in kind}
_GATED = "Gated: accept Google's terms on the Hub first, then pass --hf-token."


def _size(title: str, model: str, repo: str, billions: float) -> dict:
    # Activation checkpointing on one device: for full fine-tuning from 2B up (Gemma's
    # 256k-token vocabulary makes activations large), for (Q)LoRA from 27B up.
    return dict(title=title, model=model, repo=repo, checkpoint_full=billions >= 2,
                checkpoint_lora=billions >= 27, download_flags=' --ignore-patterns "*.gguf"',
                weights_note=_GATED)  # fmt: skip


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
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind."""
    return render_config_table(SIZES, requires=_REQUIRES)
