"""Fixtures for the tunesmith-lora tests (helpers live in _lora_toy.py)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from _lora_toy import VOCAB, toy_adapter  # noqa: E402

from tunesmith import CheckpointAdapter  # noqa: E402


@pytest.fixture
def adapter() -> CheckpointAdapter:
    return toy_adapter()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    """A registry with only this repository's plugins, fresh for each test."""
    from tunesmith.registry import reset_registry

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama,lora")
    reset_registry()
    yield
    reset_registry()
