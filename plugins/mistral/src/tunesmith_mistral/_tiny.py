"""Tiny random Mistral configs and checkpoints (with tokenizer files) in Hugging Face
format, for tests and the demo."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from tunesmith_mistral._chat_templates import (
    MISTRAL_NEMO_CHAT_TEMPLATE,
    MISTRAL_V1_CHAT_TEMPLATE,
    MISTRAL_V3_CHAT_TEMPLATE,
)

__all__ = [
    "NEMO_SPECIAL_TOKENS",
    "TEKKEN_PATTERN",
    "V3_CONTROL_TOKENS",
    "tiny_mistral_config",
    "write_tiny_mistral_checkpoint",
    "write_tiny_mistral_tokenizer",
]

_BASE = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,  # room for a chat-formatted prompt
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "use_cache": True,
}

_VARIANTS: dict[str, dict[str, Any]] = {
    # Mistral 7B v0.1: every layer attends to a window (4096 there, 8 here so that the
    # tests' sequences cross it), theta 1e4.
    "v0_1": {
        "head_dim": 16,
        "sliding_window": 8,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
    },
    # v0.2 / v0.3: full attention, theta 1e6.
    "v0_3": {
        "head_dim": 16,
        "sliding_window": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
    },
    # NeMo / Small: head_dim fixed (128 there) independent of hidden_size / heads.
    "nemo": {
        "head_dim": 32,
        "sliding_window": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
    },
    # A config.json as transformers 4 wrote v0.1's: top-level rope_theta and
    # torch_dtype, no head_dim.
    "hf4": {"sliding_window": 8, "rope_theta": 10_000.0, "torch_dtype": "float32"},
}

#: Mistral 7B v0.3's control tokens, ids 3-9 (``[control_8]`` ... follow up to id 770).
V3_CONTROL_TOKENS = (
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
)

#: The first special tokens of Mistral NeMo's tekken vocabulary, ids 0-19
#: (``<SPECIAL_20>`` ... ``<SPECIAL_999>`` follow).
NEMO_SPECIAL_TOKENS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)  # fmt: skip

#: Tekken's pre-tokenization regex (the ``Split`` of NeMo's tokenizer.json).
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# Training text for the tiny tekken vocabulary (byte-level, so any text still encodes).
_CORPUS = """\
What is the capital of France? Paris is the capital and largest city of France.
Name a prime number. Seven is prime, and so are eleven and thirteen.
You answer briefly. Sure! Here is a short answer, written in plain language.
The lighthouse keeper wrote in his logbook every evening, noting the wind and the tide.
Fine-tuning adjusts the weights of a pretrained network so that it follows instructions.
def add(a, b):
    return a + b
Numbers like 3.14159, 2.71828 and 42 appear often in mathematics and in jokes.
Hello world! This tiny vocabulary exists only for tests, so it is small.
UPPER CASE WORDS, lower case words, and Mixed Case Words all need handling.
"""


def tiny_mistral_config(variant: str = "v0_1", **overrides: Any) -> dict[str, Any]:
    """An HF ``config.json`` dict for a tiny Mistral (2 layers, width 64, vocabulary 512).

    Args:
        variant: ``"v0_1"`` (sliding window 8), ``"v0_3"`` (full attention, theta 1e6),
            ``"nemo"`` (head_dim 32 at width 64 with 4 heads) or ``"hf4"`` (v0.1 as
            transformers 4 wrote it: top-level ``rope_theta`` and ``torch_dtype``).
        **overrides: Replace any config key (``vocab_size=...``, ``sliding_window=...``).

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in _VARIANTS:
        raise ValueError(
            f"unknown tiny Mistral variant {variant!r}: choose one of {sorted(_VARIANTS)}"
        )
    return copy.deepcopy({**_BASE, **_VARIANTS[variant], **overrides})


def _sentencepiece_files(directory: Path, template: str, control: tuple[str, ...]) -> None:
    from tunesmith.testing import write_sentencepiece_model

    write_sentencepiece_model(
        directory, vocab_size=400, byte_fallback=True, control_symbols=control
    )
    added = {
        str(i): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": True}
        for i, token in enumerate(("<unk>", "<s>", "</s>", *control))
    }  # fmt: skip
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": "<s>",
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": False,
        "pad_token": None,
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _tekken_files(directory: Path) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(TEKKEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=480,
        min_frequency=2,
        special_tokens=list(NEMO_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "bos_token": "<s>",
        "chat_template": MISTRAL_NEMO_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": 1024000,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def write_tiny_mistral_tokenizer(directory: str | Path, variant: str = "v0_1") -> Path:
    """Write tokenizer files shaped like a Mistral instruct checkpoint's, trained in-process.

    ``"v0_1"`` (and ``"hf4"``): a sentencepiece ``tokenizer.model`` (``<unk>``, ``<s>``,
    ``</s>`` = 0-2) with the v0.1/v0.2 chat template; ``"v0_3"``: the same plus the
    control tokens ``[INST]`` ... at 3-9 and the v0.3 template; ``"nemo"``: a
    tekken-style byte-level ``tokenizer.json`` whose first 20 ids are NeMo's special
    tokens, with NeMo's template. Every vocabulary fits in 512 ids.

    Returns:
        ``directory`` as a ``Path``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if variant == "nemo":
        _tekken_files(directory)
    elif variant == "v0_3":
        _sentencepiece_files(directory, MISTRAL_V3_CHAT_TEMPLATE, V3_CONTROL_TOKENS)
    else:
        _sentencepiece_files(directory, MISTRAL_V1_CHAT_TEMPLATE, ())
    return directory


def write_tiny_mistral_checkpoint(
    directory: str | Path,
    *,
    variant: str = "v0_1",
    tokenizer: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides: Any,
) -> Path:
    """Write a random tiny Mistral in HF format, with tokenizer files beside it.

    Args:
        directory: Created if missing.
        variant: See :func:`tiny_mistral_config` and :func:`write_tiny_mistral_tokenizer`.
        tokenizer: Also write the variant's tokenizer files.
        seed: Seed of the weights.
        dtype: Dtype of the stored tensors (and of ``config.json``'s ``dtype``).
        **overrides: ``config.json`` keys to replace.

    Returns:
        ``directory`` as a ``Path``.
    """
    from tunesmith.testing import write_tiny_checkpoint

    directory = write_tiny_checkpoint(
        directory, tiny_mistral_config(variant, **overrides), seed=seed, dtype=dtype
    )
    if tokenizer:
        write_tiny_mistral_tokenizer(directory, variant)
    return directory
