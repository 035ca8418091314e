"""Exact resume: a run killed mid-epoch and resumed with ``resume_from_checkpoint=true``
ends with the same weights, bit for bit, and logs the same losses as a run that was
never interrupted — for full fine-tuning and for LoRA."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from .helpers import assert_same_weights, leftovers, losses, read_log, read_weights, run_cli, run_ok

# 16 rows, batch 2, 2 micro-batches a step: 4 steps an epoch, 8 in all; the training
# state is saved every 2 steps (and at each epoch's end).
RESUMABLE = {
    "dataset": {"split": "train[:16]"},
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "epochs": 2,
    "shuffle": True,
    "save_every_n_steps": 2,
}
LORA = {
    "peft": {
        "_component_": "lora",
        "lora_attn_modules": ["q_proj", "v_proj"],
        "apply_lora_to_mlp": True,
        "lora_rank": 4,
        "lora_alpha": 8,
        # Dropout draws random numbers every step: the RNG state must resume too.
        "lora_dropout": 0.1,
    },
}


class Killed(Exception):
    """Stands in for the process dying."""


def _kill_during_step(monkeypatch, step: int) -> None:
    """Make the ``step``-th optimizer step die after updating the weights in memory,
    before anything about it is logged or saved."""
    from tunesmith.recipes import finetune

    original = finetune._train_step
    calls = {"n": 0}

    def train_step(run, batches):
        calls["n"] += 1
        out = original(run, batches)
        if calls["n"] == step:
            raise Killed(f"killed during step {step}")
        return out

    monkeypatch.setattr(finetune, "_train_step", train_step)


@pytest.mark.parametrize(
    ("recipe", "extra", "kill_at"),
    [
        ("full_finetune_single_device", {}, 7),  # epoch 1, resumes from step 6
        ("full_finetune_single_device", {}, 3),  # epoch 0, before any epoch_N exists
        ("lora_finetune_single_device", LORA, 7),
        ("lora_finetune_single_device", LORA, 4),  # the epoch's last step: from step 2
    ],
    ids=["full-epoch1", "full-epoch0", "lora-epoch1", "lora-epoch0-end"],
)
def test_killed_run_resumes_exactly(make_config, monkeypatch, recipe, extra, kill_at):
    config_a, out_a = make_config("uninterrupted", **RESUMABLE, **extra)
    config_b, out_b = make_config("interrupted", **RESUMABLE, **extra)
    run_ok(recipe, config_a)

    with monkeypatch.context() as patch:
        _kill_during_step(patch, kill_at)
        killed = run_cli(recipe, config_b)
    # The CLI turns the crash into one line, without a traceback.
    assert killed.exit_code == 1 and "unexpected Killed: killed during step" in killed.output
    assert leftovers(out_b) == []
    saved_epochs = [p.name for p in sorted(out_b.glob("epoch_*"))]
    assert saved_epochs == (["epoch_0"] if kill_at > 4 else [])
    before = losses(out_b)
    assert sorted(before) == list(range(1, kill_at))  # the killed step was never logged

    run_ok(recipe, config_b, "resume_from_checkpoint=true")

    # The resumed run starts after the last saved step and redoes (and logs again) only
    # the steps the killed run did after it, with the same numbers.
    last_saved = (kill_at - 1) // 2 * 2
    records = [(r["step"], r["loss"]) for r in read_log(out_b) if "loss" in r]
    steps = [step for step, _ in records]
    assert steps == [*range(1, kill_at), *range(last_saved + 1, 9)]
    want = losses(out_a)
    assert sorted(want) == list(range(1, 9))
    assert all(loss == want[step] for step, loss in records), (records, want)
    lrs = {r["step"]: r["lr"] for r in read_log(out_b) if "lr" in r}
    assert lrs == {r["step"]: r["lr"] for r in read_log(out_a) if "lr" in r}
    assert want[8] < want[1]

    for epoch in ("epoch_0", "epoch_1"):
        assert_same_weights(read_weights(out_b / epoch), read_weights(out_a / epoch))
        if extra:
            adapter = f"{epoch}/adapter/adapter_model.safetensors"
            assert_same_weights(load_file(out_b / adapter), load_file(out_a / adapter))
    assert leftovers(out_b) == []


def test_resume_needs_the_interrupted_runs_state(make_config):
    config, out = make_config()
    result = run_cli("full_finetune_single_device", config, "resume_from_checkpoint=true")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: no training state in ")
    assert "recipe_state" in line and "resume_from_checkpoint" in line
    assert not list(out.glob("epoch_*"))


def test_resume_refuses_another_seed(make_config, monkeypatch):
    config, out = make_config(**RESUMABLE)
    with monkeypatch.context() as patch:
        _kill_during_step(patch, 3)
        killed = run_cli("full_finetune_single_device", config)
        assert killed.exit_code == 1 and "unexpected Killed" in killed.output
    result = run_cli("full_finetune_single_device", config, "resume_from_checkpoint=true", "seed=8")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "the interrupted run used seed 7, this one 8: resume with seed=7" in result.stderr
    assert not list(out.glob("epoch_*"))


def test_an_unset_seed_resumes_with_the_interrupted_runs_as_torchtune(make_config, monkeypatch):
    # torchtune's configs ship seed: null; the first run draws one and saves it.
    config_a, out_a = make_config("uninterrupted", **RESUMABLE, seed=None)
    config_b, out_b = make_config("interrupted", **RESUMABLE, seed=None)
    with monkeypatch.context() as patch:
        _kill_during_step(patch, 3)
        assert run_cli("full_finetune_single_device", config_b).exit_code == 1
    from torch import load

    drawn = load(out_b / "recipe_state" / "recipe_state.pt", weights_only=True)["seed"]
    result = run_ok("full_finetune_single_device", config_b, "resume_from_checkpoint=true")
    assert f"seed is null: resuming with the interrupted run's seed {drawn}" in result.output
    run_ok("full_finetune_single_device", config_a, f"seed={drawn}")
    assert_same_weights(read_weights(out_b / "epoch_1"), read_weights(out_a / "epoch_1"))
