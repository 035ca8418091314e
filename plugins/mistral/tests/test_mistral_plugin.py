"""The plugin as a user meets it: `tunesmith plugins` lists what it registered, its
configs are complete and validate, and the other plugins work without it."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.registry import reset_registry
from tunesmith.testing import check_configs
from tunesmith_mistral._configs import RECIPES, SIZES, shipped_configs

MODELS = ["mistral_7b", "mistral_7b_v0_1", "mistral_7b_v0_2", "mistral_7b_v0_3", "mistral_nemo_12b",
          "mistral_small_24b"]  # fmt: skip


def test_plugins_lists_what_it_registered():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = [p for p in json.loads(result.output)["plugins"] if p["name"] == "mistral"]
    assert entry["distribution"] == "tunesmith-mistral" and not entry.get("error")
    components = entry["components"]
    assert components["models"] == MODELS
    assert components["checkpoint_adapters"] == ["mistral", "mixtral"]
    assert "mistral/7B_full_low_memory" in components["configs"]
    text = CliRunner().invoke(cli, ["plugins"]).output
    assert "mistral (tunesmith-mistral 0.1.0)" in text


def test_the_adapter_is_found_by_model_type_and_torchtune_alias():
    from tunesmith.checkpoint import find_adapter

    assert find_adapter("mistral").family == "mistral"
    assert find_adapter("MISTRAL").family == "mistral"
    assert find_adapter("mixtral").family == "mixtral"


def test_every_size_ships_every_kind_opening_with_its_command():
    configs = {c.name: c for c in shipped_configs()}
    expected = {f"mistral/{size}_{kind}" for size in SIZES for kind in RECIPES}
    expected -= {f"mistral/{s}_full_low_memory" for s in SIZES if s != "7B"}
    assert set(configs) == expected
    for name, config in configs.items():
        lines = config.text.splitlines()
        assert lines[0].startswith("#")
        assert lines[1].removeprefix("#").strip().startswith(f"tunesmith run {config.recipe}")
        assert f"--config {name}" in lines[1]
        assert config.requires == ("tunesmith-lora" if "lora" in name else None)
        body = yaml.safe_load(config.text)
        assert body["model"]["_component_"] in MODELS
        assert ("peft" in body) == ("lora" in name)
        if "qlora" in name:
            assert body["peft"]["_component_"] == "qlora"


def test_the_configs_validate_against_their_recipes():
    ran = check_configs("mistral")
    assert len(ran) == len(shipped_configs()) and not [r for r in ran if "skipped" in r]


def test_without_mistral_the_other_plugins_still_work(monkeypatch):
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "lora,eval_eleuther")
    registry = reset_registry()
    registry = tunesmith.get_registry()
    assert "mistral" not in registry.plugins
    assert "mistral_7b_v0_1" not in registry.tables["models"]
    assert "lora" in registry.tables["peft_methods"]
    assert "eleuther_eval" in registry.tables["recipes"]
    result = CliRunner().invoke(cli, ["ls"])
    assert result.exit_code == 0 and "mistral/" not in result.output
