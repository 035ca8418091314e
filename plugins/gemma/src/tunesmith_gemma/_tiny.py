"""Tiny random Gemma configs in Hugging Face format, for tests, the conformance kit and
the demo: one per generation, small enough to run in milliseconds, chosen so every
Gemma feature changes the logits (a head_dim unrelated to the width, multi-query or
grouped-query attention, a sliding window shorter than the test sequences, soft-caps
small enough to bend the tiny model's logits, two RoPE bases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tunesmith_gemma._chat import (
    END_OF_TURN,
    GEMMA3_CHAT_TEMPLATE,
    GEMMA_CHAT_TEMPLATE,
    START_OF_TURN,
)

__all__ = [
    "GEMMA_SPECIAL_TOKENS",
    "tiny_gemma2_config",
    "tiny_gemma3_config",
    "tiny_gemma3_text_config",
    "tiny_gemma_config",
    "write_tiny_gemma_checkpoint",
    "write_tiny_gemma_tokenizer",
]

_BASE = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
    "initializer_range": 0.02,
    "use_cache": True,
}


def tiny_gemma_config(**overrides: Any) -> dict[str, Any]:
    """A tiny Gemma (1) ``config.json`` dict (multi-query attention, as Gemma 2B).

    Args:
        **overrides: Replace any config key.
    """
    return {
        **_BASE,
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        "num_key_value_heads": 1,
        "hidden_act": "gelu_pytorch_tanh",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        **overrides,
    }


def tiny_gemma2_config(**overrides: Any) -> dict[str, Any]:
    """A tiny Gemma 2 ``config.json`` dict: a local then a global layer, window 8,
    soft-caps that matter at this scale, ``query_pre_attn_scalar`` unlike ``head_dim``.

    Args:
        **overrides: Replace any config key.
    """
    return {
        **_BASE,
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        "num_key_value_heads": 2,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        "query_pre_attn_scalar": 24,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "attn_logit_softcapping": 0.5,
        "final_logit_softcapping": 0.5,
        **overrides,
    }


def tiny_gemma3_text_config(**overrides: Any) -> dict[str, Any]:
    """A tiny Gemma 3 text (``Gemma3ForCausalLM``) ``config.json`` dict: q/k norms, a
    local layer (base 10k) and a global one (base 1M, linear scaling 8), window 8.

    Args:
        **overrides: Replace any config key.
    """
    return {
        **_BASE,
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "num_key_value_heads": 2,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        },
        "query_pre_attn_scalar": 24,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        **overrides,
    }


def tiny_gemma3_config(**text_overrides: Any) -> dict[str, Any]:
    """A tiny multimodal Gemma 3 (``Gemma3ForConditionalGeneration``) ``config.json`` dict:
    :func:`tiny_gemma3_text_config` as ``text_config`` and a one-layer SigLIP tower.

    Args:
        **text_overrides: Replace any ``text_config`` key.
    """
    text = tiny_gemma3_text_config(**text_overrides)
    for key in ("architectures", "pad_token_id", "eos_token_id", "bos_token_id"):
        text.pop(key)
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": text,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "vision_use_head": False,
        },
        "mm_tokens_per_image": 4,
        # The image tokens keep their real ids (262144...), outside the tiny vocabulary,
        # so random text never contains one.
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
    }


_TINY = {
    "gemma": tiny_gemma_config,
    "gemma2": tiny_gemma2_config,
    "gemma3_text": tiny_gemma3_text_config,
    "gemma3": tiny_gemma3_config,
}


def write_tiny_gemma_checkpoint(
    directory: str | Path,
    *,
    generation: str = "gemma2",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides: Any,
) -> Path:
    """Write a random tiny Gemma in HF format (see :func:`tunesmith.testing.write_tiny_checkpoint`).

    Args:
        directory: Created if missing.
        generation: ``"gemma"``, ``"gemma2"``, ``"gemma3_text"`` or ``"gemma3"`` (only
            the language model's weights: build a full multimodal checkpoint with
            transformers, :func:`tunesmith.testing.reference_checkpoint`).
        seed: Seed of the weights.
        dtype: Dtype of the stored tensors.
        **overrides: ``config.json`` keys to replace (``text_config`` keys for ``gemma3``).

    Returns:
        ``directory`` as a ``Path``.
    """
    from tunesmith.testing import write_tiny_checkpoint

    if generation not in _TINY:
        raise ValueError(f"unknown Gemma generation {generation!r}: choose one of {sorted(_TINY)}")
    return write_tiny_checkpoint(directory, _TINY[generation](**overrides), seed=seed, dtype=dtype)


#: Gemma's special-token ids (as in every release): ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2,
#: ``<unk>`` 3; the turn markers follow in the tiny tokenizer.
GEMMA_SPECIAL_TOKENS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}


def write_tiny_gemma_tokenizer(
    directory: str | Path,
    *,
    generation: str = "gemma2",
    vocab_size: int = 400,
    corpus: str | None = None,
) -> Path:
    """Train a tiny Gemma-style sentencepiece tokenizer and write it as a checkpoint ships it.

    Like Gemma's: BPE with byte fallback, no dummy prefix, digits split, ``<pad>`` 0,
    ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<start_of_turn>`` / ``<end_of_turn>`` as
    user-defined pieces (sentencepiece reads them from text). Writes ``tokenizer.model``
    and a ``tokenizer_config.json`` with the generation's chat template that
    ``transformers.AutoTokenizer`` loads.

    Args:
        directory: Where to write (created if missing).
        generation: ``"gemma"``/``"gemma2"`` (their template refuses system messages) or
            ``"gemma3"``/``"gemma3_text"`` (it folds them into the first user turn).
        vocab_size: Pieces in the model (at most the tiny configs' 512).
        corpus: Training text, one sentence per line; default
            :data:`tunesmith.testing.TOKENIZER_CORPUS`.

    Returns:
        ``directory`` as a ``Path``.
    """
    from tunesmith.testing import write_sentencepiece_model

    directory = Path(directory)
    write_sentencepiece_model(
        directory, vocab_size=vocab_size, byte_fallback=True, corpus=corpus,
        add_dummy_prefix=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=[START_OF_TURN, END_OF_TURN],
    )  # fmt: skip
    template = GEMMA3_CHAT_TEMPLATE if generation.startswith("gemma3") else GEMMA_CHAT_TEMPLATE
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": [START_OF_TURN, END_OF_TURN],
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "chat_template": template,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
