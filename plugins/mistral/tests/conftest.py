"""Fixtures for the mistral plugin's tests: offline, caches in a temp dir, a registry with
this plugin and the LoRA and evaluation plugins (the workflow check uses them)."""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub or datasets (the root conftest does the same
# when the whole suite runs).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="tunesmith-mistral-hf-")

import pytest  # noqa: E402

PLUGINS = "mistral,lora,eval_eleuther"


@pytest.fixture(autouse=True)
def mistral_registry(monkeypatch):
    """A fresh registry with this plugin loaded from its installed entry point."""
    import tunesmith
    from tunesmith.registry import reset_registry

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", PLUGINS)
    reset_registry()
    yield tunesmith.get_registry()
    reset_registry()
