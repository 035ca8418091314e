"""What survives a divergence and a killed write: a run whose loss turns NaN keeps its
last good state (and resumes from it to where a run that never diverged ends), and the
next run sweeps what killed writes left, restoring an output a kill had set aside."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from recipes.helpers import assert_same_weights, losses, read_weights

from .helpers import invoke, one_line

FULL = "full_finetune_single_device"
NAN_AT_STEP_3 = {"_component_": "reliability.components.NaNLoss", "nan_from_call": 3}


def _run_ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def test_a_diverging_run_keeps_its_last_good_state_and_resumes_from_it(make_config):
    # 4 steps of one micro-batch; the state is saved after step 2; step 3's loss is NaN.
    reference_config, reference = make_config("reference", save_every_n_steps=2)
    _run_ok("run", FULL, "--config", reference_config)
    config, out = make_config("diverged", save_every_n_steps=2, loss=NAN_AT_STEP_3)

    line = one_line(invoke("run", FULL, "--config", config))

    assert line.startswith("error: loss became nan at step 3, so that step was not taken")
    assert "resume from the last saved state (resume_from_checkpoint=true)" in line
    assert not list(out.glob("epoch_*"))  # nothing non-finite was written
    state = torch.load(out / "recipe_state" / "recipe_state.pt", weights_only=True)
    assert state["position"]["global_step"] == 2
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values())
    assert sorted(losses(out)) == [1, 2]

    # With the cause fixed (here: the loss), the run resumes from step 2 and ends exactly
    # where a run that never diverged ends.
    _run_ok(
        "run", FULL, "--config", config, "resume_from_checkpoint=true",
        "loss._component_=tunesmith.training.ChunkedCrossEntropyLoss", "~loss.nan_from_call",
    )  # fmt: skip
    assert_same_weights(read_weights(out / "epoch_0"), read_weights(reference / "epoch_0"))
    assert losses(out) == losses(reference)


def test_killed_writes_are_swept_and_a_set_aside_output_restored(make_config):
    config, out = make_config(epochs=2, max_steps_per_epoch=2)
    _run_ok("run", FULL, "--config", config, "epochs=1")
    epoch_0 = read_weights(out / "epoch_0")
    # What a run killed while replacing epoch_0 and writing its state leaves: the old
    # epoch_0 renamed aside, a half-built new one, and a half-written state file.
    (out / "epoch_0").rename(out / ".epoch_0.old-0a1b2c3d")
    half = out / ".epoch_0.tmp-4e5f6a7b"
    shutil.copytree(out / ".epoch_0.old-0a1b2c3d", half)
    (half / "model.safetensors").write_bytes(b"half a shard")
    state = out / "recipe_state" / "recipe_state.pt"
    (state.parent / ".recipe_state.pt.tmp-8c9d0e1f").write_bytes(state.read_bytes()[:100])

    _run_ok("run", FULL, "--config", config, "resume_from_checkpoint=true")

    assert sorted(p.name for p in out.glob("epoch_*")) == ["epoch_0", "epoch_1"]
    assert_same_weights(read_weights(out / "epoch_0"), epoch_0)  # restored, not retrained
    assert list(out.rglob(".*")) == []
    assert sorted(losses(out)) == [1, 2, 3, 4]


def test_an_unexpected_error_mid_training_is_one_line_and_keeps_the_saved_state(make_config):
    loss = {"_component_": "reliability.components.OverflowingLoss", "at_call": 4}
    config, out = make_config(save_every_n_steps=2, loss=loss)
    line = one_line(invoke("run", FULL, "--config", config))
    assert line == (
        "error: unexpected OverflowError: int too large to convert to float — run again with "
        "--debug for the traceback, and report it if your input looks right"
    )
    state = torch.load(out / "recipe_state" / "recipe_state.pt", weights_only=True)
    assert state["position"]["global_step"] == 2 and list(out.rglob(".*")) == []


def test_a_full_disk_is_one_line(tmp_path):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    target = tmp_path / "config.yaml"
    target.symlink_to("/dev/full")
    line = one_line(invoke("cp", "generation", target, "--force"))
    assert line.startswith("error: no space left on the device while writing ")
    assert line.endswith(": free some space or point the output at another disk")


def test_a_full_disk_while_saving_names_the_file_and_keeps_the_last_state(make_config, monkeypatch):
    import errno

    config, out = make_config(save_every_n_steps=1)
    original, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 3:  # the third state (after step 3): the disk is full
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    line = one_line(invoke("run", FULL, "--config", config))
    state = out / "recipe_state" / "recipe_state.pt"
    assert line == (
        f"error: no space left on the device while writing {state}: free some space or "
        "point the output at another disk"
    )
    monkeypatch.undo()
    assert torch.load(state, weights_only=True)["position"]["global_step"] == 2
    assert list(out.rglob(".*")) == []


def test_samples_cut_down_to_their_prompt_are_counted_in_one_warning(make_config, tmp_path):
    import json

    from tunesmith.data import SAMPLE_ALPACA

    rows = [json.loads(line) for line in Path(SAMPLE_ALPACA).read_text().splitlines()[:16]]
    for row in rows[:4]:
        row["instruction"] = "Summarise this: " + "the quick brown fox jumps " * 30
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config, out = make_config(
        dataset={"source": str(data), "train_on_input": False},
        tokenizer={"max_seq_len": 256},
        max_steps_per_epoch=1,
    )
    result = invoke("run", FULL, "--config", config)
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert warning == (
        "warning: 4 of 16 samples of 'dataset' lose their whole response to "
        "tokenizer.max_seq_len=256 (their prompts are longer): raise max_seq_len or shorten "
        "the prompts"
    )
