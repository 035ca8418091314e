"""Rows from the Hugging Face Hub, local files or the bundled sample, through ``datasets``,
and their cells read as text.

Local JSON files are checked here before ``datasets`` sees them: its own errors
for a broken row come from pyarrow and name neither the file nor the line.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    import datasets

__all__ = [
    "SAMPLES",
    "SAMPLE_ALPACA",
    "cell_text",
    "describe_source",
    "load_rows",
    "train_validation_splits",
]

#: File extension -> the ``datasets`` builder that reads it.
_EXTENSIONS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}
_BUILDERS = frozenset(_EXTENSIONS.values())
_SAMPLE_PREFIX = "tunesmith:"
#: ``tunesmith:<name>`` sources: data files shipped inside this package.
SAMPLES = {"alpaca_sample": "alpaca_sample.jsonl"}
#: Path of the bundled Alpaca-style sample (``source: tunesmith:alpaca_sample``).
SAMPLE_ALPACA = str(files("tunesmith.data").joinpath("samples", SAMPLES["alpaca_sample"]))
_SAMPLE_DIR = Path(SAMPLE_ALPACA).parent
_JSONL_EXAMPLE = '{"instruction": "...", "input": "", "output": "..."}'
#: Files ``datasets`` decompresses itself; their text is not checked here.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")


def load_rows(
    source: str,
    *,
    data_files: str | list[str] | dict[str, Any] | None = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> datasets.Dataset:
    """Load a dataset's rows with :func:`datasets.load_dataset`.

    Args:
        source: One of
            - a Hugging Face Hub dataset name (``"tatsu-lab/alpaca"``);
            - a builder name, ``json``, ``csv``, ``parquet`` or ``text``, with ``data_files``;
            - a local file whose extension picks the builder (``.json``, ``.jsonl``,
              ``.csv``, ``.parquet``, ``.txt``), or a local directory;
            - ``"tunesmith:alpaca_sample"``, the small Alpaca-style sample shipped with
              tunesmith.
        data_files: Files for a builder name or a Hub dataset: a path, a glob, a list,
            or ``{split: paths}``.
        split: The split to load; ``datasets`` slicing works (``"train[:90%]"``).
        **load_dataset_kwargs: Passed to :func:`datasets.load_dataset` (``name``,
            ``revision``, ``field``, ...). ``cache_dir`` defaults to
            ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``, read at call time.
            CSV cells are read as text unless ``dtype`` or ``features`` say otherwise.

    Returns:
        A non-empty :class:`datasets.Dataset`.

    Raises:
        DataError: a missing file, a malformed JSON row (with its file and line), a
            dataset that cannot be loaded, an unknown split, or no rows.
        ConfigError: a source and data files that do not go together.
    """
    if load_dataset_kwargs.get("streaming"):
        raise ConfigError(
            "dataset streaming is not supported: remove 'streaming' from the dataset config"
        )
    path, builder, data_files = _resolve(source, data_files)
    where = describe_source(source, data_files)
    encoding = load_dataset_kwargs.get("encoding") or "utf-8"
    if builder == "json":
        for file in _local_files(data_files):
            if not file.endswith(_COMPRESSED):
                _check_json_file(file, field=load_dataset_kwargs.get("field"), encoding=encoding)
    elif builder in ("csv", "text"):
        for file in _local_files(data_files):
            if not file.endswith(_COMPRESSED):
                for _ in _text_lines(file, encoding):
                    pass
    load_dataset_kwargs.setdefault("cache_dir", _cache_dir())

    import datasets

    if builder == "csv":
        _csv_cells_as_text(_local_files(data_files), load_dataset_kwargs)

    try:
        rows = datasets.load_dataset(
            path, data_files=data_files, split=split, **load_dataset_kwargs
        )
    except Exception as exc:  # datasets raises many types; all mean "this source does not load"
        if "corresponds to no data" in str(exc):  # how datasets reports an empty split
            raise DataError(_no_rows(where, split)) from None
        raise DataError(_load_failure(where, split, exc)) from exc
    if len(rows) == 0:
        raise DataError(_no_rows(where, split))
    return rows


def describe_source(source: str, data_files: Any = None) -> str:
    """How error messages name a dataset: its files for a builder name, else the source."""
    if source in _BUILDERS and data_files is not None:
        shown = data_files if isinstance(data_files, str) else json.dumps(data_files)
        return f"{source} files {shown}"
    return source


def train_validation_splits(fraction: float, *, split: str = "train") -> tuple[str, str]:
    """The two complementary ``split`` strings that hold out ``fraction`` for validation.

    ``train_validation_splits(0.1)`` is ``("train[:90%]", "train[90%:]")``: build the
    training dataset with the first and the validation dataset with the second.

    Raises:
        ConfigError: ``fraction`` is not a whole percentage in (0, 1), or ``split``
            is already sliced.
    """
    percent = round(fraction * 100)
    if not 0 < fraction < 1 or abs(percent - fraction * 100) > 1e-6:
        raise ConfigError(
            f"validation fraction {fraction} must be a whole percentage between 0 and 1 "
            "(e.g. 0.1 for 10%)"
        )
    if "[" in split:
        raise ConfigError(
            f"split '{split}' is already sliced: give the unsliced split name (e.g. 'train') "
            "when holding out a validation fraction"
        )
    cut = 100 - percent
    return f"{split}[:{cut}%]", f"{split}[{cut}%:]"


# ---------------------------------------------------------------- resolving ---


def _resolve(source: str, data_files: Any) -> tuple[str, str | None, Any]:
    """``(path for load_dataset, builder name or None for Hub/directory, data_files)``."""
    if not isinstance(source, str) or not source:
        raise ConfigError(
            f"dataset source must be a non-empty string, got {source!r}: give a Hub dataset "
            "name, a local file, or json/csv/parquet/text with data_files"
        )
    if source.startswith(_SAMPLE_PREFIX):
        name = source[len(_SAMPLE_PREFIX) :]
        if name not in SAMPLES:
            known = ", ".join(_SAMPLE_PREFIX + s for s in SAMPLES)
            raise DataError(
                f"unknown bundled dataset '{source}': choose one of {known}"
                + did_you_mean(name, SAMPLES)
            )
        _no_data_files(source, data_files)
        return "json", "json", str(_SAMPLE_DIR / SAMPLES[name])
    if source in _BUILDERS:
        if data_files is None:
            raise ConfigError(
                f"dataset source '{source}' needs data_files: set dataset.data_files to the "
                f"file(s) to read, or set dataset.source to the file path itself"
            )
        _check_local_files(data_files)
        return source, source, data_files
    local = Path(source).expanduser()
    if local.is_dir():
        return str(local), None, data_files
    suffix = local.suffix.lower()
    if local.is_file():
        if suffix not in _EXTENSIONS:
            raise DataError(
                f"cannot tell the format of {source} from its extension '{suffix}': use one of "
                f"{', '.join(_EXTENSIONS)}, or set source to json/csv/parquet/text and "
                "data_files to the file"
            )
        _no_data_files(source, data_files)
        return _EXTENSIONS[suffix], _EXTENSIONS[suffix], str(local)
    if suffix in _EXTENSIONS or source.startswith(("/", "./", "../", "~", "\\")):
        raise DataError(_missing_file(source))
    return source, None, data_files  # a Hub dataset name


def _no_data_files(source: str, data_files: Any) -> None:
    if data_files is not None:
        raise ConfigError(
            f"dataset source '{source}' names its own data, so data_files must not be set: "
            "remove data_files, or set source to json/csv/parquet/text"
        )


def _file_list(data_files: Any) -> list[str]:
    if isinstance(data_files, (str, os.PathLike)):
        return [os.fspath(data_files)]
    if isinstance(data_files, Mapping):
        return [f for v in data_files.values() for f in _file_list(v)]
    return [f for v in data_files for f in _file_list(v)]


def _is_remote(path: str) -> bool:
    return "://" in path


def _check_local_files(data_files: Any) -> None:
    for file in _file_list(data_files):
        if _is_remote(file):
            continue
        if glob.has_magic(file):
            if not glob.glob(os.path.expanduser(file), recursive=True):
                raise DataError(
                    f"no dataset files match '{file}': check the pattern in dataset.data_files "
                    f"(relative paths start from {os.getcwd()})"
                )
        elif not os.path.isfile(os.path.expanduser(file)):
            raise DataError(_missing_file(file))


def _local_files(data_files: Any) -> list[str]:
    out: list[str] = []
    for file in _file_list(data_files):
        if _is_remote(file):
            continue
        file = os.path.expanduser(file)
        out += sorted(glob.glob(file, recursive=True)) if glob.has_magic(file) else [file]
    return out


def _missing_file(path: str) -> str:
    return (
        f"dataset file not found: {path}: check dataset.source / dataset.data_files "
        f"(relative paths start from {os.getcwd()})"
    )


def _cache_dir() -> str:
    # datasets reads these variables once, at import; reading them per call lets a
    # process (or a test) that sets HF_HOME late still keep the cache out of ~/.cache.
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "datasets")


def _csv_cells_as_text(local_files: list[str], kwargs: dict[str, Any]) -> None:
    """Read every CSV column as text: pandas would make "007" 7, "4" 4.0 in a column with
    a gap, and "None" or "NA" missing. Only an empty cell stays missing."""
    kwargs.setdefault("keep_default_na", False)
    kwargs.setdefault("na_values", [""])
    if "features" in kwargs or not local_files or kwargs.get("header", "infer") not in ("infer", 0):
        return
    if kwargs.get("names") or kwargs.get("column_names"):
        return
    import datasets

    sep = kwargs.get("delimiter") or kwargs.get("sep") or ","
    with open(local_files[0], newline="", encoding=kwargs.get("encoding") or "utf-8") as f:
        header = next(csv.reader(f, delimiter=sep), None)
    if header and len(set(header)) == len(header):
        kwargs["features"] = datasets.Features({name: datasets.Value("string") for name in header})


def _no_rows(where: str, split: str) -> str:
    return (
        f"{where} (split '{split}') has no rows: add rows to it, or choose another split "
        "or data_files"
    )


def _load_failure(where: str, split: str, exc: Exception) -> str:
    cause = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    text = str(exc)
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unexpected:
        return (
            f"'{unexpected.group(1)}' is not an option of this dataset, nor of "
            f"datasets.load_dataset for {where}: remove it from the dataset config"
        )
    if "Unknown split" in text:
        fix = "set dataset.split to one of the splits named above"
    elif isinstance(exc, ConnectionError) or "Hub" in text or "offline" in text.lower():
        fix = (
            "check the dataset name and your network (with HF_HUB_OFFLINE=1 or "
            "HF_DATASETS_OFFLINE=1 only cached datasets load), or point dataset.source "
            "at a local file"
        )
    else:
        fix = "check that the data is well-formed for its format, or try another source"
    return f"could not load {where} (split '{split}'): {cause}; {fix}"


# ------------------------------------------------------------ JSON checking ---


def _check_json_file(path: str, *, field: str | None = None, encoding: str = "utf-8") -> None:
    """Raise a :class:`DataError` naming the line of the first row that is not a JSON
    object, or of the first byte that is not text in ``encoding``."""
    with open(path, "rb") as f:
        # Only to tell JSON Lines from a JSON document: bytes that are not text are
        # reported with their line by the full read below.
        head = f.read(4096).decode(encoding, errors="ignore").lstrip()
    if not head:
        raise DataError(
            f"{path} is empty: add rows (one JSON object per line, e.g. {_JSONL_EXAMPLE})"
        )
    if field is not None or head[0] == "[":
        _check_json_document(path, field, encoding)
    else:
        _check_json_lines(path, encoding)


def _not_text(path: str, line: int, column: int, byte: int, encoding: str) -> DataError:
    return DataError(
        f"{path}, line {line}: byte 0x{byte:02x} at column {column} is not {encoding} text: "
        f"save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 {Path(path).name} > "
        f"fixed{Path(path).suffix}`), or set dataset.encoding to the encoding it was written in"
    )


def _line_by_line(encoding: str) -> bool:
    """Whether every line of a file in ``encoding`` ends in the byte ``\\n`` (not UTF-16/32)."""
    import codecs

    return not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def _decode(path: str, data: bytes, encoding: str) -> str:
    """A whole file's text, or a :class:`DataError` naming the line of its first bad byte."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _not_text(path, line, column, data[exc.start], encoding) from None


def _text_lines(path: str, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line, decoded one line at a time, so a bad byte
    anywhere in a large file is reported with its line."""
    if not _line_by_line(encoding):
        text = _decode(path, Path(path).read_bytes(), encoding)
        yield from enumerate(text.splitlines(keepends=True), start=1)
        return
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _not_text(path, lineno, exc.start + 1, raw[exc.start], encoding) from None


def _check_json_lines(path: str, encoding: str = "utf-8") -> None:
    rows = 0
    for lineno, line in _text_lines(path, encoding):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if rows == 0 and _is_one_object(path, encoding):
                return  # a single pretty-printed object is one row
            raise DataError(
                f"{path}, line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}): "
                f"each line must be one complete JSON object, e.g. {_JSONL_EXAMPLE}; "
                "fix or delete that line"
            ) from None
        _check_row(path, lineno, value)
        rows += 1


def _is_one_object(path: str, encoding: str = "utf-8") -> bool:
    try:
        return isinstance(json.loads(_decode(path, Path(path).read_bytes(), encoding)), dict)
    except json.JSONDecodeError:
        return False


def _check_json_document(path: str, field: str | None, encoding: str = "utf-8") -> None:
    text = _decode(path, Path(path).read_bytes(), encoding)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}, line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}): "
            "fix the JSON at that line"
        ) from None
    if field is not None:
        if not isinstance(document, dict) or field not in document:
            keys = sorted(document) if isinstance(document, dict) else []
            raise DataError(
                f"{path} has no top-level key '{field}' (keys: {', '.join(keys) or 'none'}): "
                "set dataset.field to the key that holds the list of rows"
                + did_you_mean(field, keys)
            )
        if not isinstance(document[field], list):
            raise DataError(f"{path}: '{field}' must hold a list of row objects")
        for index, value in enumerate(document[field]):
            _check_row(path, None, value, index=index)
        return
    if not isinstance(document, list):
        raise DataError(f"{path} must hold a JSON list of row objects, or one object per line")
    for lineno, value in _array_items(text):
        _check_row(path, lineno, value)


def _array_items(text: str) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` for each element of a JSON array already known to be valid."""
    decoder = json.JSONDecoder()
    space = re.compile(r"\s*")
    pos = space.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    while text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        value, pos = decoder.raw_decode(text, pos)
        yield line, value
        pos = space.match(text, pos).end()
        if text[pos] == ",":
            pos = space.match(text, pos + 1).end()


def _check_row(path: str, lineno: int | None, value: Any, *, index: int | None = None) -> None:
    if isinstance(value, dict):
        return
    at = f"line {lineno}" if lineno is not None else f"row {index}"
    raise DataError(
        f"{path}, {at}: expected a JSON object (one row with named columns), got "
        f"{type(value).__name__} {json.dumps(value)[:60]}; write rows like {_JSONL_EXAMPLE}"
    )


def cell_text(row: Mapping[str, Any], column: str, *, optional: bool = False) -> str:
    """A cell as text: numbers (which CSV readers infer) become strings; null is an error
    unless ``optional``, where it reads as ``""``."""
    value = row[column]
    if value is None:
        if optional:
            return ""
        raise DataError(f"column '{column}' is empty (null): fill it in or filter the row out")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"column '{column}' holds {type(value).__name__} {str(value)[:60]!r}, expected text"
    )
