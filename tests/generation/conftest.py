"""Fixtures for the generation tests: tiny random Llama checkpoints with a trained
Llama-3-style tokenizer, loaded natively and in transformers, and a scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("tunesmith_llama")

VARIANTS = ("llama2", "llama3_1", "llama3_2")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    OpenMP threads spinning against other processes make each matmul ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_chat_checkpoint(directory: Path, *, variant: str = "llama3_2", **overrides) -> Path:
    """A tiny Llama whose vocabulary, bos and eos match a trained HF tokenizer
    (``generation_config.json``'s eos is ``<|eot_id|>``, so it is a stop token)."""
    from tunesmith.testing import write_hf_tokenizer
    from tunesmith_llama import write_tiny_llama_checkpoint

    write_hf_tokenizer(directory, vocab_size=300)
    added = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    write_tiny_llama_checkpoint(
        directory,
        variant=variant,
        vocab_size=max(ids.values()) + 1,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
        **overrides,
    )
    return directory


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One checkpoint directory per Llama variant."""
    root = tmp_path_factory.mktemp("generation_ckpts")
    return {v: write_chat_checkpoint(root / v, variant=v) for v in VARIANTS}


@pytest.fixture(scope="session")
def loaded(checkpoints):
    """``loaded(variant) -> (model, tokenizer)`` through tunesmith.load_pretrained, cached."""
    import tunesmith

    cache: dict[str, tuple] = {}

    def load(variant: str = "llama3_2"):
        if variant not in cache:
            cache[variant] = tunesmith.load_pretrained(
                checkpoints[variant], dtype="fp32", device="cpu"
            )
        return cache[variant]

    return load


@pytest.fixture(scope="session")
def hf_loaded(checkpoints):
    """``hf_loaded(variant) -> LlamaForCausalLM`` (fp32, eval), cached."""
    transformers = pytest.importorskip("transformers")
    cache: dict[str, nn.Module] = {}

    def load(variant: str = "llama3_2"):
        if variant not in cache:
            model = transformers.LlamaForCausalLM.from_pretrained(
                str(checkpoints[variant]), dtype=torch.float32
            )
            cache[variant] = model.eval()
        return cache[variant]

    return load


class CounterModel(nn.Module):
    """A scripted "language model": after token ``t`` it always predicts ``t + 1``
    (mod ``vocab``), whatever came before, so expected outputs are known by hand.

    It has the decoder's cache interface (a no-op: nothing depends on history) and
    records every call's shapes.
    """

    def __init__(self, vocab: int = 64, max_seq_len: int = 64) -> None:
        super().__init__()
        self.vocab = vocab
        self.max_seq_len = max_seq_len
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = []
        self._cache = False

    def setup_caches(self, batch_size, dtype, *, max_seq_len=None):
        self._cache = True

    def caches_are_enabled(self):
        return self._cache

    def remove_caches(self):
        self._cache = False

    def forward(self, tokens, *, mask=None, input_pos=None):
        self.calls.append((tuple(tokens.shape), None if mask is None else tuple(mask.shape)))
        logits = torch.zeros(*tokens.shape, self.vocab)
        logits.scatter_(-1, ((tokens + 1) % self.vocab)[..., None], 10.0)
        return logits + self.dummy


@pytest.fixture
def counter():
    return CounterModel()
