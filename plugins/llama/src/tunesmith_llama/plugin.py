"""The hook implementations that register the Llama family with tunesmith."""

from __future__ import annotations

from tunesmith import CheckpointAdapter, Model, Tokenizer, hookimpl
from tunesmith_llama import _configs, _convert, _model_builders, _tiny, _tokenizer

TUNESMITH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    for builder, repo in _model_builders.HF_REPOS.items():
        register(Model.for_builder(builder, family="llama", hf_repo=repo))


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
            description="Llama 3/3.1/3.2/3.3 tiktoken tokenizer (original/tokenizer.model)",
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
            description="Llama 2, Code Llama, Llama 3, 3.1, 3.2, 3.3: HF safetensors and Meta consolidated.pth",
        )
    )


@hookimpl
def register_recipes(register):
    for config in _configs.shipped_configs():
        register(config)
