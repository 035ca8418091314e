"""Every shipped config is rendered, registered, consistent with its name, and validates."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

import tunesmith
from tunesmith.config import CORE_TEMPLATES
from tunesmith.registry import reset_registry
from tunesmith_llama._configs import shipped_configs

CONFIGS = {c.name: c for c in shipped_configs()}
NAMES = sorted(CONFIGS)
FAMILIES = {
    "llama2": ["7B", "13B", "70B"],
    "code_llama2": ["7B", "13B", "70B"],
    "llama3": ["8B", "70B"],
    "llama3_1": ["8B", "70B", "405B"],
    "llama3_2": ["1B", "3B"],
    "llama3_3": ["70B"],
}
KINDS = {
    "full_single_device": "full_finetune_single_device",
    "full_distributed": "full_finetune_distributed",
    "lora_single_device": "lora_finetune_single_device",
    "lora_distributed": "lora_finetune_distributed",
    "qlora_single_device": "qlora_finetune_single_device",
    "qlora_distributed": "lora_finetune_distributed",
    "full_low_memory": "full_finetune_single_device",  # Llama 2 and Code Llama 7B only
    "dora_single_device": "lora_finetune_single_device",  # Llama 3 8B only, as in torchtune
    "dora_distributed": "lora_finetune_distributed",
    "qdora_single_device": "qlora_finetune_single_device",
}
# Kinds torchtune ships for some sizes only.
ONLY = {
    "full_low_memory": {"llama2/7B", "code_llama2/7B"},
    "dora_single_device": {"llama3/8B"},
    "dora_distributed": {"llama3/8B"},
    "qdora_single_device": {"llama3/8B"},
}


@pytest.fixture
def registry(monkeypatch):
    # The LoRA recipes and methods come from tunesmith-lora, when installed.
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama,lora")
    reset_registry()
    return tunesmith.get_registry()


def test_every_size_ships_every_kind():
    expected = {
        f"{family}/{size}_{kind}"
        for family, sizes in FAMILIES.items()
        for size in sizes
        for kind in KINDS
        if f"{family}/{size}" in ONLY.get(kind, {f"{family}/{size}"})
    }
    assert set(NAMES) == expected
    assert len(NAMES) == 89
    assert {n for n in NAMES if n.endswith("low_memory")} == {
        "llama2/7B_full_low_memory",
        "code_llama2/7B_full_low_memory",
    }
    assert {n for n in NAMES if "dora" in n} == {
        "llama3/8B_dora_single_device",
        "llama3/8B_dora_distributed",
        "llama3/8B_qdora_single_device",
    }


def test_every_config_is_registered_from_the_cores_template_per_kind(registry):
    registered = {
        c.name: c for c in registry.values("configs") if c.origin.distribution == "tunesmith-llama"
    }
    assert set(registered) == set(NAMES)
    for name, config in registered.items():
        assert config.path == CORE_TEMPLATES / f"{name.split('/')[1].split('_', 1)[1]}.yaml"
        assert config.recipe == _kind(name)
        assert config.requires == ("tunesmith-lora" if "lora" in config.recipe else None)


def _kind(name: str) -> str:
    return KINDS[name.split("/")[1].split("_", 1)[1]]


@pytest.mark.parametrize("name", NAMES)
def test_config_content(registry, name):
    text = CONFIGS[name].text
    cfg = yaml.safe_load(text)
    recipe = _kind(name)
    family, rest = name.split("/")
    size, kind = rest.split("_", 1)

    # The opening comment is the exact command.
    assert text.startswith("# ")
    command = f"tunesmith run {recipe}" + (" --nproc-per-node 8" if "distributed" in kind else "")
    assert f"{command} --config {name} \\" in text
    assert f"checkpointer.checkpoint_dir={cfg['checkpointer']['checkpoint_dir']}" in text

    model = registry.get("models", cfg["model"]["_component_"])
    assert model.family == "llama"
    assert model.name == f"{family}_{size.lower()}"
    # Whichever tokenizer files the checkpoint has (original/tokenizer.model or tokenizer.json).
    assert cfg["tokenizer"] == {"_component_": "auto", "max_seq_len": None}
    weights = re.search(r"^# Weights: tunesmith download (\S+)/(\S+)$", text, re.M)
    assert weights and f"/tmp/{weights.group(2)}" == cfg["checkpointer"]["checkpoint_dir"]
    assert cfg["output_dir"] == f"/tmp/tunesmith/{family}_{size}/{kind}"
    assert cfg["checkpointer"]["output_dir"] == "${output_dir}"

    method = kind.split("_")[0]
    if method == "full":
        assert "peft" not in cfg and "save_adapter_weights_only" not in cfg
    else:
        # DoRA configs are LoRA (or QLoRA) ones with torchtune's use_dora switch on.
        dora = method.endswith("dora")
        assert cfg["peft"]["_component_"] == method.replace("dora", "lora")
        assert cfg["peft"].get("use_dora", False) is dora
        assert cfg["peft"]["lora_attn_modules"] == ["q_proj", "v_proj", "output_proj"]
    # (torchtune's settings for each name: tests/config/test_shipped_like_torchtune.py)
    assert isinstance(cfg["optimizer"]["lr"], float)  # plain YAML reads 3e-4 as a string


def test_cp_writes_the_complete_rendered_yaml(registry, tmp_path):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    result = CliRunner().invoke(cli, ["cp", "llama3_1/8B_lora_single_device", str(tmp_path) + "/"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "8B_lora_single_device.yaml").read_text()
    assert written == CONFIGS["llama3_1/8B_lora_single_device"].text
    assert "{{" not in written and "_component_: llama3_1_8b" in written


@pytest.mark.parametrize("name", NAMES)
def test_config_validates_against_its_recipe(registry, name):
    from tunesmith.config import load_config, validate

    if importlib.util.find_spec("tunesmith_lora") is None and "lora" in name:
        pytest.skip("tunesmith-lora is not installed")
    config = registry.get("configs", name)
    recipe = registry.get("recipes", config.recipe)
    cfg = load_config(name, defaults=recipe.defaults)
    validate(cfg, recipe)
    assert (
        cfg.model._component_ == name.split("/")[0] + "_" + name.split("/")[1].split("_")[0].lower()
    )
    assert cfg.checkpointer.output_dir == cfg.output_dir  # interpolation resolved
