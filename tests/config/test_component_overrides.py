"""Overriding keys a config leaves out: top-level keys of the recipe's schema and the
arguments a block's component takes need no ``+``; every problem is listed at once."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tunesmith.cli import cli

pytest.importorskip("tunesmith_lora")

CONFIG = "llama3_2/1B_lora_single_device"


def _validate(*overrides: str):
    return CliRunner().invoke(cli, ["validate", CONFIG, "~peft.lora_rank", *overrides])


def test_component_arguments_need_no_plus():
    for override in ("peft.lora_rank=16", "optimizer.betas=[0.9,0.95]", "max_steps_per_epoch=1"):
        result = _validate(override)
        assert result.exit_code == 0, (override, result.output)


def test_misspelt_argument_is_refused_with_a_suggestion():
    result = _validate("peft.lora_rnak=16")
    assert result.exit_code != 0
    assert "'peft.lora_rnak': no such key — did you mean 'lora_rank'" in result.output


def test_every_problem_at_once():
    result = _validate("peft.lora_rnak=16", "optimizer.lr=abc", "batch_size=0")
    assert result.exit_code != 0
    assert "config has 3 problems" in result.output
    for part in ("lora_rnak", "'optimizer.lr' must be a number", "'batch_size' must be at least 1"):
        assert part in result.output


def test_misspelt_dataset_options_in_a_file_are_refused_before_loading(tmp_path):
    # Dataset builders pass the keys they do not name on to datasets.load_dataset, so a
    # misspelling in a file (or added with +) is caught by validate, one line each.
    config = tmp_path / "typos.yaml"
    text = CliRunner().invoke(cli, ["cat", CONFIG]).output
    config.write_text(
        text.split("dataset:")[0]
        + "dataset:\n"
        + "  - {_component_: text_completion, source: json, data_files: a.jsonl, colum_map: {}}\n"
        + "  - {_component_: alpaca, source: yahma/alpaca-cleaned, trian_on_input: true}\n"
        + "validation_dataset: {_component_: chat, source: json, conversation_styl: sharegpt}\n"
        + "seed:" + text.split("\nseed:")[1]
    )
    result = CliRunner().invoke(
        cli, ["validate", str(config), "--recipe", "lora_finetune_single_device",
              "+dataset.0.name=wiki"]
    )  # fmt: skip
    assert result.exit_code != 0
    assert "config has 3 problems" in result.output, result.output
    for line in (
        "dataset.0: 'colum_map' is not an option of the text_completion dataset — did you mean "
        "'column_map'?",
        "dataset.1: 'trian_on_input' is not an option of the alpaca dataset — did you mean "
        "'train_on_input'?",
        "validation_dataset: 'conversation_styl' is not an option of the chat dataset — did you "
        "mean 'conversation_style' or 'conversation_column'?",
    ):
        assert f"  - {line}" in result.output, result.output
    # a key datasets.load_dataset takes, far from every option, is no problem
    assert "'name'" not in result.output
