"""Phi-3 and Phi-4 for tunesmith: an example of a model family published as its own
distribution.

Installing ``tunesmith-phi3`` registers the ``phi3_mini_4k``, ``phi3_mini_128k`` and
``phi4_14b`` builders (and ``phi3_mini``, torchtune's name of the 4k model), the
``phi3`` checkpoint adapter (HF's fused ``qkv_proj``/``gate_up_proj`` split into
native q/k/v and gate/up, and fused back on save; Phi-4 checkpoints are ``phi3`` too)
and the shipped configs ``phi3/mini_{4k,128k}_{lora,qlora,full}_single_device``, and
``phi3/mini_*`` and ``phi4/14B_*`` under torchtune's names (``tunesmith ls``).
"""

from tunesmith_phi3._builders import HF_REPOS, phi3, phi3_mini_4k, phi3_mini_128k, phi4_14b
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
    "phi4_14b",
    "tiny_phi3_config",
]
