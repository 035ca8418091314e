"""Fixtures of the bad-input and crash corpus: the tiny checkpoint and data of the recipe
tests (tests/recipes), a config writer, and the checks every case shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("tunesmith_llama")

from recipes.helpers import base_config, merge_config, write_base_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads (see tests/recipes/conftest.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    return write_base_checkpoint(tmp_path_factory.mktemp("reliability_base"))


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> Path:
    """The first 32 rows of the bundled Alpaca sample, as a local JSONL file."""
    from tunesmith.data import SAMPLE_ALPACA

    rows = [line for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line.strip()]
    path = tmp_path_factory.mktemp("reliability_data") / "train.jsonl"
    path.write_text("\n".join(rows[:32]) + "\n")
    return path


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path, base_dir, data_file):
    """``make_config(name="run", **changes) -> (yaml_path, output_dir)``: the recipe
    tests' base config (4 steps of 4 samples, fp32, DiskLogger) with ``changes`` merged."""

    def make(name: str = "run", **changes: Any) -> tuple[Path, Path]:
        output_dir = tmp_path / name
        config = merge_config(base_config(base_dir, data_file, output_dir), changes)
        return write_config(tmp_path / f"{name}.yaml", config), output_dir

    return make
