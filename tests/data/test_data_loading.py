"""load_rows: sources, formats, splits, the bundled sample, and the errors a user meets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tunesmith.data import SAMPLE_ALPACA, load_rows, train_validation_splits
from tunesmith.errors import ConfigError, DataError

ROWS = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]


@pytest.mark.parametrize("name", ["rows.json", "rows.jsonl", "rows.csv", "rows.parquet"])
def test_local_file_extension_picks_the_builder(write, name):
    path = write(name, ROWS)
    rows = load_rows(str(path))
    assert len(rows) == 10
    assert rows.column_names == ["instruction", "input", "output"]
    assert rows[3]["instruction"] == "q3" and rows[3]["output"] == "a3"


def test_txt_file_gives_one_text_row_per_line(write):
    path = write("corpus.txt", [{"text": "first line"}, {"text": "second line"}])
    rows = load_rows(str(path))
    assert rows.column_names == ["text"]
    assert rows["text"] == ["first line", "second line"]


@pytest.mark.parametrize(
    ("builder", "name"),
    [("json", "r.jsonl"), ("csv", "r.csv"), ("parquet", "r.parquet"), ("text", "r.txt")],
)
def test_builder_name_with_data_files(write, builder, name):
    path = write(
        name, [{"text": "hello", "output": "x"}] if builder != "text" else [{"text": "hello"}]
    )
    rows = load_rows(builder, data_files=str(path))
    assert rows[0]["text"] == "hello"


def test_data_files_dict_names_splits(write):
    train = write("train.jsonl", ROWS[:7])
    valid = write("valid.jsonl", ROWS[7:])
    files = {"train": str(train), "validation": str(valid)}
    assert len(load_rows("json", data_files=files, split="train")) == 7
    assert load_rows("json", data_files=files, split="validation")["output"] == ["a7", "a8", "a9"]


def test_split_slicing_makes_disjoint_train_and_validation(write):
    path = write("rows.jsonl", ROWS)
    train_split, val_split = train_validation_splits(0.2)
    assert (train_split, val_split) == ("train[:80%]", "train[80%:]")
    train = load_rows(str(path), split=train_split)["output"]
    val = load_rows(str(path), split=val_split)["output"]
    assert train == [f"a{i}" for i in range(8)]
    assert val == ["a8", "a9"]


@pytest.mark.parametrize(
    ("fraction", "split"), [(0.0, "train"), (1.0, "train"), (0.125, "train"), (0.1, "train[:50%]")]
)
def test_train_validation_splits_rejects_bad_input(fraction, split):
    with pytest.raises(ConfigError):
        train_validation_splits(fraction, split=split)


def test_bundled_sample_loads_by_name():
    rows = load_rows("tunesmith:alpaca_sample")
    assert 150 <= len(rows) <= 250
    assert rows.column_names == ["instruction", "input", "output"]
    lines = Path(SAMPLE_ALPACA).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows)
    assert all(len(line) < 200 for line in lines)
    with_input = [r for r in rows if r["input"]]
    assert 5 <= len(with_input) < len(rows)
    questions = [(r["instruction"], r["input"]) for r in rows]
    assert len(set(questions)) == len(questions), "a question with two answers cannot be memorised"
    assert all(r["instruction"] and r["output"] for r in rows)


def test_unknown_bundled_sample():
    with pytest.raises(
        DataError,
        match=r"unknown bundled dataset 'tunesmith:alpaca_smaple'.*did you mean 'alpaca_sample'",
    ):
        load_rows("tunesmith:alpaca_smaple")


def test_missing_local_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(
        DataError, match=rf"dataset file not found: {re.escape(str(missing))}: check dataset.source"
    ):
        load_rows(str(missing))


def test_missing_data_file_names_the_path(tmp_path):
    missing = tmp_path / "gone.csv"
    with pytest.raises(DataError, match=rf"dataset file not found: {re.escape(str(missing))}"):
        load_rows("csv", data_files=[str(missing)])


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(DataError, match=r"no dataset files match '.*\*\.jsonl'"):
        load_rows("json", data_files=str(tmp_path / "*.jsonl"))


def test_builder_without_data_files():
    with pytest.raises(ConfigError, match="dataset source 'json' needs data_files"):
        load_rows("json")


def test_file_source_with_data_files(write):
    path = write("rows.jsonl", ROWS)
    with pytest.raises(ConfigError, match="data_files must not be set"):
        load_rows(str(path), data_files=str(path))


def test_unknown_extension(tmp_path):
    path = tmp_path / "rows.xml"
    path.write_text("<rows/>")
    with pytest.raises(DataError, match=r"cannot tell the format of .*rows\.xml.*'\.xml'"):
        load_rows(str(path))


def test_malformed_jsonl_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"instruction": "a", "output": "b"}\n'
        "\n"
        '{"instruction": "c", "output": "d"\n'
        '{"instruction": "e", "output": "f"}\n'
    )
    with pytest.raises(DataError) as info:
        load_rows(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}, line 3: invalid JSON (")
    assert "each line must be one complete JSON object" in message
    assert "fix or delete that line" in message


def test_jsonl_row_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n["c", "d"]\n')
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}, line 2: expected a JSON object .*got list"
    ):
        load_rows(str(path))


def test_json_array_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n'
    )
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}, line 3: invalid JSON \(Expecting ','"
    ):
        load_rows(str(path))


def test_json_array_element_that_is_not_an_object_names_the_line(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text('[\n  {"instruction": "a",\n   "output": "b"},\n  "oops"\n]\n')
    with pytest.raises(
        DataError,
        match=rf"^{re.escape(str(path))}, line 4: expected a JSON object .*got str \"oops\"",
    ):
        load_rows(str(path))


def test_json_field_holding_the_rows(tmp_path):
    path = tmp_path / "nested.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS[:3]}))
    assert load_rows(str(path), field="data")["output"] == ["a0", "a1", "a2"]
    with pytest.raises(DataError, match=r"has no top-level key 'dta'.*did you mean 'data'"):
        load_rows(str(path), field="dta")


def test_pretty_printed_single_object_is_one_row(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(ROWS[0], indent=2))
    assert len(load_rows(str(path))) == 1


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))} is empty: add rows"):
        load_rows(str(path))


def test_no_rows(tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text("instruction,output\n")
    with pytest.raises(DataError, match=r"header_only\.csv \(split 'train'\) has no rows"):
        load_rows(str(path))


def test_unknown_split(write):
    path = write("rows.jsonl", ROWS)
    with pytest.raises(
        DataError,
        match=r"could not load .*rows\.jsonl \(split 'validation'\): .*Unknown split.*set dataset\.split",
    ):
        load_rows(str(path), split="validation")


def test_hub_dataset_offline_is_a_data_error(monkeypatch):
    import datasets.config

    # The suite sets the variables before datasets loads; pin the parsed values too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(
        DataError,
        match=r"could not load someone/some-dataset \(split 'train'\).*point dataset\.source at a local file",
    ):
        load_rows("someone/some-dataset")


def test_streaming_is_refused():
    with pytest.raises(ConfigError, match="streaming is not supported"):
        load_rows("tunesmith:alpaca_sample", streaming=True)


def test_cache_stays_in_hf_datasets_cache(write, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    load_rows(str(write("rows.jsonl", ROWS)))
    assert any(cache.rglob("*.arrow"))


def test_cache_defaults_to_hf_home(write, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.delenv("HF_DATASETS_CACHE")
    monkeypatch.setenv("HF_HOME", str(home))
    load_rows(str(write("rows.jsonl", ROWS)))
    assert any((home / "datasets").rglob("*.arrow"))
    assert not os.path.exists(tmp_path / "rows")
