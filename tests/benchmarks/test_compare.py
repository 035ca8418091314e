"""benchmarks/compare.py: its pieces (arguments, configurations, the measurement) and
its tunesmith side end to end on a tiny model (the other frameworks need their own
environments, which the script creates when run for real)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "compare.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_arguments_and_variants():
    compare = _module()
    quick = compare._parse(["--quick"])
    assert (quick.rounds, quick.steps, quick.warmup_steps) == (1, 8, 3)
    names = [v.name for v in compare.variants(quick)]
    assert "tunesmith-lora-fp32-eager" in names and "torchtune-lora-fp32-eager-packed" in names
    assert "transformers-lora-fp32-eager-packed" not in names  # it does not pack
    full = compare._parse(["--frameworks", "tunesmith", "--no-packed"])
    assert len(compare.variants(full)) == 2 * 2 * 2  # methods x dtypes x modes
    packed = compare.variants(compare._parse(["--frameworks", "tunesmith,torchtune"]))
    assert "tunesmith-full-bf16-eager-packed" in [v.name for v in packed]
    ablation = compare.variants(
        compare._parse(["--ablation", "--methods", "lora", "--dtypes", "fp32", "--modes", "eager"])
    )
    assert [v.config for v in ablation][:3] == [
        "lora fp32 eager", "lora fp32 eager padding_free=False", "lora fp32 eager packed"
    ]
    assert {(v.method, v.dtype, v.mode) for v in ablation} == {("lora", "fp32", "eager")}
    with pytest.raises(SystemExit):
        compare._parse(["--methods", "dpo"])


def test_measurement_counts_real_tokens_between_step_logs():
    compare = _module()
    args = compare._parse(["--steps", "4", "--warmup-steps", "1"])
    raw = {
        "records": [{"t": t, "step": i + 1, "loss": 2.0 - i} for i, t in enumerate([5, 6, 8, 9])],
        "items": [10] * 16,
    }
    measured = compare._measure(raw, args)
    # Steps 2-4 (after one warm-up step) trained 3 batches of 4 items x 10 tokens in 4 s.
    assert measured["tokens_per_s"] == pytest.approx(120 / 4)
    assert measured["step_seconds"] == 1.0 and measured["final_loss"] == -1.0
    lora, _, frozen = compare.flops_per_token("lora", 200.0)
    full, trainable, _ = compare.flops_per_token("full", 200.0)
    assert trainable == frozen and lora < full
    # The useful-work count drops the head's unlabelled share: 4 (LoRA) or 6 (full)
    # FLOPs per head weight per skipped position.
    head = compare.MODEL["vocab_size"] * compare.MODEL["hidden_size"]
    assert compare.flops_per_token("lora", 200.0, 0.25)[0] == pytest.approx(lora - 0.75 * 4 * head)
    assert compare.flops_per_token("full", 200.0, 0.0)[0] == pytest.approx(full - 6 * head)
    rows = [
        {"tokens": [2, 5, 6, 7], "labels": [-100, -100, 6, 7]},
        {"tokens": [2, 9], "labels": [-100, 9]},
    ]
    assert compare.label_share(rows) == pytest.approx(3 / 6)  # a position predicts the next label


def test_best_setups_compare_each_frameworks_fastest_way_through_the_rows():
    compare = _module()
    rows = [
        {"framework": "tunesmith", "config": "lora fp32 eager", "tokens_per_s": 500.0},
        {"framework": "tunesmith", "config": "lora fp32 eager packed", "tokens_per_s": 800.0},
        {"framework": "torchtune", "config": "lora fp32 eager packed", "tokens_per_s": 420.0},
        {"framework": "transformers", "config": "lora fp32 eager", "tokens_per_s": 480.0},
        {"framework": "torchtune", "config": "full fp32 eager", "error": "exit 1"},
    ]
    assert compare.best_setups(rows) == [
        "lora fp32 eager, each framework's fastest setup: tunesmith (lora fp32 eager packed) "
        "1.67x transformers (lora fp32 eager)"
    ]


def test_every_framework_gets_the_same_work(tmp_path):
    compare = _module()
    args = compare._parse(["--steps", "6"])
    assets = {"model_dir": "/m", "rows": "/r.json"}
    configs = {}
    for framework in compare.FRAMEWORKS:
        v = compare.Variant(framework, "lora", "bf16", "compiled")
        out = tmp_path / framework
        out.mkdir()
        command, path = compare._config(v, assets, out, args)
        configs[framework] = (
            json.loads(path.read_text())
            if path.suffix == ".json"
            else (yaml.safe_load(path.read_text()))
        )
        assert str(path) in command
    tunesmith, torchtune, hf = configs["tunesmith"], configs["torchtune"], configs["transformers"]
    for cfg in (tunesmith, torchtune):
        assert (cfg["batch_size"], cfg["shuffle"], cfg["max_steps_per_epoch"]) == (4, False, 6)
        assert (cfg["dtype"], cfg["compile"], cfg["clip_grad_norm"]) == ("bf16", True, None)
        assert cfg["optimizer"]["fused"] is True
    assert tunesmith["peft"]["lora_rank"] == torchtune["model"]["lora_rank"] == hf["lora_rank"]
    assert torchtune["model"]["lora_attn_modules"] == tunesmith["peft"]["lora_attn_modules"]
    assert (hf["batch_size"], hf["steps"], hf["compile"]) == (4, 6, True)


@pytest.mark.slow
def test_the_tunesmith_side_runs_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--frameworks", "tunesmith", "--rounds", "1",
         "--steps", "3", "--warmup-steps", "1", "--methods", "lora", "--dtypes", "fp32",
         "--modes", "eager", "--wait-idle", "0", "--work-dir", str(tmp_path / "work"),
         "--output", str(tmp_path / "results.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "results.json").read_text())
    rows = {r["config"]: r for r in summary["summary"]}
    assert sorted(rows) == ["lora fp32 eager", "lora fp32 eager packed"]
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["peak_rss_gib"] > 0
        assert 0 < row["useful_peak_share"] < row["matmul_peak_share"] < 1.5
    assert "tunesmith" in proc.stdout and "tok/s" in proc.stdout
