"""The hook implementations that register the Mistral family with tunesmith."""

from __future__ import annotations

from tunesmith import CheckpointAdapter, Model, hookimpl
from tunesmith_mistral import _configs, _convert, _model_builders, _tiny

TUNESMITH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    for builder, repo in _model_builders.HF_REPOS.items():
        register(Model.for_builder(builder, family="mistral", hf_repo=repo))


@hookimpl
def register_checkpoint_adapters(register):
    # Tokenizers need no registration: v0.3 and NeMo ship tokenizer.json (the core's
    # hf_tokenizer), v0.1/v0.2 also tokenizer.model (the core's sentencepiece_tokenizer).
    register(
        CheckpointAdapter(
            family="mistral",
            model_types=("mistral",),
            hf_to_native=_convert.HF_TO_NATIVE,
            build_from_hf_config=_convert.build_from_hf_config,
            # torchtune's checkpointer model_type name for these checkpoints
            aliases=("MISTRAL",),
            tiny_config=_tiny.tiny_mistral_config,
            description="Mistral 7B v0.1/v0.2/v0.3, NeMo 12B, Small 24B: HF safetensors",
        )
    )
    # A Mixtral checkpoint is refused by name instead of "no plugin reads 'mixtral'",
    # which would send the user looking for a package that does not exist.
    register(
        CheckpointAdapter(
            family="mixtral",
            model_types=("mixtral",),
            hf_to_native={},
            build_from_hf_config=_convert.refuse_mixtral,
            description="Mixtral (mixture of experts): refused with what to use instead",
        )
    )


@hookimpl
def register_recipes(register):
    for config in _configs.shipped_configs():
        register(config)
