"""The shipped configs: a row per released size, rendered by the core's fine-tuning
templates (:func:`tunesmith.config.render_config_table`)."""

from __future__ import annotations

from tunesmith import Config
from tunesmith.config import FINETUNE_KINDS, render_config_table

__all__ = ["SIZES", "shipped_configs"]

# The LoRA recipes are tunesmith-lora's (a dependency of this distribution).
_REQUIRES = {kind: "tunesmith-lora" for kind in FINETUNE_KINDS if "lora" in kind}


def _size(title: str, model: str, repo: str, *, lora_rank: int = 8, **by_kind) -> dict:
    """A size's row: torchtune's settings for it (``by_kind``: kind -> variables); full
    fine-tuning on the cleaned Alpaca, as all of torchtune's Qwen configs train."""
    cleaned = dict(dataset_source="yahma/alpaca-cleaned")
    for kind in ("full_single_device", "full_distributed"):
        by_kind[kind] = {**cleaned, **by_kind.get(kind, {})}
    return dict(title=title, model=model, repo=repo, lora_rank=lora_rank,
                lora_alpha=2 * lora_rank, by_kind=by_kind)  # fmt: skip


def _qwen2(size: str, builder: str, **settings) -> dict:
    return _size(f"Qwen2 {size}", builder, f"Qwen/Qwen2-{size}-Instruct", **settings)


def _qwen2_5(size: str, builder: str, **settings) -> dict:
    return _size(f"Qwen2.5 {size} Instruct", builder, f"Qwen/Qwen2.5-{size}-Instruct",
                 **settings)  # fmt: skip


def _qwen3(size: str, builder: str) -> dict:
    return _size(f"Qwen3 {size}", builder, f"Qwen/Qwen3-{size}")


# torchtune's settings for its Qwen2 and Qwen2.5 configs, where they differ from its
# defaults for the kind (the core's templates).
_LR_2E_3 = dict(lr="2.0e-3")
_NO_CHECKPOINTING = dict(checkpointing=False)
_FULL_AT_5E_6 = dict(
    full_distributed=dict(gradient_accumulation_steps=8, lr="5.0e-6"),
    full_single_device=dict(lr="5.0e-6"),
)
_FULL_0_5B = dict(
    full_distributed=dict(gradient_accumulation_steps=8, checkpointing=False),
    full_single_device=dict(gradient_accumulation_steps=8, optimizer_in_bwd=False),
)
_LORA_72B = dict(lora_distributed=dict(gradient_accumulation_steps=1, checkpointing=True,
                                       dataset_source="tatsu-lab/alpaca"))  # fmt: skip

#: Config prefix -> size -> template variables (torchtune's config names).
SIZES = {
    "qwen2": {
        "0.5B": _qwen2("0.5B", "qwen2_0_5b", lora_rank=32, **_FULL_0_5B,
                       lora_distributed=dict(batch_size=4, lr="2.0e-3", checkpointing=True),
                       lora_single_device=dict(batch_size=4, lr="2.0e-3")),
        "1.5B": _qwen2("1.5B", "qwen2_1_5b", lora_rank=32,
                       lora_distributed=dict(lr="2.0e-5", checkpointing=True),
                       lora_single_device=_LR_2E_3, full_distributed=_NO_CHECKPOINTING),
        "7B": _qwen2("7B", "qwen2_7b", **_FULL_AT_5E_6),
        "72B": _qwen2("72B", "qwen2_72b", **_LORA_72B),
    },
    "qwen2_5": {
        "0.5B": _qwen2_5("0.5B", "qwen2_5_0_5b", lora_rank=32, lora_distributed=_LR_2E_3,
                         lora_single_device=dict(_LR_2E_3, checkpointing=False),
                         full_distributed=_FULL_0_5B["full_distributed"],
                         full_single_device=dict(_FULL_0_5B["full_single_device"],
                                                 checkpointing=False)),
        "1.5B": _qwen2_5("1.5B", "qwen2_5_1_5b_instruct", lora_rank=32,
                         lora_distributed=dict(lr="2.0e-5"),
                         lora_single_device=dict(_LR_2E_3, checkpointing=False),
                         full_single_device=dict(batch_size=4)),
        "3B": _qwen2_5("3B", "qwen2_5_3b", **_FULL_AT_5E_6),
        "7B": _qwen2_5("7B", "qwen2_5_7b_instruct", **_FULL_AT_5E_6),
        "14B": _qwen2_5("14B", "qwen2_5_14b_instruct"),
        "32B": _qwen2_5("32B", "qwen2_5_32b_instruct"),
        "72B": _qwen2_5("72B", "qwen2_5_72b_instruct", **_LORA_72B),
    },
    # Not in torchtune: its defaults for each kind.
    "qwen3": {
        "0.6B": _qwen3("0.6B", "qwen3_0_6b_instruct"),
        "1.7B": _qwen3("1.7B", "qwen3_1_7b_instruct"),
        "4B": _qwen3("4B", "qwen3_4b_instruct"),
        "8B": _qwen3("8B", "qwen3_8b_instruct"),
        "14B": _qwen3("14B", "qwen3_14b_instruct"),
        "32B": _qwen3("32B", "qwen3_32b"),
    },
}  # fmt: skip


def shipped_configs() -> list[Config]:
    """Every shipped config: each size of :data:`SIZES` in each fine-tuning kind."""
    return render_config_table(SIZES, requires=_REQUIRES)
