"""The plugin as users meet it: `tunesmith plugins` / `ls`, its shipped configs, and the
other plugins working without it."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.config import FINETUNE_KINDS as RECIPES
from tunesmith.registry import reset_registry
from tunesmith.testing import check_configs
from tunesmith_qwen._configs import SIZES, shipped_configs

CONFIGS = {c.name: c for c in shipped_configs()}


def test_plugins_lists_qwen_with_what_it_registered():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plugins = data["plugins"] if isinstance(data, dict) else data
    qwen = next(p for p in plugins if p["name"] == "qwen")
    assert qwen["distribution"] == "tunesmith-qwen" and not qwen.get("error")
    registered = qwen["components"]
    assert set(registered["checkpoint_adapters"]) == {"qwen2", "qwen3", "qwen_moe"}
    assert {"qwen2_5_7b_instruct", "qwen3_32b", "qwen2_72b"} <= set(registered["models"])
    assert set(registered["tokenizers"]) == {"qwen2_tokenizer", "qwen3_tokenizer"}
    assert len(registered["configs"]) == len(CONFIGS)
    text = CliRunner().invoke(cli, ["plugins"]).output
    assert "qwen (tunesmith-qwen" in text


def test_every_size_ships_every_kind_under_torchtunes_names():
    assert set(SIZES) == {"qwen2", "qwen2_5", "qwen3"}
    assert {s for s in SIZES["qwen2_5"]} == {"0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"}
    assert {s for s in SIZES["qwen3"]} == {"0.6B", "1.7B", "4B", "8B", "14B", "32B"}
    expected = {f"{f}/{s}_{k}" for f, sizes in SIZES.items() for s in sizes for k in RECIPES}
    assert set(CONFIGS) == expected and len(CONFIGS) == 17 * 6
    assert "qwen2/7B_lora_single_device" in CONFIGS and "qwen2_5/3B_full_distributed" in CONFIGS


@pytest.mark.parametrize("name", ["qwen2_5/7B_lora_single_device", "qwen3/32B_full_distributed",
                                  "qwen2/0.5B_qlora_single_device"])  # fmt: skip
def test_configs_open_with_their_command_and_name_their_components(name, qwen_registry):
    config = CONFIGS[name]
    first = config.text.splitlines()[1]
    assert first.strip().startswith(f"#   tunesmith run {config.recipe}") and name in first
    data = yaml.safe_load(config.text)
    family = name.split("/")[0]
    assert qwen_registry.get("models", data["model"]["_component_"]).family == family[:5]
    assert data["tokenizer"]["_component_"] == "auto"  # the checkpoint's own tokenizer files
    assert (config.requires == "tunesmith-lora") == ("lora" in config.recipe)
    assert ("peft" in data) == ("lora" in config.recipe)


def test_every_config_validates_against_its_recipe(qwen_registry):
    ran = check_configs("qwen")
    assert len(ran) == len(CONFIGS) and not [r for r in ran if "skipped" in r]


def test_other_plugins_work_without_qwen(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama,lora")
    reset_registry()
    registry = tunesmith.get_registry()
    assert "qwen" not in registry.plugins
    assert "qwen2" not in registry.tables["checkpoint_adapters"]
    assert all(p.error is None for p in registry.plugins.values())
    from tunesmith import CheckpointError
    from tunesmith.checkpoint import Checkpointer, find_adapter
    from tunesmith_llama import write_tiny_llama_checkpoint

    assert Checkpointer(write_tiny_llama_checkpoint(tmp_path / "llama")).load_model()
    with pytest.raises(CheckpointError, match="pip install tunesmith-qwen"):
        find_adapter("qwen2")
    result = CliRunner().invoke(cli, ["ls"])
    assert result.exit_code == 0 and "qwen" not in result.output
