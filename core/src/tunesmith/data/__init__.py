"""Datasets, chat messages, prompt templates, packing and collation.

Builders (``alpaca``, ``instruct``, ``chat``, ``text_completion``) load rows with
:func:`load_rows` (the Hugging Face Hub, local json/jsonl/csv/parquet/txt files, or
``"tunesmith:alpaca_sample"``) and return map-style datasets of
``{"tokens": list[int], "labels": list[int]}``: ``labels`` equals ``tokens`` where the
loss trains and ``CROSS_ENTROPY_IGNORE_IDX`` elsewhere, *not* shifted (the recipe
shifts). ``packed=True`` wraps them in :class:`PackedDataset`. Batch them with
:func:`padded_collate`, which hands packs to :func:`packed_collate`, or with
:func:`padding_free_collate` (a batch's samples end to end in one row, attention per
sample: the finetune recipe's default for unpacked data).

Validation data: every builder takes ``datasets``' split slicing, so a validation set
is a second dataset built from the same config with the complementary slice, e.g.
``split="train[:90%]"`` in the recipe's ``dataset`` block and ``split="train[90%:]"``
in its ``validation_dataset`` block;
:func:`train_validation_splits` computes the pair from a fraction. Slices are
contiguous, deterministic and disjoint; shuffle the file first if its order matters.

Names that need torch (datasets, packing, collation) load on first access, so
``from tunesmith.data import Message`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data._chat import chat, conversation_to_messages
from tunesmith.data._instruct import alpaca, alpaca_prompt, instruct
from tunesmith.data._loading import SAMPLE_ALPACA, SAMPLES, load_rows, train_validation_splits
from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX, Message, ModelTokenizer, Role
from tunesmith.data._prompt import PROMPT_TEMPLATES, PromptTemplate, prompt_template
from tunesmith.data._text import text_completion

__all__ = [
    "CROSS_ENTROPY_IGNORE_IDX",
    "ConcatenatedDataset",
    "PROMPT_TEMPLATES",
    "PromptTemplate",
    "SAMPLES",
    "SAMPLE_ALPACA",
    "Message",
    "ModelTokenizer",
    "PackedDataset",
    "Role",
    "SFTDataset",
    "TextCompletionDataset",
    "Truncation",
    "alpaca",
    "alpaca_prompt",
    "chat",
    "conversation_to_messages",
    "create_block_causal_mask",
    "instruct",
    "load_rows",
    "lost_responses",
    "packed_collate",
    "padded_collate",
    "padding_free_collate",
    "prompt_template",
    "text_completion",
    "train_validation_splits",
]

_LAZY = {
    "ConcatenatedDataset": "tunesmith.data._concat",
    "PackedDataset": "tunesmith.data._packed",
    "create_block_causal_mask": "tunesmith.data._packed",
    "SFTDataset": "tunesmith.data._sft",
    "TextCompletionDataset": "tunesmith.data._sft",
    "Truncation": "tunesmith.data._sft",
    "lost_responses": "tunesmith.data._sft",
    "packed_collate": "tunesmith.data._collate",
    "padded_collate": "tunesmith.data._collate",
    "padding_free_collate": "tunesmith.data._collate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunesmith.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
