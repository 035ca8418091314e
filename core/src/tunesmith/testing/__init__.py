"""Test helpers for tunesmith and its plugins: fixtures and conformance checks."""

from tunesmith.testing._fake_hub import FakeHub
from tunesmith.testing._fake_tokenizer import FakeTokenizer
from tunesmith.testing._tiny import random_state_dict, write_tiny_checkpoint
from tunesmith.testing._tokenizers import (
    LLAMA3_CHAT_TEMPLATE,
    write_hf_tokenizer,
    write_sentencepiece_model,
    write_tiktoken_ranks,
)

__all__ = [
    "LLAMA3_CHAT_TEMPLATE",
    "FakeHub",
    "FakeTokenizer",
    "random_state_dict",
    "write_hf_tokenizer",
    "write_sentencepiece_model",
    "write_tiktoken_ranks",
    "write_tiny_checkpoint",
]
