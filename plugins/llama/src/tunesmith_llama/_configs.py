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


_LORA_KINDS = [kind for kind, recipe in RECIPES.items() if "lora" in recipe]


def _size(title: str, model: str, repo: str, **settings) -> dict:
    return dict(title=title, model=model, repo=repo, **settings)


def _big(*, adapter_only: bool = False, **lora_settings) -> dict:
    """torchtune's LoRA settings from 70B up: rank 16, no accumulation, activation
    checkpointing and the original Alpaca (Llama 3.1 and 3.3 save only the adapter)."""
    lora = {"gradient_accumulation_steps": 1, "checkpointing": True,
            "dataset_source": "tatsu-lab/alpaca", **lora_settings}  # fmt: skip
    return dict(lora_rank=16, lora_alpha=32, save_adapter_weights_only=adapter_only,
                by_kind=dict.fromkeys(_LORA_KINDS, lora))  # fmt: skip


# Llama 3.2: batch 4, rank 64; the 1B without activation checkpointing on one device.
_LLAMA3_2 = dict(batch_size=4, lora_rank=64, lora_alpha=128)
_ONE_DEVICE_NO_CHECKPOINTING = {
    kind: dict(checkpointing=False)
    for kind in ("full_single_device", "lora_single_device", "qlora_single_device")
}


#: Config prefix -> size -> template variables (``by_kind``: where torchtune's config of
#: that name differs from the core template's settings for the kind).
SIZES = {
    "llama2": {
        "7B": _size("Llama 2 7B", "llama2_7b", "meta-llama/Llama-2-7b-hf",
                    by_kind={"full_low_memory": dict(lr="1.0e-5", warmup_steps=100)}),
        "13B": _size("Llama 2 13B", "llama2_13b", "meta-llama/Llama-2-13b-hf",
                     by_kind={"lora_distributed": dict(lr="2.0e-4", apply_lora_to_output=True)}),
        "70B": _size("Llama 2 70B", "llama2_70b", "meta-llama/Llama-2-70b-hf", **_big()),
    },
    "code_llama2": {
        "7B": _size("Code Llama 7B", "code_llama2_7b", "codellama/CodeLlama-7b-Instruct-hf",
                    by_kind={"full_low_memory": dict(lr="2.0e-5")}),
        "13B": _size("Code Llama 13B", "code_llama2_13b", "codellama/CodeLlama-13b-Instruct-hf"),
        "70B": _size("Code Llama 70B", "code_llama2_70b", "codellama/CodeLlama-70b-Instruct-hf",
                     **_big()),
    },
    "llama3": {
        "8B": _size("Llama 3 8B", "llama3_8b", "meta-llama/Meta-Llama-3-8B-Instruct",
                    by_kind={"full_single_device": dict(lr="1.0e-5", warmup_steps=100)}),
        "70B": _size("Llama 3 70B", "llama3_70b", "meta-llama/Meta-Llama-3-70B-Instruct", **_big()),
    },
    "llama3_1": {
        "8B": _size("Llama 3.1 8B", "llama3_1_8b", "meta-llama/Llama-3.1-8B-Instruct"),
        "70B": _size("Llama 3.1 70B", "llama3_1_70b", "meta-llama/Llama-3.1-70B-Instruct",
                     **_big(adapter_only=True)),
        "405B": _size("Llama 3.1 405B", "llama3_1_405b", "meta-llama/Llama-3.1-405B-Instruct",
                      **_big(adapter_only=True, gradient_accumulation_steps=8), batch_size=1),
    },
    "llama3_2": {
        "1B": _size("Llama 3.2 1B", "llama3_2_1b", "meta-llama/Llama-3.2-1B-Instruct",
                    **_LLAMA3_2, by_kind={
                        **_ONE_DEVICE_NO_CHECKPOINTING,
                        "full_distributed": dict(gradient_accumulation_steps=8,
                                                 checkpointing=False),
                    }),
        "3B": _size("Llama 3.2 3B", "llama3_2_3b", "meta-llama/Llama-3.2-3B-Instruct",
                    **_LLAMA3_2,
                    by_kind={"full_distributed": dict(gradient_accumulation_steps=8)}),
    },
    "llama3_3": {
        "70B": _size("Llama 3.3 70B", "llama3_3_70b", "meta-llama/Llama-3.3-70B-Instruct",
                     **_big(adapter_only=True))
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
