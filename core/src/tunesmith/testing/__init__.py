"""Test helpers for tunesmith and its plugins: fixtures and conformance checks."""

from tunesmith.testing._fake_hub import FakeHub
from tunesmith.testing._fake_tokenizer import FakeTokenizer
from tunesmith.testing._tiny_llama import tiny_llama_config, write_tiny_llama_checkpoint
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
    "tiny_llama_config",
    "write_hf_tokenizer",
    "write_sentencepiece_model",
    "write_tiktoken_ranks",
    "write_tiny_llama_checkpoint",
]
