"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_configs`), plus torchtune's
``mistral/7B_full_low_memory``."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_configs

__all__ = ["RECIPES", "SIZES", "shipped_configs"]

#: Recipe kind -> the recipe its configs run (the core's kinds and full_low_memory).
RECIPES = {**FINETUNE_KINDS, "full_low_memory": "full_finetune_single_device"}
# The LoRA recipes are tunesmith-lora's (a dependency).
_REQUIRES = {kind: "tunesmith-lora" for kind in RECIPES if "lora" in kind}
# torchtune ships mistral/7B_full_low_memory (8-bit paged AdamW, optimizer in backward)
# for v0.1 only; here it is the same recipe with memory-saving settings. The sizes
# torchtune has no configs of take v0.1's settings.
_KINDS = {
    size: tuple(kind for kind in RECIPES if kind != "full_low_memory" or size == "7B")
    for size in ("7B", "7B_v0_2", "7B_v0_3", "nemo_12B", "small_24B")
}


# torchtune's Mistral configs: full fine-tuning at lr 5e-6; LoRA at batch 4, lr 2e-5,
# rank 64 with alpha 16, on the output projection too (not for QLoRA), the original
# Alpaca; FSDP2 without accumulation, activations checkpointed.
_LORA = dict(batch_size=4, lora_rank=64, lora_alpha=16, dataset_source="tatsu-lab/alpaca")
_BY_KIND = {
    "lora_single_device": dict(_LORA, apply_lora_to_output=True),
    "lora_distributed": dict(_LORA, apply_lora_to_output=True, gradient_accumulation_steps=1,
                             checkpointing=True),
    "qlora_single_device": _LORA,
    "qlora_distributed": _LORA,
}  # fmt: skip


def _size(title: str, model: str, repo: str) -> dict:
    # The HF repos also hold Mistral's own consolidated.safetensors.
    return dict(
        title=title, model=model, repo=repo, lr_full="5.0e-6", lr_lora="2.0e-5",
        by_kind=_BY_KIND, download_flags=' --ignore-patterns "consolidated.safetensors"',
    )  # fmt: skip


#: Size -> template variables. ``7B`` is v0.1, named as torchtune names it.
SIZES = {
    "7B": _size("Mistral 7B v0.1", "mistral_7b_v0_1", "mistralai/Mistral-7B-Instruct-v0.1"),
    "7B_v0_2": _size("Mistral 7B v0.2", "mistral_7b_v0_2", "mistralai/Mistral-7B-Instruct-v0.2"),
    "7B_v0_3": _size("Mistral 7B v0.3", "mistral_7b_v0_3", "mistralai/Mistral-7B-Instruct-v0.3"),
    "nemo_12B": _size("Mistral NeMo 12B", "mistral_nemo_12b",
                      "mistralai/Mistral-Nemo-Instruct-2407"),
    "small_24B": _size("Mistral Small 24B", "mistral_small_24b",
                       "mistralai/Mistral-Small-24B-Instruct-2501"),
}  # fmt: skip


def shipped_configs() -> list[Config]:
    """Every shipped config, ``mistral/<size>_<kind>``: each size of :data:`SIZES` in each
    kind of :data:`RECIPES` (``full_low_memory`` for ``7B`` only, as in torchtune)."""
    return render_configs(
        family="mistral",
        sizes=SIZES,
        recipes=RECIPES,
        requires=_REQUIRES,
        kinds=_KINDS,
    )
