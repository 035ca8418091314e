"""benchmarks/gpu_ladder.py imports, lists torchtune's published rows, refuses to run
without a GPU in one line, and its training path runs (a tiny model on the CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_ladder.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_ladder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_help_and_rows(capsys):
    ladder = _module()
    with pytest.raises(SystemExit) as exit_info:
        ladder.main(["--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out
    assert ladder.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "8b-lora-4090" in listed and "3b-qlora" in listed
    published = {r.key: (r.published_tokens_per_s, r.published_memory_gib) for r in ladder.ROWS}
    assert published["8b-lora-4090"] == (3083, 16.2)  # torchtune's README figures
    assert published["3b-compile"] == (8998, 51.0)
    assert [r.key for r in ladder.select("8b-qlora")] == ["8b-qlora-4090"]
    assert all(r.model == "llama3_2_3b" for r in ladder.select("3b"))
    with pytest.raises(SystemExit, match="no row matches"):
        ladder.select("70b")


def test_without_a_gpu_it_says_so(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _module().main(["--rows", "3b-lora"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_rows_train_on_a_tiny_model(tmp_path):
    env = {**os.environ, "TUNESMITH_LOAD_PLUGINS": "llama,lora"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--rows",
         "3b-baseline,3b-offload,8b-qlora", "--steps", "1", "--warmup-steps", "1", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["key"]: r for r in json.loads(proc.stdout)}
    assert sorted(results) == ["3b-baseline", "3b-offload", "8b-qlora-4090"]
    assert all(r["tokens_per_s"] > 0 for r in results.values())
