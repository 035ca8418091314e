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
