"""benchmarks/finetune.py still runs the recipe's step for every method (no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune.py"


@pytest.mark.slow
def test_every_method_trains_and_reports(tmp_path):
    env = {**os.environ, "TUNESMITH_LOAD_PLUGINS": "llama,lora"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "tiny", "--steps", "2", "--warmup-steps", "1",
         "--seq-len", "32", "--matmul-sizes", "128", "--device", "cpu", "--threads", "1",
         "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    results = {r["method"]: r for r in summary["results"]}
    assert sorted(results) == ["full", "lora", "qlora"]
    assert summary["matmul_peak_flops"] == max(r["matmul_peak_flops"] for r in summary["results"])

    full, lora, qlora = results["full"], results["lora"], results["qlora"]
    base = full["base_params"]
    assert full["trainable_params"] == full["total_params"] == base
    # Tied head: the embedding table counts once, as the output matmul.
    assert full["matmul_params"] == base and full["frozen_matmul_params"] == 0
    for r in (lora, qlora):
        assert r["base_params"] == base
        assert r["total_params"] == base + r["trainable_params"]
        assert 0 < r["trainable_params"] < base / 4
        assert r["frozen_matmul_params"] == base
    assert lora["trainable_params"] == qlora["trainable_params"]

    layers, width, seq = full["layers"], full["width"], summary["seq_len"]
    for r in results.values():
        frozen = r["frozen_matmul_params"]
        expected = 6 * (r["matmul_params"] - frozen) + 4 * frozen + 12 * layers * seq * width
        assert r["flops_per_token"] == expected
        assert len(r["step_seconds_all"]) == 2
        assert r["tokens_per_s"] > 0 and r["peak_memory_gib"] > 0
        assert r["final_loss"] == pytest.approx(6.24, abs=0.3)  # ~ln(512): random tokens


def test_help_states_the_flops_formula():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "6*N_trainable + 4*N_frozen + 12*L*s*d" in proc.stdout
    assert "--method {full,lora,qlora,all}" in proc.stdout
