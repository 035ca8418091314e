"""The hook implementations that register the Gemma family with tunesmith."""

from __future__ import annotations

from tunesmith import CheckpointAdapter, Model, Tokenizer, hookimpl
from tunesmith_gemma import _configs, _convert, _model_builders, _tiny, _tokenizer

TUNESMITH_PLUGIN_API = 1

# Builder -> the checkpoint adapter whose weights it loads.
_FAMILY = {
    "gemma_": "gemma",
    "gemma2_": "gemma2",
    "gemma3_1b": "gemma3_text",
    "gemma3_": "gemma3",
}


def _family(name: str) -> str:
    return next(family for prefix, family in _FAMILY.items() if name.startswith(prefix))


@hookimpl
def register_models(register):
    for builder, repo in _model_builders.HF_REPOS.items():
        register(Model.for_builder(builder, family=_family(builder.__name__), hf_repo=repo))


@hookimpl
def register_tokenizers(register):
    # Above the generic hf_tokenizer/sentencepiece_tokenizer for Gemma checkpoints: the
    # same files, plus <end_of_turn> as a stop token and the generation's chat template.
    register(
        Tokenizer(
            name="gemma_tokenizer",
            builder=_tokenizer.gemma_tokenizer,
            files=("tokenizer.json", "tokenizer.model"),
            family=("gemma", "gemma2", "gemma3_text", "gemma3"),
            priority=10,
            description="Gemma 1/2/3 tokenizer (tokenizer.json or sentencepiece tokenizer.model)",
        )
    )


@hookimpl
def register_checkpoint_adapters(register):
    register(
        CheckpointAdapter(
            family="gemma",
            model_types=("gemma",),
            hf_to_native=_convert.GEMMA_HF_TO_NATIVE,
            build_from_hf_config=_convert.build_gemma_from_hf_config,
            aliases=("GEMMA",),  # torchtune's checkpointer model_type
            tiny_config=_tiny.tiny_gemma_config,
            description="Gemma 2B/7B (GemmaForCausalLM)",
        )
    )
    register(
        CheckpointAdapter(
            family="gemma2",
            model_types=("gemma2",),
            hf_to_native=_convert.GEMMA2_HF_TO_NATIVE,
            build_from_hf_config=_convert.build_gemma2_from_hf_config,
            aliases=("GEMMA2",),
            tiny_config=_tiny.tiny_gemma2_config,
            description="Gemma 2 2B/9B/27B (Gemma2ForCausalLM)",
        )
    )
    register(
        CheckpointAdapter(
            family="gemma3_text",
            model_types=("gemma3_text",),
            hf_to_native=_convert.GEMMA3_HF_TO_NATIVE,
            build_from_hf_config=_convert.build_gemma3_text_from_hf_config,
            tiny_config=_tiny.tiny_gemma3_text_config,
            description="Gemma 3 text models (Gemma3ForCausalLM: 1B)",
        )
    )
    register(
        CheckpointAdapter(
            family="gemma3",
            model_types=("gemma3",),
            hf_to_native=_convert.GEMMA3_MULTIMODAL_HF_TO_NATIVE,
            build_from_hf_config=_convert.build_gemma3_from_hf_config,
            passthrough=_convert.GEMMA3_PASSTHROUGH,
            key_layouts=_convert.GEMMA3_KEY_LAYOUTS,
            tiny_config=_tiny.tiny_gemma3_config,
            description=(
                "Gemma 3 4B/12B/27B (Gemma3ForConditionalGeneration): the language model; "
                "the vision tower and projector are written back unchanged"
            ),
        )
    )


@hookimpl
def register_recipes(register):
    for config in _configs.shipped_configs():
        register(config)
