"""Real processes: a second run on a locked output_dir, Ctrl-C (SIGINT) mid-epoch, and a
SIGKILL campaign at seeded points (mid-step, mid-state-write, mid-epoch-write). Each
interrupted run resumes to the same weights and loss curve, bit for bit, as a run that
was never interrupted."""

from __future__ import annotations

import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipes.helpers import assert_same_weights, base_config, losses, read_log, read_weights
from safetensors.torch import load_file

from .conftest import write_config
from .helpers import invoke, one_line

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FULL = "full_finetune_single_device"
TESTS = Path(__file__).resolve().parents[1]
# 16 rows, batch 2, 2 micro-batches a step: 4 steps an epoch, 8 in all; the training
# state is saved after steps 2 and 6 and at each epoch's end (4 state writes, 2 epochs).
RESUMABLE = {
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "epochs": 2,
    "save_every_n_steps": 2,
    "peft": {
        "_component_": "lora",
        "lora_attn_modules": ["q_proj", "v_proj"],
        "lora_rank": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,  # random numbers every step: the RNG state must resume too
    },
}
SEED = 20261201


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"  # as this process runs (see conftest): same numbers
    env["TUNESMITH_DEBUG"] = "0"
    return env


def _config(tmp_path: Path, base_dir: Path, data_file: Path, name: str, **changes) -> Path:
    from recipes.helpers import merge_config

    config = merge_config(base_config(base_dir, data_file, tmp_path / name), dict(changes))
    return write_config(tmp_path / f"{name}.yaml", config)


def _run_ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def _same_run(out: Path, reference: Path) -> None:
    """``out`` ended where ``reference`` did: every epoch's weights and adapter equal bit
    for bit, every logged loss and learning rate equal to the reference's at that step,
    and no temporary left behind."""
    for epoch in ("epoch_0", "epoch_1"):
        assert_same_weights(read_weights(out / epoch), read_weights(reference / epoch))
        adapter = f"{epoch}/adapter/adapter_model.safetensors"
        assert_same_weights(load_file(out / adapter), load_file(reference / adapter))
    want = losses(reference)
    assert sorted(want) == list(range(1, 9))
    records = [r for r in read_log(out) if "loss" in r]
    assert {r["step"] for r in records} == set(want)
    assert all(r["loss"] == want[r["step"]] for r in records), (records, want)
    lrs = {r["step"]: r["lr"] for r in read_log(reference) if "lr" in r}
    assert all(r["lr"] == lrs[r["step"]] for r in records)
    assert sorted(str(p.relative_to(out)) for p in out.rglob(".*")) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base_dir, data_file) -> Path:
    """The uninterrupted run every interrupted one must end up equal to."""
    root = tmp_path_factory.mktemp("reference")
    config = _config(root, base_dir, data_file, "run", **RESUMABLE)
    _run_ok("run", "lora_finetune_single_device", "--config", config)
    return root / "run"


# ------------------------------------------------------------------- lock ---


def test_a_second_run_on_a_locked_output_dir_is_refused(tmp_path, make_config):
    config, out = make_config()
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from tunesmith.recipes._run_dir import RunDirectory\n"
         "with RunDirectory(sys.argv[1]):\n"
         "    print('locked', flush=True)\n"
         "    time.sleep(120)\n", str(out)],
        stdout=subprocess.PIPE, text=True, env=_child_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        stale = out / ".epoch_0.tmp-0123abcd"  # the holder's write: not for another to sweep
        stale.mkdir()
        result = invoke("run", FULL, "--config", config)
        line = one_line(result)
        assert f"output_dir {out} is in use by another run (pid {holder.pid} on " in line
        assert "wait for it to finish, or choose another output_dir" in line
        assert stale.is_dir() and not list(out.glob("epoch_*"))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The kernel released the dead holder's lock: the next run goes ahead and sweeps.
    _run_ok("run", FULL, "--config", config, "max_steps_per_epoch=1")
    assert not stale.exists() and (out / "epoch_0").is_dir()


# ----------------------------------------------------------------- Ctrl-C ---


def test_ctrl_c_mid_epoch_saves_the_step_and_resumes_exactly(
    tmp_path, base_dir, data_file, reference
):
    slow = {"_component_": "reliability.components.SlowLoss", "seconds": 0.1}
    config = _config(tmp_path, base_dir, data_file, "run", **RESUMABLE, loss=slow)
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "run", "lora_finetune_single_device",
         "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(r.get("step", 0) >= 2 for r in _records(out)):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the run never reached step 2"
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if "error:" in line]
    step = max(r["step"] for r in _records(out) if "loss" in r)
    assert 2 <= step < 8, stderr
    assert f"error: interrupted after step {step} (epoch " in line
    command = line.partition("Resume with: ")[2]
    assert command == shlex.join(
        ["tunesmith", "run", "lora_finetune_single_device", "--config", str(config),
         "resume_from_checkpoint=true"]
    )  # fmt: skip

    _run_ok(*shlex.split(command)[1:])
    _same_run(out, reference)


def _records(out: Path) -> list[dict]:
    try:
        return read_log(out)
    except (FileNotFoundError, ValueError):  # not written yet, or a line half-written
        return []


# ------------------------------------------------------------------ SIGKILL ---

_POINTS = random.Random(SEED)
# Where each kill strikes, drawn once from SEED: the step (of 8), the recipe_state.pt
# write (of 4: after steps 2, 4, 6, 8), the epoch directory (of 2).
CAMPAIGN = [
    ("step", _POINTS.randint(3, 7)),  # after the first state (step 2) was saved
    ("state-write", _POINTS.randint(1, 4)),
    ("epoch-write", _POINTS.randint(1, 2)),
]


@pytest.mark.parametrize(("kind", "n"), CAMPAIGN, ids=[f"{k}-{n}" for k, n in CAMPAIGN])
def test_sigkill_then_resume_is_bit_identical(tmp_path, base_dir, data_file, reference, kind, n):
    config = _config(tmp_path, base_dir, data_file, "run", **RESUMABLE)
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-m", "reliability._faults", kind, str(n),
         "run", "lora_finetune_single_device", "--config", str(config)],
        capture_output=True, text=True, env=_child_env(), timeout=180,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    if kind != "step":  # the write it died in is still there, under its temporary name
        assert list(out.rglob(".*.tmp-*")), sorted(p.name for p in out.rglob("*"))

    resume = ("run", "lora_finetune_single_device", "--config", config)
    if (out / "recipe_state" / "recipe_state.pt").exists():
        _run_ok(*resume, "resume_from_checkpoint=true")
    else:  # killed before its first state was saved: there is nothing to resume
        line = one_line(invoke(*resume, "resume_from_checkpoint=true"))
        assert "no training state in" in line and "run without resume_from_checkpoint" in line
        _run_ok(*resume)
    _same_run(out, reference)


def test_sigterm_unwinds_an_output_being_written(tmp_path):
    """SIGTERM (kill, a scheduler ending the job) in the tunesmith command's process
    unwinds as Ctrl-C does: the temporary directory an output was being written to is
    removed, and the exit code is 143 (it stayed beside the destination before)."""
    code = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from tunesmith.checkpoint import atomic_directory\n"
        "from tunesmith.cli import Terminated, terminate_as_interrupt\n"
        "terminate_as_interrupt()\n"
        "try:\n"
        "    with atomic_directory(Path(sys.argv[1])) as tmp:\n"
        "        (tmp / 'model.safetensors').write_bytes(b'partial')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "except Terminated:\n"
        "    sys.exit(143)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RANK"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], env=env, timeout=60)
    assert done.returncode == 143
    assert list(tmp_path.iterdir()) == []  # no .out.tmp-* left, no out
