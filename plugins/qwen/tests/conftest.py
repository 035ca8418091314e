"""Fixtures for the qwen plugin's tests: a registry with this plugin (and LoRA) loaded."""

from __future__ import annotations

import pytest

import tunesmith
from tunesmith.registry import reset_registry


@pytest.fixture(autouse=True)
def qwen_registry(monkeypatch):
    """Load the installed ``qwen`` entry point, and ``lora`` for the LoRA checks."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "qwen,lora")
    reset_registry()
    yield tunesmith.get_registry()
    reset_registry()
