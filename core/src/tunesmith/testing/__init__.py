"""Test helpers for tunesmith and its plugins: tiny fixtures, a fake Hub, and the
conformance kit (``check_family``, ``check_peft_method``, ... and ``check_plugin``, which
``tunesmith plugins check NAME`` runs)."""

from tunesmith.testing._fake_hub import FakeHub
from tunesmith.testing._fake_tokenizer import FakeTokenizer
from tunesmith.testing._kit import ConformanceError, check_family, reference_checkpoint
from tunesmith.testing._kit_components import (
    CONVERSATIONS,
    check_chat_template,
    check_configs,
    check_dataset,
    check_evaluator,
    check_peft_method,
    check_plugin,
    check_quantizer,
    check_tokenizer,
)
from tunesmith.testing._registry import plugin_registry
from tunesmith.testing._tiny import random_state_dict, write_tiny_checkpoint
from tunesmith.testing._tokenizers import (
    LLAMA3_CHAT_TEMPLATE,
    TOKENIZER_CORPUS,
    write_hf_tokenizer,
    write_sentencepiece_model,
    write_tiktoken_ranks,
)
from tunesmith.testing._workflow import WORKFLOW_STEPS, check_workflow

__all__ = [
    "CONVERSATIONS",
    "LLAMA3_CHAT_TEMPLATE",
    "TOKENIZER_CORPUS",
    "WORKFLOW_STEPS",
    "ConformanceError",
    "FakeHub",
    "FakeTokenizer",
    "check_chat_template",
    "check_configs",
    "check_dataset",
    "check_evaluator",
    "check_family",
    "check_peft_method",
    "check_plugin",
    "check_quantizer",
    "check_tokenizer",
    "check_workflow",
    "plugin_registry",
    "random_state_dict",
    "reference_checkpoint",
    "write_hf_tokenizer",
    "write_sentencepiece_model",
    "write_tiktoken_ranks",
    "write_tiny_checkpoint",
]
