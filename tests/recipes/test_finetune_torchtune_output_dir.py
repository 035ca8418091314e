"""A torchtune 0.6.1 ``output_dir`` given to a tunesmith fine-tune: resuming it, or
writing over it, is refused in one line that says what to do instead.

torchtune's ``recipe_state.pt`` (``tests/fixtures/torchtune_outputs``, recorded from a
real torchtune LoRA run by ``make_torchtune_outputs.py``; its optimizer moments
dropped) holds torchtune's optimizer and data position, no weights: nothing tunesmith
could continue from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import run_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORDED = FIXTURES / "torchtune_outputs" / "llama3_2_lora"


def _torchtune_output_dir(output_dir: Path) -> list[str]:
    """What torchtune leaves in output_dir after the first of two epochs."""
    epoch = output_dir / "epoch_0"
    epoch.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.pt"):
        shutil.copy(RECORDED / f, epoch)
    (output_dir / "recipe_state").mkdir()
    shutil.copy(RECORDED / "recipe_state.pt", output_dir / "recipe_state")
    # torchtune's metric loggers save the run's config there.
    shutil.copy(FIXTURES / "torchtune" / "llama3_2" / "1B_lora_single_device.yaml",
                output_dir / "torchtune_config.yaml")  # fmt: skip
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*"))


@pytest.mark.parametrize(
    "recipe, overrides",
    [
        ("full_finetune_single_device", []),
        ("lora_finetune_single_device", ["peft.lora_attn_modules=[q_proj,v_proj]"]),
    ],
)
def test_resuming_torchtunes_run_is_refused_in_one_line(make_config, recipe, overrides):
    config, output_dir = make_config()
    before = _torchtune_output_dir(output_dir)
    result = run_cli(recipe, config, "resume_from_checkpoint=true", *overrides)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()[-1:]
    state = output_dir / "recipe_state" / "recipe_state.pt"
    assert line.startswith(f"error: {state} is torchtune's recipe state")
    assert "tunesmith cannot resume from" in line
    assert f"checkpointer.checkpoint_dir={output_dir / 'epoch_0'} and another output_dir" in line
    assert sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*")) == before


def test_a_torchtune_run_is_not_offered_for_resuming(make_config):
    config, output_dir = make_config()
    _torchtune_output_dir(output_dir)
    result = run_cli("full_finetune_single_device", config)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line == (
        f"error: output_dir {output_dir} already holds a torchtune run (epoch_0, "
        "recipe_state): choose another output_dir, or replace it with "
        "overwrite_output_dir=true"
    )


def test_a_state_of_neither_kind_is_named_in_one_line(make_config):
    import torch

    config, output_dir = make_config()
    (output_dir / "recipe_state").mkdir(parents=True)
    state = output_dir / "recipe_state" / "recipe_state.pt"
    torch.save({"model": {}, "seed": 7}, state)
    result = run_cli("full_finetune_single_device", config, "resume_from_checkpoint=true")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line == (
        f"error: {state} is not a training state tunesmith wrote (it has no optimizer, "
        "scheduler, rng, position): delete it, or resume from another output_dir"
    )
