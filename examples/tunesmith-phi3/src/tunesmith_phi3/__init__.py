"""Phi-3 for tunesmith: an example of a model family published as its own distribution.

Installing ``tunesmith-phi3`` registers the ``phi3_mini_4k`` and ``phi3_mini_128k``
builders, the ``phi3`` checkpoint adapter (HF's fused ``qkv_proj``/``gate_up_proj``
split into native q/k/v and gate/up, and fused back on save) and the shipped configs
``phi3/mini_{4k,128k}_{lora,qlora,full}_single_device`` (``tunesmith ls``).
"""

from tunesmith_phi3._builders import HF_REPOS, phi3, phi3_mini_4k, phi3_mini_128k
from tunesmith_phi3._convert import (
    FUSED,
    HF_TO_NATIVE,
    build_from_hf_config,
    phi3_args_from_hf_config,
    tiny_phi3_config,
)

__version__ = "0.1.0"

__all__ = [
    "FUSED",
    "HF_REPOS",
    "HF_TO_NATIVE",
    "__version__",
    "build_from_hf_config",
    "phi3",
    "phi3_args_from_hf_config",
    "phi3_mini_128k",
    "phi3_mini_4k",
    "tiny_phi3_config",
]
