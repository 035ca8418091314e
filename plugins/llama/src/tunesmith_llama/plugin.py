"""The hook implementations that register the Llama family with tunesmith."""

from __future__ import annotations

from pathlib import Path

from tunesmith import CheckpointAdapter, Config, Model, Tokenizer, hookimpl
from tunesmith_llama import _convert, _model_builders, _tiny, _tokenizer

TUNESMITH_PLUGIN_API = 1

CONFIG_DIR = Path(__file__).parent / "configs"

_RECIPE_KINDS = {
    "full_single_device": "full_finetune_single_device",
    "full_distributed": "full_finetune_distributed",
    "lora_single_device": "lora_finetune_single_device",
    "lora_distributed": "lora_finetune_distributed",
    "qlora_single_device": "qlora_finetune_single_device",
}


@hookimpl
def register_models(register):
    for builder, repo in _model_builders.HF_REPOS.items():
        description = (builder.__doc__ or "").strip().splitlines()[0]
        register(
            Model(
                name=builder.__name__,
                builder=builder,
                family="llama",
                hf_repo=repo,
                description=description,
            )
        )


@hookimpl
def register_tokenizers(register):
    # A Llama 3 download has both original/tokenizer.model and tokenizer.json: the
    # higher priority makes `tokenizer: auto` pick tiktoken over hf_tokenizer (0).
    register(
        Tokenizer(
            name="llama3_tokenizer",
            builder=_tokenizer.llama3_tokenizer,
            files=("original/tokenizer.model",),
            family="llama",
            priority=10,
            description="Llama 3/3.1/3.2 tiktoken tokenizer (original/tokenizer.model)",
        )
    )
    register(
        Tokenizer(
            name="llama2_tokenizer",
            builder=_tokenizer.llama2_tokenizer,
            files=("tokenizer.model",),
            family="llama",
            priority=5,
            description="Llama 2 / Code Llama sentencepiece tokenizer (tokenizer.model)",
        )
    )


@hookimpl
def register_checkpoint_adapters(register):
    register(
        CheckpointAdapter(
            family="llama",
            model_types=("llama",),
            hf_to_native=_convert.HF_TO_NATIVE,
            build_from_hf_config=_convert.build_from_hf_config,
            # torchtune's checkpointer model_type names for these checkpoints
            aliases=("LLAMA2", "LLAMA3", "LLAMA3_1", "LLAMA3_2", "CODE_LLAMA2"),
            tiny_config=_tiny.tiny_llama_config,
            meta_to_native=_convert.meta_to_native,
            build_from_meta_params=_convert.build_from_meta_params,
            hf_config_from_meta_params=_convert.hf_config_from_meta_params,
            description="Llama 2, Code Llama, Llama 3, 3.1, 3.2: HF safetensors and Meta consolidated.pth",
        )
    )


def shipped_configs() -> list[Config]:
    """A :class:`tunesmith.Config` per YAML under ``configs/<family>/<size>_<kind>.yaml``."""
    configs = []
    for path in sorted(CONFIG_DIR.glob("*/*.yaml")):
        size, _, kind = path.stem.partition("_")
        recipe = _RECIPE_KINDS[kind]
        configs.append(
            Config(
                name=f"{path.parent.name}/{path.stem}",
                recipe=recipe,
                path=path,
                description=f"{path.parent.name} {size}: {recipe.replace('_', ' ')}",
                # the LoRA recipes are tunesmith-lora's, a dependency of this distribution
                requires="tunesmith-lora" if "lora" in kind else None,
            )
        )
    return configs


@hookimpl
def register_recipes(register):
    for config in shipped_configs():
        register(config)
