"""The Gemma family for tunesmith: Gemma (2B, 7B), Gemma 2 (2B, 9B, 27B) and Gemma 3
(1B text, and the language model of 4B, 12B, 27B).

Installing ``tunesmith-gemma`` registers the model builders below, one checkpoint
adapter per generation (``gemma``, ``gemma2``, ``gemma3_text``, ``gemma3``), the
``gemma_tokenizer`` and the shipped configs (``tunesmith ls``).
"""

from tunesmith_gemma._chat import (
    END_OF_TURN,
    GEMMA3_CHAT_TEMPLATE,
    GEMMA_CHAT_TEMPLATE,
    START_OF_TURN,
)
from tunesmith_gemma._component_builders import gemma, gemma2, gemma3, gemma_layer_types
from tunesmith_gemma._convert import (
    GEMMA2_HF_TO_NATIVE,
    GEMMA3_HF_TO_NATIVE,
    GEMMA3_KEY_LAYOUTS,
    GEMMA3_MULTIMODAL_HF_TO_NATIVE,
    GEMMA3_PASSTHROUGH,
    GEMMA_HF_TO_NATIVE,
    build_gemma2_from_hf_config,
    build_gemma3_from_hf_config,
    build_gemma3_text_from_hf_config,
    build_gemma_from_hf_config,
    gemma2_args_from_hf_config,
    gemma3_args_from_hf_config,
    gemma_args_from_hf_config,
)
from tunesmith_gemma._model_builders import (
    gemma2_2b,
    gemma2_9b,
    gemma2_27b,
    gemma3_1b,
    gemma3_4b,
    gemma3_12b,
    gemma3_27b,
    gemma_2b,
    gemma_7b,
)
from tunesmith_gemma._tiny import (
    GEMMA_SPECIAL_TOKENS,
    tiny_gemma2_config,
    tiny_gemma3_config,
    tiny_gemma3_text_config,
    tiny_gemma_config,
    write_tiny_gemma_checkpoint,
    write_tiny_gemma_tokenizer,
)
from tunesmith_gemma._tokenizer import gemma_tokenizer

__version__ = "0.1.0"

__all__ = [
    "END_OF_TURN",
    "GEMMA3_CHAT_TEMPLATE",
    "GEMMA_CHAT_TEMPLATE",
    "GEMMA_SPECIAL_TOKENS",
    "START_OF_TURN",
    "GEMMA2_HF_TO_NATIVE",
    "GEMMA3_HF_TO_NATIVE",
    "GEMMA3_KEY_LAYOUTS",
    "GEMMA3_MULTIMODAL_HF_TO_NATIVE",
    "GEMMA3_PASSTHROUGH",
    "GEMMA_HF_TO_NATIVE",
    "__version__",
    "build_gemma2_from_hf_config",
    "build_gemma3_from_hf_config",
    "build_gemma3_text_from_hf_config",
    "build_gemma_from_hf_config",
    "gemma",
    "gemma2",
    "gemma2_27b",
    "gemma2_2b",
    "gemma2_9b",
    "gemma2_args_from_hf_config",
    "gemma3",
    "gemma3_12b",
    "gemma3_1b",
    "gemma3_27b",
    "gemma3_4b",
    "gemma3_args_from_hf_config",
    "gemma_2b",
    "gemma_7b",
    "gemma_args_from_hf_config",
    "gemma_layer_types",
    "gemma_tokenizer",
    "tiny_gemma2_config",
    "tiny_gemma3_config",
    "tiny_gemma3_text_config",
    "tiny_gemma_config",
    "write_tiny_gemma_checkpoint",
    "write_tiny_gemma_tokenizer",
]
