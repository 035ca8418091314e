"""The Mistral family for tunesmith: Mistral 7B v0.1, v0.2 and v0.3, Mistral NeMo 12B and
Mistral Small 24B (any ``MistralForCausalLM`` checkpoint, ``model_type: mistral``).

Installing ``tunesmith-mistral`` registers the model builders below, the ``mistral``
checkpoint adapter (HF safetensors, transformers 4 and 5 ``config.json``), a ``mixtral``
adapter that refuses mixture-of-experts checkpoints with what to use instead, and the
shipped configs (``tunesmith ls``). Tokenizers come from the core: ``tokenizer.json``
(v0.3, NeMo's tekken, Small) through ``hf_tokenizer`` and a lone ``tokenizer.model``
through ``sentencepiece_tokenizer``, both rendering the checkpoint's own chat template.
"""

from tunesmith_mistral._chat_templates import (
    MISTRAL_NEMO_CHAT_TEMPLATE,
    MISTRAL_V0_1_ORIGINAL_CHAT_TEMPLATE,
    MISTRAL_V1_CHAT_TEMPLATE,
    MISTRAL_V3_CHAT_TEMPLATE,
)
from tunesmith_mistral._component_builders import mistral
from tunesmith_mistral._convert import (
    HF_TO_NATIVE,
    build_from_hf_config,
    mistral_args_from_hf_config,
    refuse_mixtral,
)
from tunesmith_mistral._model_builders import (
    mistral_7b,
    mistral_7b_v0_1,
    mistral_7b_v0_2,
    mistral_7b_v0_3,
    mistral_nemo_12b,
    mistral_small_24b,
)
from tunesmith_mistral._tiny import (
    NEMO_SPECIAL_TOKENS,
    TEKKEN_PATTERN,
    V3_CONTROL_TOKENS,
    tiny_mistral_config,
    write_tiny_mistral_checkpoint,
    write_tiny_mistral_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "HF_TO_NATIVE",
    "MISTRAL_NEMO_CHAT_TEMPLATE",
    "MISTRAL_V0_1_ORIGINAL_CHAT_TEMPLATE",
    "MISTRAL_V1_CHAT_TEMPLATE",
    "MISTRAL_V3_CHAT_TEMPLATE",
    "NEMO_SPECIAL_TOKENS",
    "TEKKEN_PATTERN",
    "V3_CONTROL_TOKENS",
    "build_from_hf_config",
    "mistral",
    "mistral_7b",
    "mistral_7b_v0_1",
    "mistral_7b_v0_2",
    "mistral_7b_v0_3",
    "mistral_args_from_hf_config",
    "mistral_nemo_12b",
    "mistral_small_24b",
    "refuse_mixtral",
    "tiny_mistral_config",
    "write_tiny_mistral_checkpoint",
    "write_tiny_mistral_tokenizer",
]
