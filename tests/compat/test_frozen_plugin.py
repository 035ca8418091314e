"""A plugin written against plugin API 1 (a frozen copy of that day's llama plugin) still
loads, and still matches transformers, LoRA-in-PEFT included."""

from __future__ import annotations

import pytest

from compat.frozen_llama_v1 import plugin as frozen
from tunesmith.registry import load_registry, reset_registry
from tunesmith.testing import check_configs, check_family

tunesmith_llama = pytest.importorskip("tunesmith_llama")
pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture
def registry(monkeypatch):
    # Only the frozen plugin provides the llama family; tunesmith-lora gives the LoRA
    # method and recipes its configs name.
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "lora")
    registry = load_registry(extra={"llama": frozen})
    reset_registry(registry)
    yield registry
    reset_registry()


def test_it_loads_as_api_1(registry):
    info = registry.plugins["llama"]
    assert info.error is None and info.api == 1
    assert registry.get("checkpoint_adapters", "llama").origin.plugin == "llama"
    assert "llama3_2_1b" in info.components["models"]


def test_it_still_matches_transformers(registry, tmp_path):
    configs = [tunesmith_llama.tiny_llama_config(v) for v in ("llama2", "llama3_2")]
    ran = check_family("llama", configs=configs, work_dir=tmp_path, registry=registry)
    assert [r for r in ran if "skipped" in r] == []
    assert "lora [llama #1]" in ran and "generation [llama #0]" in ran


def test_its_configs_still_validate(registry):
    assert check_configs("llama", registry=registry) == [
        "llama3_2/1B_full_single_device",
        "llama3_2/1B_lora_single_device",
    ]
