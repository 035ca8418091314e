"""What the plugin registers: builders, one checkpoint adapter per generation (exact
model_type match, torchtune aliases), the tokenizer, and a shipped config for every
size x recipe kind that validates against its recipe."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from tunesmith.checkpoint import find_adapter
from tunesmith.cli import cli
from tunesmith.config import FINETUNE_KINDS as RECIPES
from tunesmith.testing import check_configs
from tunesmith_gemma._configs import SIZES

MODELS = {
    "gemma_2b": "gemma", "gemma_7b": "gemma", "gemma2_2b": "gemma2", "gemma2_9b": "gemma2",
    "gemma2_27b": "gemma2", "gemma3_1b": "gemma3_text", "gemma3_4b": "gemma3",
    "gemma3_12b": "gemma3", "gemma3_27b": "gemma3",
}  # fmt: skip


def test_models_and_adapters(gemma_registry):
    for name, family in MODELS.items():
        model = gemma_registry.get("models", name)
        assert model.family == family and model.hf_repo.startswith("google/gemma-")
        assert gemma_registry.get("checkpoint_adapters", family).tiny_config is not None
    for model_type in ("gemma", "gemma2", "gemma3_text", "gemma3"):
        assert find_adapter(model_type, registry=gemma_registry).family == model_type
    assert find_adapter("GEMMA", registry=gemma_registry).family == "gemma"
    assert find_adapter("GEMMA2", registry=gemma_registry).family == "gemma2"
    tokenizer = gemma_registry.get("tokenizers", "gemma_tokenizer")
    assert set(tokenizer.family) == {"gemma", "gemma2", "gemma3_text", "gemma3"}


def test_every_size_ships_every_kind(gemma_registry):
    shipped = {c.name: c for c in gemma_registry.values("configs") if c.origin.plugin == "gemma"}
    expected = {
        f"{p}/{size}_{kind}" for p, sizes in SIZES.items() for size in sizes for kind in RECIPES
    }
    assert set(shipped) == expected and len(expected) == 54
    for name, config in shipped.items():
        kind = name.partition("_")[2]
        assert config.recipe == RECIPES[kind]
        assert config.requires == ("tunesmith-lora" if "lora" in kind else None)
        text = config.read_text()
        assert text.startswith("# ")
        assert f"tunesmith run {config.recipe}" in text.splitlines()[1]
        assert f"--config {name}" in text.splitlines()[1]
        body = yaml.safe_load(text)
        assert body["model"]["_component_"] in MODELS
        assert ("peft" in body) is ("lora" in kind)


def test_shipped_configs_validate(gemma_registry):
    ran = check_configs("gemma")
    assert len(ran) == 54 and not [r for r in ran if "skipped" in r]


@pytest.mark.parametrize("name", ["gemma2/9B_full_single_device", "gemma3/4B_qlora_single_device"])
def test_cli_lists_and_validates_them(name):
    runner = CliRunner()
    listed = runner.invoke(cli, ["ls"])
    assert listed.exit_code == 0 and name in listed.output
    validated = runner.invoke(cli, ["validate", name])
    assert validated.exit_code == 0, validated.output


@pytest.mark.slow
def test_a_shipped_config_runs_as_shipped_on_a_tiny_checkpoint(tmp_path):
    """gemma3/4B_lora_single_device with only paths, size and length overridden."""
    from tunesmith.testing import reference_checkpoint
    from tunesmith_gemma import tiny_gemma3_config, write_tiny_gemma_tokenizer

    source = tmp_path / "gemma3"
    reference_checkpoint(source, tiny_gemma3_config())
    write_tiny_gemma_tokenizer(source, generation="gemma3")
    result = CliRunner().invoke(cli, [
        "run", "lora_finetune_single_device", "--config", "gemma3/4B_lora_single_device",
        f"checkpointer.checkpoint_dir={source}", f"output_dir={tmp_path / 'out'}",
        "model._component_=auto", "dataset.source=tunesmith:alpaca_sample",
        "+dataset.split=train[:4]", "max_steps_per_epoch=1", "batch_size=2",
        "gradient_accumulation_steps=1", "tokenizer.max_seq_len=256", "device=cpu", "dtype=fp32",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    adapter = yaml.safe_load((tmp_path / "out/epoch_0/adapter/adapter_config.json").read_text())
    assert all(t.startswith("model.language_model.layers.") for t in adapter["target_modules"])
