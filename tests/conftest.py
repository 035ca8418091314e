"""Test-suite defaults: offline, caches in a temp dir, only this repository's plugins."""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub or datasets.
_CACHE = tempfile.mkdtemp(prefix="tunesmith-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["HF_HOME"] = os.path.join(_CACHE, "hf")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(_CACHE, "inductor")
os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(_CACHE, "tiktoken")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
# Entry points other than this repository's own plugins stay out of the suite;
# tests of discovery set this variable themselves.
os.environ["TUNESMITH_LOAD_PLUGINS"] = "llama,lora,eval_eleuther,mistral,phi3,qwen,gemma"
# The suite's own fake components (optimizers, loggers, builders defined in test modules)
# are "the user's own modules": trusted explicitly, as a user would trust theirs.
os.environ["TUNESMITH_TRUSTED_MODULES"] = "config,recipes,checkpoint,data,training,test_cli,test_registry,test_hookspecs"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test sees a registry loaded for it, and leaves none behind."""
    from tunesmith.registry import reset_registry

    reset_registry()
    yield
    reset_registry()
