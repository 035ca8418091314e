"""The Llama family for tunesmith: Llama 2, Code Llama, Llama 3, 3.1, 3.2 and 3.3.

Installing ``tunesmith-llama`` registers the model builders below, the ``llama``
checkpoint adapter (HF safetensors and Meta ``consolidated.pth``) and the shipped
configs (``tunesmith ls``).
"""

from tunesmith_llama._component_builders import llama
from tunesmith_llama._convert import (
    HF_TO_NATIVE,
    META_TO_NATIVE,
    build_from_hf_config,
    build_from_meta_params,
    hf_config_from_meta_params,
    meta_to_native,
    permute_meta_qk,
)
from tunesmith_llama._model_builders import (
    code_llama2_7b,
    code_llama2_13b,
    code_llama2_70b,
    llama2_7b,
    llama2_13b,
    llama2_70b,
    llama3_1_8b,
    llama3_1_70b,
    llama3_1_405b,
    llama3_2_1b,
    llama3_2_3b,
    llama3_3_70b,
    llama3_8b,
    llama3_70b,
)
from tunesmith_llama._tiny import tiny_llama_config, write_tiny_llama_checkpoint
from tunesmith_llama._tokenizer import (
    Llama2Tokenizer,
    Llama3Tokenizer,
    llama2_tokenizer,
    llama3_special_tokens,
    llama3_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "HF_TO_NATIVE",
    "META_TO_NATIVE",
    "Llama2Tokenizer",
    "Llama3Tokenizer",
    "__version__",
    "build_from_hf_config",
    "build_from_meta_params",
    "code_llama2_13b",
    "code_llama2_70b",
    "code_llama2_7b",
    "hf_config_from_meta_params",
    "llama",
    "llama2_13b",
    "llama2_70b",
    "llama2_7b",
    "llama2_tokenizer",
    "llama3_1_405b",
    "llama3_1_70b",
    "llama3_1_8b",
    "llama3_2_1b",
    "llama3_2_3b",
    "llama3_3_70b",
    "llama3_70b",
    "llama3_8b",
    "llama3_special_tokens",
    "llama3_tokenizer",
    "meta_to_native",
    "permute_meta_qk",
    "tiny_llama_config",
    "write_tiny_llama_checkpoint",
]
