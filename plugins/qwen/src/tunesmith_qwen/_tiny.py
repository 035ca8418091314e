"""Tiny random Qwen configs, checkpoints and tokenizers in Hugging Face format, for tests
and demos.

The tokenizer files are shaped like the released ones (byte-level BPE with Qwen's
pre-tokenizer, ChatML special tokens, ``tokenizer_config.json`` with the real chat
template of each release), only with a vocabulary trained in-process on a few lines.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHAT_TEMPLATES",
    "tiny_qwen2_config",
    "tiny_qwen3_config",
    "write_tiny_qwen_checkpoint",
    "write_tiny_qwen_tokenizer",
]

_BASE = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": True,
}
_ROPE = {"rope_type": "default", "rope_theta": 1_000_000.0}

_QWEN2_VARIANTS: dict[str, dict[str, Any]] = {
    # Qwen2.5 0.5B-3B: tied embeddings, no sliding window (transformers-5 keys).
    "tied": {"tie_word_embeddings": True, "use_sliding_window": False, "max_window_layers": 2},
    # A config.json as transformers 4 wrote Qwen2's (top-level rope_theta and rope_scaling,
    # torch_dtype), for a 7B-72B shape (untied) with use_sliding_window switched on, so
    # layers from max_window_layers on attend to the last 8 tokens only, and the YaRN
    # rope_scaling block Qwen2.5 documents for long contexts.
    "transformers4": {
        "tie_word_embeddings": False,
        "use_sliding_window": True,
        "sliding_window": 8,
        "max_window_layers": 1,
        "rope_theta": 1_000_000.0,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
        "torch_dtype": "float32",
        "transformers_version": "4.43.1",
    },
}

_QWEN3_VARIANTS: dict[str, dict[str, Any]] = {
    # Qwen3 0.6B-4B: tied embeddings; head_dim independent of the width (4 x 32 != 64).
    "tied": {"tie_word_embeddings": True, "head_dim": 32, "use_sliding_window": False},
    # As transformers 4.51 wrote Qwen3's config.json (rope_theta, torch_dtype), for an
    # 8B-32B shape (untied) with a sliding window on the second layer.
    "transformers4": {
        "tie_word_embeddings": False,
        "head_dim": 16,
        "attention_bias": False,
        "use_sliding_window": True,
        "sliding_window": 8,
        "max_window_layers": 1,
        "rope_theta": 1_000_000.0,
        "rope_scaling": None,
        "torch_dtype": "float32",
        "transformers_version": "4.51.0",
    },
}


def _config(model_type: str, variants: dict, variant: str, overrides: dict) -> dict[str, Any]:
    if variant not in variants:
        raise ValueError(
            f"unknown tiny {model_type} variant {variant!r}: choose one of {sorted(variants)}"
        )
    architecture = "Qwen2ForCausalLM" if model_type == "qwen2" else "Qwen3ForCausalLM"
    config = {"architectures": [architecture], "model_type": model_type, **_BASE}
    config.update(variants[variant])
    if "rope_theta" not in config:
        config["rope_parameters"] = dict(_ROPE)
    config.update(overrides)
    return config


def tiny_qwen2_config(variant: str = "tied", **overrides: Any) -> dict[str, Any]:
    """An HF ``config.json`` dict for a tiny Qwen 2/2.5 (hidden 64, 2 layers, vocab 512).

    Args:
        variant: ``"tied"`` (tied embeddings, transformers-5 keys) or
            ``"transformers4"`` (the layout transformers 4 wrote: ``rope_theta``, a YaRN
            ``rope_scaling``, ``torch_dtype``; untied, a sliding window on layer 1).
        **overrides: Replace any config key.
    """
    return _config("qwen2", _QWEN2_VARIANTS, variant, overrides)


def tiny_qwen3_config(variant: str = "tied", **overrides: Any) -> dict[str, Any]:
    """An HF ``config.json`` dict for a tiny dense Qwen 3 (hidden 64, 2 layers, vocab 512).

    Args:
        variant: ``"tied"`` (tied embeddings, ``head_dim`` 32 wider than
            ``hidden / heads``) or ``"transformers4"`` (``rope_theta``, ``torch_dtype``;
            untied, a sliding window on layer 1).
        **overrides: Replace any config key.
    """
    return _config("qwen3", _QWEN3_VARIANTS, variant, overrides)


def write_tiny_qwen_checkpoint(
    directory: str | Path,
    config: dict[str, Any],
    *,
    seed: int = 0,
    tokenizer: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a random tiny Qwen in HF format, optionally with tokenizer files beside it.

    Args:
        directory: Created if missing.
        config: A ``config.json`` dict (:func:`tiny_qwen2_config`, :func:`tiny_qwen3_config`).
        seed: Seed of the weights.
        tokenizer: Also write a tokenizer (see :func:`write_tiny_qwen_tokenizer`):
            ``"qwen2"``, ``"qwen2_5"`` or ``"qwen3"``.
        dtype: Dtype of the stored tensors.

    Returns:
        ``directory`` as a ``Path``.
    """
    from tunesmith.testing import write_tiny_checkpoint

    directory = write_tiny_checkpoint(directory, config, seed=seed, dtype=dtype)
    if tokenizer is not None:
        write_tiny_qwen_tokenizer(directory, release=tokenizer)
    return directory


# ---- tokenizers ---------------------------------------------------------------------


def _template(name: str) -> str:
    return resources.files("tunesmith_qwen").joinpath(f"chat_templates/{name}.jinja").read_text()


#: Release -> the chat template its instruct checkpoints ship (Qwen2-*-Instruct,
#: Qwen2.5-*-Instruct, Qwen3-*): data copied from their ``tokenizer_config.json``.
CHAT_TEMPLATES = {name: _template(name) for name in ("qwen2", "qwen2_5", "qwen3")}

#: Qwen's pre-tokenization regex (single digits, unlike Llama 3's runs of three).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# (text, special) in id order after the learned vocabulary, as in the released files.
_ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
]
_QWEN3_ADDED = [("<think>", False), ("</think>", False)]

_CORPUS = """\
The lighthouse keeper wrote in his logbook every evening, noting the wind and the tide.
A small model learns to predict the next word from the words before it, one token at a time.
Fine-tuning adjusts the weights of a pretrained network so that it follows instructions.
What is the capital of France? Paris is the capital and largest city of France.
Name a prime number. Seven. And another one? Eleven, then thirteen.
You answer briefly. You are a helpful assistant. Answer truthfully and concisely.
Let me think step by step: two plus two is four, so the answer is 4.
The train left at 7:45 and arrived 4 hours and 15 minutes later, just after noon.
def add(a, b):
    return a + b
Numbers like 3.14159, 2.71828 and 42 appear often in mathematics.
Please summarize the following paragraph in one sentence, keeping the important facts.
Sure! Here is a short summary of the text you provided, written in plain language.
Rivers carry sediment from the mountains to the sea, building deltas where water slows.
Hello world! This tiny tokenizer was trained only for tests; its vocabulary is small.
"""


def write_tiny_qwen_tokenizer(
    directory: str | Path, *, release: str = "qwen2_5", vocab_size: int = 480
) -> Path:
    """Train a tiny Qwen-style tokenizer and write ``tokenizer.json``,
    ``tokenizer_config.json`` and ``generation_config.json`` (if missing) as an instruct
    release ships them.

    Special tokens follow the learned vocabulary: ``<|endoftext|>`` (pad), ``<|im_start|>``,
    ``<|im_end|>`` (eos), ``<tool_call>``, ``</tool_call>``, and for Qwen 3 ``<think>``,
    ``</think>`` (added tokens that are not special, so decoding keeps them).

    Args:
        directory: Where to write (created if missing).
        release: ``"qwen2"``, ``"qwen2_5"`` or ``"qwen3"``: which chat template (and, for
            Qwen 3, which added tokens) to ship.
        vocab_size: Learned vocabulary size at most (the corpus may yield fewer).

    Returns:
        ``directory`` as a ``Path``.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    if release not in CHAT_TEMPLATES:
        raise ValueError(
            f"unknown Qwen release {release!r}: choose one of {sorted(CHAT_TEMPLATES)}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer)
    added = _ADDED_TOKENS + (_QWEN3_ADDED if release == "qwen3" else [])
    decoder = {}
    for text, special in added:
        token = AddedToken(text, special=special, normalized=False)
        (tokenizer.add_special_tokens if special else tokenizer.add_tokens)([token])
        decoder[str(tokenizer.token_to_id(text))] = {
            "content": text, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special,
        }  # fmt: skip
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATES[release],
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32_768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    ids = [tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")]
    generation = directory / "generation_config.json"
    settings = json.loads(generation.read_text()) if generation.is_file() else {}
    settings.update(bos_token_id=ids[1], eos_token_id=ids, pad_token_id=ids[1])
    generation.write_text(json.dumps(settings, indent=2) + "\n")
    return directory
