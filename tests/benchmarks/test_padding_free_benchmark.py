"""benchmarks/padding_free.py on a tiny model: both ways train on the same samples, and
the table reports each configuration asked for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "padding_free.py"


@pytest.mark.slow
def test_padded_and_padding_free_steps_are_timed_side_by_side(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--batches", "2", "--rounds", "2",
         "--methods", "lora,full", "--dtypes", "fp32", "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = re.findall(
        r"^(lora|full) fp32 +(\d+) +(\d+) +([\d.]+)x +([\d.]+)x +([\d.]+) ([\d.]+) +\((\d+)% of",
        proc.stdout,
        re.MULTILINE,
    )
    assert [r[0] for r in rows] == ["lora", "full"], proc.stdout
    for _, padded, free, ratio, work, first, second, padding in rows:
        assert int(padded) > 0 and int(free) > 0
        # the median of two rounds' speed-ups is their mean
        assert float(ratio) == pytest.approx((float(first) + float(second)) / 2, abs=0.011)
        assert 0 < int(padding) < 100  # the tiny rows differ in length, so batches pad
        # padding costs in the body only, linear in positions but quadratic in attention
        assert 1 < float(work) < (1 / (1 - int(padding) / 100)) ** 2
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, str(SCRIPT), "--methods", "dpo"], check=True,
                       capture_output=True, env=env, timeout=120)  # fmt: skip


@pytest.mark.slow
def test_compiled_layers_are_timed_against_eager_ones_after_their_warm_up(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--compile", "--batches", "2", "--rounds", "2",
         "--methods", "lora", "--dtypes", "fp32", "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = re.search(
        r"^lora fp32 +(\d+) +(\d+) +([\d.]+)x +([\d.]+) ([\d.]+) +\(compile warm-up ([\d.]+) s\)",
        proc.stdout,
        re.MULTILINE,
    )
    assert row, proc.stdout
    eager, compiled, ratio, first, second, warm_up = row.groups()
    assert int(eager) > 0 and int(compiled) > 0
    assert float(ratio) == pytest.approx((float(first) + float(second)) / 2, abs=0.011)
    assert float(warm_up) > 0.5  # inductor compiled the layers' graphs in the first steps
    both = subprocess.run([sys.executable, str(SCRIPT), "--cold", "--compile"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert both.returncode == 2 and "choose one" in both.stderr
