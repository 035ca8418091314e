"""Two processes through torchrun (FSDP2 over gloo on the CPU, loopback only): the
distributed runs finish, write checkpoints transformers loads, and land where a
single-device run with the same global batch does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from .helpers import hf_logits, leftovers, losses, our_logits, read_weights, run_ok, sample_tokens

pytestmark = pytest.mark.slow

TIMEOUT = 240
# Same global batch: 2 ranks x 2 rows == 1 device x 4 rows. No shuffling, so rank r's
# share of each global batch is rows r, r+2 of the single-device batch.
SINGLE = {"batch_size": 4, "shuffle": False}
PER_RANK = {"batch_size": 2, "shuffle": False}
LORA = {
    "peft": {
        "_component_": "lora",
        "lora_attn_modules": ["q_proj", "v_proj"],
        "apply_lora_to_mlp": True,
        "lora_rank": 4,
        "lora_alpha": 8,
    },
    "optimizer": {"lr": 1.0e-2},
}


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def _stop(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and every process under it. torchrun starts its workers in their
    own sessions, so killing its process group would orphan them: ask it to stop
    them (SIGTERM), then kill whatever of the tree recorded beforehand is left."""
    table = _process_table()
    tree, todo = [], [proc.pid]
    while todo:
        parent = todo.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        tree += children
        todo += children
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    now = _process_table()
    for pid in tree:
        # the same process (not a new one that reused the pid) still running
        if pid in now and now[pid][1] == table[pid][1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _launch(command: list[str], cwd) -> str:
    """Run ``command`` in its own session; on timeout (or any interruption) stop it
    and all its processes."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "GLOO_SOCKET_IFNAME": "lo",
        "TUNESMITH_LOAD_PLUGINS": "llama,lora",
        "PYTHONUNBUFFERED": "1",
    }
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            _stop(proc)
            log.seek(0)
            pytest.fail(f"timed out after {TIMEOUT} s:\n{log.read()[-4000:]}")
        finally:
            if proc.poll() is None:
                _stop(proc)
        log.seek(0)
        output = log.read()
    assert proc.returncode == 0, output[-6000:]
    return output


def _torchrun(recipe: str, config, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--standalone", "-m", "tunesmith", "run", recipe, "--config", str(config),
            *overrides]  # fmt: skip


def _tunesmith_run(recipe: str, config) -> list[str]:
    """``tunesmith run --nproc-per-node 2``, which launches torchrun itself."""
    return [sys.executable, "-m", "tunesmith", "run", recipe, "--nproc-per-node", "2",
            "--standalone", "--config", str(config)]  # fmt: skip


def _assert_same_adapter_and_merge(out: Path, single: Path) -> None:
    """A PEFT run's epoch_0 adapter and merged weights equal one device's."""
    adapter = "epoch_0/adapter/adapter_model.safetensors"
    ours, theirs = load_file(out / adapter), load_file(single / adapter)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=0)
    merged, single_merged = read_weights(out / "epoch_0"), read_weights(single / "epoch_0")
    assert sorted(merged) == sorted(single_merged)
    for key in single_merged:
        torch.testing.assert_close(merged[key], single_merged[key], atol=1e-5, rtol=0)


def test_full_finetune_distributed_matches_one_device_and_resumes(make_config, base_dir, tmp_path):
    # A constant learning rate, so a run extended from 1 to 2 epochs on resume follows
    # the same schedule as one that ran 2 epochs from the start.
    config, out = make_config("fsdp", **PER_RANK, lr_scheduler=None)
    output = _launch(_torchrun("full_finetune_distributed", config), tmp_path)
    # Printed once (rank 0), with the whole model's size although each rank holds half.
    total = sum(t.numel() for t in read_weights(base_dir).values())
    assert output.count(f"Training {total:,} of {total:,} parameters") == 1, output[-3000:]
    assert leftovers(out) == []

    single_config, single = make_config("single", **SINGLE, lr_scheduler=None, epochs=2)
    run_ok("full_finetune_single_device", single_config)
    want = losses(single)

    curve = losses(out)
    assert sorted(curve) == [1, 2, 3, 4]
    assert curve == pytest.approx({s: want[s] for s in curve}, rel=1e-5)
    ours, theirs = read_weights(out / "epoch_0"), read_weights(single / "epoch_0")
    assert sorted(ours) == sorted(theirs)  # tied head: no lm_head.weight here either
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=0)
    assert not torch.equal(ours["model.norm.weight"], read_weights(base_dir)["model.norm.weight"])

    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    torch.testing.assert_close(
        hf_logits(out / "epoch_0", tokens), our_logits(out / "epoch_0", tokens), atol=1e-5, rtol=0
    )

    # Resuming restores the sharded model and optimizer from the gathered state.
    _launch(
        _torchrun("full_finetune_distributed", config, "epochs=2", "resume_from_checkpoint=true"),
        tmp_path,
    )
    curve = losses(out)
    assert sorted(curve) == list(range(1, 9))
    assert curve == pytest.approx(want, rel=1e-5)
    ours, theirs = read_weights(out / "epoch_1"), read_weights(single / "epoch_1")
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=0)


def test_lora_distributed_through_the_cli_matches_one_device(make_config, base_dir, tmp_path):
    config, out = make_config("fsdp_lora", **PER_RANK, **LORA)
    output = _launch(_tunesmith_run("lora_finetune_distributed", config), tmp_path)
    assert output.count("Training ") == 1, output[-3000:]
    assert leftovers(out) == []

    single_config, single = make_config("single_lora", **SINGLE, **LORA)
    run_ok("lora_finetune_single_device", single_config)

    assert losses(out) == pytest.approx(losses(single), rel=1e-5)
    _assert_same_adapter_and_merge(out, single)

    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    ours_logits = our_logits(base_dir, tokens, adapter=out / "epoch_0")
    torch.testing.assert_close(hf_logits(out / "epoch_0", tokens), ours_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        hf_logits(base_dir, tokens, adapter=out / "epoch_0" / "adapter"),
        ours_logits,
        atol=1e-5,
        rtol=0,
    )


QLORA = {**LORA, "peft": {**LORA["peft"], "_component_": "qlora"}}


def test_qlora_distributed_matches_one_device_and_refuses_weights_that_do_not_shard(
    make_config, data_file, tmp_path
):
    from .helpers import base_config, merge_config, write_base_checkpoint

    # torchao splits an NF4 weight's blocks and their scales across the ranks: the
    # default tiny checkpoint's 64-wide weights are one scale group, which cannot split.
    small, _ = make_config("qlora_small", **PER_RANK, **QLORA)
    with pytest.raises(AssertionError) as refused:
        _launch(_tunesmith_run("lora_finetune_distributed", small), tmp_path)
    assert (
        "QLoRA under FSDP2 splits each NF4 weight into 2 shards, and torchao needs each "
        "shard to hold whole quantization groups; these weights do not split: "
        "layers.0.attn.q_proj (64, 64)" in str(refused.value)
    )
    assert "Traceback" not in str(refused.value)

    # 256 wide: every weight splits in two. Same global batch as one device.
    wide = write_base_checkpoint(
        tmp_path / "wide", hidden_size=256, intermediate_size=512, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64,
    )  # fmt: skip

    def config(name, **changes):
        out = tmp_path / name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merge_config(base_config(wide, data_file, out), changes)))
        return path, out

    fsdp_config, out = config("qlora_fsdp", **PER_RANK, **QLORA)
    _launch(_torchrun("lora_finetune_distributed", fsdp_config), tmp_path)
    single_config, single = config("qlora_single", **SINGLE, **QLORA)
    run_ok("qlora_finetune_single_device", single_config)
    assert sorted(losses(out)) == [1, 2, 3, 4]
    assert losses(out) == pytest.approx(losses(single), rel=1e-5)
    # NF4 shards gathered, dequantized and merged as on one device
    _assert_same_adapter_and_merge(out, single)
