"""Fixtures for the gemma plugin's tests: a registry with this plugin (and LoRA) loaded,
tiny tokenizer directories."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunesmith
from tunesmith.registry import reset_registry
from tunesmith_gemma import write_tiny_gemma_tokenizer


@pytest.fixture(autouse=True)
def gemma_registry(monkeypatch):
    """Load the installed ``gemma`` and ``lora`` entry points (the suite turns autoload off)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "gemma,lora")
    reset_registry()
    yield tunesmith.get_registry()
    reset_registry()


@pytest.fixture
def tokenizer_dir(tmp_path_factory):
    """``tokenizer_dir(generation, kind)``: a directory holding a tiny Gemma tokenizer as
    ``tokenizer.model`` (``kind="sentencepiece"``) or as transformers converts it to
    ``tokenizer.json`` (``kind="json"``), with the generation's real chat template."""

    def make(generation: str, kind: str = "sentencepiece") -> Path:
        directory = tmp_path_factory.mktemp(f"{generation}-{kind}")
        write_tiny_gemma_tokenizer(directory, generation=generation)
        if kind == "json":
            import transformers

            converted = directory.parent / f"{directory.name}-json"
            transformers.AutoTokenizer.from_pretrained(str(directory)).save_pretrained(converted)
            (converted / "tokenizer.model").unlink(missing_ok=True)
            return converted
        return directory

    return make
