"""The hook implementations that register Phi-3 and Phi-4 with tunesmith."""

from __future__ import annotations

from dataclasses import replace

from tunesmith import CheckpointAdapter, Model, hookimpl
from tunesmith.config import FINETUNE_KINDS, render_config_table
from tunesmith_phi3 import _builders, _convert

TUNESMITH_PLUGIN_API = 2  # uses fused modules, aliases, tiny_config, rendered configs

#: Recipe kind (one of the core's config templates) -> the recipe its configs run.
RECIPES = {**FINETUNE_KINDS, "full_low_memory": "full_finetune_single_device"}
_SINGLE_DEVICE = ("full_single_device", "lora_single_device", "qlora_single_device")
# The kinds torchtune ships for phi3/mini and phi4/14B, under its names.
_TORCHTUNES = ("full_low_memory", "full_distributed", "lora_single_device", "lora_distributed",
               "qlora_single_device")  # fmt: skip

_AUTO_NOTE = (
    "model: auto builds Phi-3 from the download's own config.json: the repository's "
    "revisions differ in their LongRoPE factors (phi3_mini_128k has the first release's)."
)

# torchtune's Phi-3 and Phi-4 configs: full fine-tuning at lr 5e-6 on the cleaned Alpaca,
# with FSDP2 over 8 accumulated batches.
_FULL = dict(dataset_source="yahma/alpaca-cleaned")
_BY_KIND = {
    "full_single_device": _FULL,
    "full_low_memory": _FULL,
    "full_distributed": dict(_FULL, gradient_accumulation_steps=8),
}
_MINI_4K = dict(repo=_builders.HF_REPOS[_builders.phi3_mini_4k], lr_full="5.0e-6",
                by_kind=_BY_KIND)  # fmt: skip
_PHI3 = {
    "mini_4k": dict(title="Phi-3 mini 4k", model="phi3_mini_4k", **_MINI_4K),
    # torchtune's names of the same model's configs (phi3/mini_lora_single_device, ...)
    "mini": dict(
        title="Phi-3 mini 4k (torchtune's phi3/mini names)", model="phi3_mini", **_MINI_4K
    ),
    "mini_128k": dict(
        title="Phi-3 mini 128k",
        model="auto",
        repo=_builders.HF_REPOS[_builders.phi3_mini_128k],
        lr_full="5.0e-6",
        by_kind=_BY_KIND,
        weights_note=_AUTO_NOTE,
    ),
}
_PHI4 = {
    "14B": dict(
        title="Phi-4 14B",
        model="phi4_14b",
        repo=_builders.HF_REPOS[_builders.phi4_14b],
        lr_full="5.0e-6",
        by_kind=_BY_KIND,
    ),
}

#: Config prefix -> size -> template variables of the core's templates (torchtune's
#: config names). q/k/v and gate/up are one fused module each in HF: a LoRA of them is
#: written as one LoRA of qkv_proj and of gate_up_proj, which PEFT and vLLM load.
SIZES = {"phi3": _PHI3, "phi4": _PHI4}

#: Size -> the kinds it ships: torchtune's for its names (mini, 14B; 14B full fine-tuning
#: needs FSDP2 or the low-memory config), one device's for the others.
KINDS = {"mini_4k": _SINGLE_DEVICE, "mini_128k": _SINGLE_DEVICE, "mini": _TORCHTUNES,
         "14B": _TORCHTUNES}  # fmt: skip


@hookimpl
def register_models(register):
    for builder, repo in _builders.HF_REPOS.items():
        register(Model.for_builder(builder, family="phi3", hf_repo=repo))
    # torchtune's builder of the 4k model (torchtune.models.phi3.phi3_mini), so that
    # its phi3 configs translate to this plugin's model
    mini_4k = Model.for_builder(
        _builders.phi3_mini_4k, family="phi3", hf_repo=_builders.HF_REPOS[_builders.phi3_mini_4k]
    )
    register(replace(mini_4k, name="phi3_mini", description="phi3_mini_4k under torchtune's name"))


@hookimpl
def register_checkpoint_adapters(register):
    register(
        CheckpointAdapter(
            family="phi3",
            model_types=("phi3",),
            hf_to_native=_convert.HF_TO_NATIVE,
            fused=_convert.FUSED,
            build_from_hf_config=_convert.build_from_hf_config,
            aliases=("PHI3_MINI", "PHI4"),  # torchtune's checkpointer model_types
            tiny_config=_convert.tiny_phi3_config,
            description=(
                "Phi-3 (mini 4k, mini 128k LongRoPE) and Phi-4: HF safetensors with fused "
                "qkv/gate_up"
            ),
        )
    )


@hookimpl
def register_recipes(register):
    # The LoRA recipes come with tunesmith-lora, a dependency of this distribution.
    requires = {kind: "tunesmith-lora" for kind in RECIPES if "lora" in kind}
    configs = render_config_table(SIZES, recipes=RECIPES, requires=requires, kinds=KINDS)
    for config in configs:
        register(config)
