"""Fixtures for the dataset tests: offline Hugging Face, a private datasets cache,
a byte-level tokenizer and writers for small local data files."""

from __future__ import annotations

import csv
import json
import os

# Before datasets is imported (the root conftest does the same; this keeps these
# tests offline when run on their own).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from tunesmith.testing import FakeTokenizer  # noqa: E402


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_home")


@pytest.fixture(autouse=True)
def _offline_private_cache(monkeypatch, hf_home):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf_home / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def tokenizer():
    return FakeTokenizer(max_seq_len=512)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path, rows):
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_txt(path, rows):
    path.write_text("".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    return path


WRITERS = {
    ".json": write_json,
    ".jsonl": write_jsonl,
    ".csv": write_csv,
    ".parquet": write_parquet,
    ".txt": write_txt,
}


@pytest.fixture
def write(tmp_path):
    """``write(name, rows)`` writes rows in the format the name's extension says."""

    def _write(name, rows):
        path = tmp_path / name
        return WRITERS[path.suffix](path, rows)

    return _write
