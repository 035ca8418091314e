"""Fixtures for the llama plugin's tests: a registry with this plugin loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import tunesmith
from tunesmith.checkpoint import remap_keys
from tunesmith.registry import reset_registry


@pytest.fixture(autouse=True)
def llama_registry(monkeypatch):
    """Load the installed ``llama`` entry point (the suite turns autoload off by default)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama")
    reset_registry()
    yield tunesmith.get_registry()
    reset_registry()


@pytest.fixture
def load_native():
    """``load_native(directory) -> model``: build from config.json and load model.safetensors."""

    def load(directory: Path, **overrides):
        adapter = tunesmith.get_registry().get("checkpoint_adapters", "llama")
        config = json.loads((Path(directory) / "config.json").read_text())
        model = adapter.build_from_hf_config(config, **overrides)
        state_dict = remap_keys(
            load_file(Path(directory) / "model.safetensors"), adapter.hf_to_native
        )
        model.load_state_dict(state_dict, strict=True)
        return model.eval()

    return load
