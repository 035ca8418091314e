"""The hook implementations that register the Qwen family with tunesmith."""

from __future__ import annotations

from tunesmith import CheckpointAdapter, Model, Tokenizer, hookimpl
from tunesmith_qwen import _configs, _convert, _model_builders, _tiny, _tokenizer

TUNESMITH_PLUGIN_API = 1


@hookimpl
def register_models(register):
    for builder, (family, repo) in _model_builders.HF_REPOS.items():
        register(Model.for_builder(builder, family=family, hf_repo=repo))


@hookimpl
def register_tokenizers(register):
    # One tokenizer, registered per family so `tokenizer: auto` finds it for both
    # model types; it outranks the generic hf_tokenizer (priority 0) on tokenizer.json.
    for family, releases in (("qwen2", "Qwen2 / Qwen2.5"), ("qwen3", "Qwen3")):
        register(
            Tokenizer(
                name=f"{family}_tokenizer",
                builder=_tokenizer.qwen_tokenizer,
                files=("tokenizer.json", "vocab.json"),
                family=family,
                priority=10,
                description=f"{releases} byte-level BPE with ChatML turns (tokenizer.json, "
                "or vocab.json + merges.txt)",
            )
        )


@hookimpl
def register_checkpoint_adapters(register):
    register(
        CheckpointAdapter(
            family="qwen2",
            model_types=("qwen2",),
            hf_to_native=_convert.HF_TO_NATIVE,
            build_from_hf_config=_convert.build_qwen2_from_hf_config,
            # torchtune's checkpointer model_type names for these checkpoints
            aliases=("QWEN2", "QWEN2_5"),
            tiny_config=_tiny.tiny_qwen2_config,
            description="Qwen2 and Qwen2.5 (Coder, Math): HF safetensors both ways",
        )
    )
    register(
        CheckpointAdapter(
            family="qwen3",
            model_types=("qwen3",),
            hf_to_native=_convert.HF_TO_NATIVE,
            build_from_hf_config=_convert.build_qwen3_from_hf_config,
            aliases=("QWEN3",),
            tiny_config=_tiny.tiny_qwen3_config,
            description="Qwen3 dense models: HF safetensors both ways",
        )
    )
    # Mixture-of-experts checkpoints get a clear refusal instead of "no plugin reads it".
    register(
        CheckpointAdapter(
            family="qwen_moe",
            model_types=("qwen2_moe", "qwen3_moe"),
            hf_to_native={},
            build_from_hf_config=_convert.refuse_moe,
            description="Qwen1.5/2/3 mixture-of-experts: refused (no expert layers yet)",
        )
    )


@hookimpl
def register_recipes(register):
    for config in _configs.shipped_configs():
        register(config)
