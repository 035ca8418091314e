"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`), with torchtune's settings for
the sizes it has configs of."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_config_table

__all__ = ["SIZES", "shipped_configs"]

# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in FINETUNE_KINDS if "lora" in kind}
_GATED = "Gated: accept Google's terms on the Hub first, then pass --hf-token."


# torchtune's Gemma and Gemma 2 LoRA configs: batch 4, lr 2e-5 after 10 warm-up steps,
# rank 64, the original Alpaca; FSDP2 without accumulation, activations checkpointed.
_LORA = dict(batch_size=4, lr="2.0e-5", warmup_steps=10, lora_rank=64, lora_alpha=128,
             dataset_source="tatsu-lab/alpaca")  # fmt: skip


def _size(title: str, model: str, repo: str, *, full_batch: int = 2, **lora_one_device) -> dict:
    """A size's row: ``full_batch`` for full fine-tuning (torchtune's 1 from 7B up), and
    torchtune's exceptions for LoRA on one device (``lora_one_device``)."""
    full = dict(batch_size=full_batch)
    return dict(
        title=title, model=model, repo=repo, weights_note=_GATED,
        download_flags=' --ignore-patterns "*.gguf"',
        by_kind={
            "full_single_device": full, "full_distributed": full,
            "lora_single_device": {**_LORA, **lora_one_device},
            "lora_distributed": {**_LORA, "gradient_accumulation_steps": 1, "checkpointing": True},
            "qlora_single_device": _LORA,
        },
    )  # fmt: skip


# torchtune's LoRA on one device from 7B up: rank 8 at lr 5e-5.
_RANK_8 = dict(lr="5.0e-5", lora_rank=8, lora_alpha=16)

#: Config prefix -> size -> template variables.
SIZES = {
    "gemma": {
        "2B": _size("Gemma 2B", "gemma_2b", "google/gemma-2b-it"),
        "7B": _size("Gemma 7B", "gemma_7b", "google/gemma-7b-it", full_batch=1, batch_size=8,
                    **_RANK_8),
    },
    "gemma2": {
        "2B": _size("Gemma 2 2B", "gemma2_2b", "google/gemma-2-2b-it", batch_size=8),
        "9B": _size("Gemma 2 9B", "gemma2_9b", "google/gemma-2-9b-it", full_batch=1,
                    batch_size=8, **_RANK_8),
        "27B": _size("Gemma 2 27B", "gemma2_27b", "google/gemma-2-27b-it", full_batch=1,
                     batch_size=2, **_RANK_8),
    },
    # Not in torchtune: Gemma 2's settings, size for size.
    "gemma3": {
        f"{n}B": _size(f"Gemma 3 {n}B", f"gemma3_{n}b", f"google/gemma-3-{n}b-it",
                       full_batch=2 if n < 7 else 1)
        for n in (1, 4, 12, 27)
    },
}  # fmt: skip


def shipped_configs() -> list[Config]:
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind."""
    return render_config_table(SIZES, requires=_REQUIRES)
