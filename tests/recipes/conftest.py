"""Fixtures for the ``finetune`` recipe's end-to-end tests: a tiny Llama 3.2-style
checkpoint with a trained tokenizer, a small Alpaca file and a config written as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("tunesmith_llama")

from .helpers import base_config, merge_config, write_base_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    spinning OpenMP threads make each step ~50x slower (1 s instead of 15 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    return write_base_checkpoint(tmp_path_factory.mktemp("finetune_base"))


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> Path:
    """The first 32 rows of the bundled Alpaca sample, as a local JSONL file."""
    from tunesmith.data import SAMPLE_ALPACA

    rows = [line for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line.strip()]
    path = tmp_path_factory.mktemp("finetune_data") / "train.jsonl"
    path.write_text("\n".join(rows[:32]) + "\n")
    return path


@pytest.fixture
def make_config(tmp_path, base_dir, data_file):
    """``make_config(name="cfg", **changes) -> (yaml_path, output_dir)``: the base config
    with ``changes`` merged in (nested dicts merge; ``None`` values stay ``null``)."""

    def make(name: str = "run", **changes: Any) -> tuple[Path, Path]:
        output_dir = tmp_path / name
        config = merge_config(base_config(base_dir, data_file, output_dir), changes)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path, output_dir

    return make
