"""The Qwen family for tunesmith: Qwen2, Qwen2.5 (Coder, Math) and dense Qwen3.

Installing ``tunesmith-qwen`` registers the model builders below, the ``qwen2`` and
``qwen3`` checkpoint adapters (and one refusing mixture-of-experts checkpoints), the
ChatML tokenizer and the shipped configs (``tunesmith ls``).
"""

from tunesmith_qwen._component_builders import qwen2, qwen3
from tunesmith_qwen._convert import (
    HF_TO_NATIVE,
    build_qwen2_from_hf_config,
    build_qwen3_from_hf_config,
    qwen2_args_from_hf_config,
    qwen3_args_from_hf_config,
)
from tunesmith_qwen._model_builders import (
    qwen2_0_5b,
    qwen2_1_5b,
    qwen2_5_0_5b,
    qwen2_5_1_5b_base,
    qwen2_5_1_5b_instruct,
    qwen2_5_3b,
    qwen2_5_7b_base,
    qwen2_5_7b_instruct,
    qwen2_5_14b_base,
    qwen2_5_14b_instruct,
    qwen2_5_32b_base,
    qwen2_5_32b_instruct,
    qwen2_5_72b_base,
    qwen2_5_72b_instruct,
    qwen2_7b,
    qwen2_72b,
    qwen3_0_6b_base,
    qwen3_0_6b_instruct,
    qwen3_1_7b_base,
    qwen3_1_7b_instruct,
    qwen3_4b_base,
    qwen3_4b_instruct,
    qwen3_8b_base,
    qwen3_8b_instruct,
    qwen3_14b_base,
    qwen3_14b_instruct,
    qwen3_32b,
)
from tunesmith_qwen._tiny import (
    CHAT_TEMPLATES,
    tiny_qwen2_config,
    tiny_qwen3_config,
    write_tiny_qwen_checkpoint,
    write_tiny_qwen_tokenizer,
)
from tunesmith_qwen._tokenizer import (
    CHATML_TEMPLATE,
    QwenTokenizer,
    qwen_tokenizer,
    tokenizer_from_vocab_merges,
)

__version__ = "0.1.0"

__all__ = [
    "CHATML_TEMPLATE",
    "CHAT_TEMPLATES",
    "HF_TO_NATIVE",
    "QwenTokenizer",
    "__version__",
    "build_qwen2_from_hf_config",
    "build_qwen3_from_hf_config",
    "qwen2",
    "qwen2_0_5b",
    "qwen2_1_5b",
    "qwen2_5_0_5b",
    "qwen2_5_14b_base",
    "qwen2_5_14b_instruct",
    "qwen2_5_1_5b_base",
    "qwen2_5_1_5b_instruct",
    "qwen2_5_32b_base",
    "qwen2_5_32b_instruct",
    "qwen2_5_3b",
    "qwen2_5_72b_base",
    "qwen2_5_72b_instruct",
    "qwen2_5_7b_base",
    "qwen2_5_7b_instruct",
    "qwen2_72b",
    "qwen2_7b",
    "qwen2_args_from_hf_config",
    "qwen3",
    "qwen3_0_6b_base",
    "qwen3_0_6b_instruct",
    "qwen3_14b_base",
    "qwen3_14b_instruct",
    "qwen3_1_7b_base",
    "qwen3_1_7b_instruct",
    "qwen3_32b",
    "qwen3_4b_base",
    "qwen3_4b_instruct",
    "qwen3_8b_base",
    "qwen3_8b_instruct",
    "qwen3_args_from_hf_config",
    "qwen_tokenizer",
    "tiny_qwen2_config",
    "tiny_qwen3_config",
    "tokenizer_from_vocab_merges",
    "write_tiny_qwen_checkpoint",
    "write_tiny_qwen_tokenizer",
]
