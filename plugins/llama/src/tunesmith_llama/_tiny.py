"""Tiny random Llama configs and checkpoints in Hugging Face format, for tests and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["tiny_llama_config", "write_tiny_llama_checkpoint"]

_BASE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "initializer_range": 0.02,
    "use_cache": True,
}

# Small original context so the llama3 scaling leaves short wavelengths alone,
# blends the middle band and stretches long ones even with head_dim 16.
_LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}

_VARIANTS: dict[str, dict[str, Any]] = {
    # Llama 2: multi-head attention, plain RoPE, separate output head.
    "llama2": {
        "num_key_value_heads": 4,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        "tie_word_embeddings": False,
    },
    # Llama 3.1: grouped-query attention with Llama 3 RoPE scaling.
    "llama3_1": {
        "num_key_value_heads": 2,
        "rope_parameters": _LLAMA3_ROPE,
        "tie_word_embeddings": False,
    },
    # Llama 3.2 1B/3B: as 3.1, with tied embeddings and factor 32.
    "llama3_2": {
        "num_key_value_heads": 2,
        "rope_parameters": {**_LLAMA3_ROPE, "factor": 32.0},
        "tie_word_embeddings": True,
    },
}


def tiny_llama_config(variant: str = "llama3_2", **overrides: Any) -> dict[str, Any]:
    """An HF ``config.json`` dict (transformers-5 key names) for a tiny Llama.

    Args:
        variant: ``"llama2"`` (MHA, plain RoPE), ``"llama3_1"`` (GQA, llama3 RoPE scaling)
            or ``"llama3_2"`` (as 3.1 with tied embeddings).
        **overrides: Replace any config key (``vocab_size=...``, ``num_hidden_layers=...``).
    """
    if variant not in _VARIANTS:
        raise ValueError(
            f"unknown tiny Llama variant {variant!r}: choose one of {sorted(_VARIANTS)}"
        )
    config = {**_BASE, **_VARIANTS[variant], **overrides}
    config["rope_parameters"] = dict(config["rope_parameters"])
    return config


def write_tiny_llama_checkpoint(
    directory: str | Path,
    *,
    variant: str = "llama3_2",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides: Any,
) -> Path:
    """Write a random tiny Llama in HF format (see :func:`tunesmith.testing.write_tiny_checkpoint`).

    Args:
        directory: Created if missing.
        variant: See :func:`tiny_llama_config`.
        seed: Seed of the weights.
        dtype: Dtype of the stored tensors (and of ``config.json``'s ``dtype``).
        **overrides: ``config.json`` keys to replace.

    Returns:
        ``directory`` as a ``Path``.
    """
    from tunesmith.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(
        directory, tiny_llama_config(variant, **overrides), seed=seed, dtype=dtype
    )
