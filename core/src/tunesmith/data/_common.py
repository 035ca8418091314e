"""What every dataset builder shares: loading and filtering rows, finding columns,
and optional packing."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tunesmith.data._loading import describe_source, load_rows
from tunesmith.data._messages import Message, ModelTokenizer
from tunesmith.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    import datasets
    import torch.utils.data


def prepare_rows(
    builder: Callable[..., Any],
    source: str,
    data_files: Any,
    split: str,
    filter_fn: Callable[[dict[str, Any]], bool] | None,
    load_kwargs: dict[str, Any],
) -> tuple[datasets.Dataset, str]:
    """Load rows, apply ``filter_fn``, and return them with a description for messages.

    Extra options go to :func:`datasets.load_dataset`, so a misspelt builder option
    (``trian_on_input``) is caught here, where the builder's own names are known.
    """
    misspelt = misspelt_options(builder, load_kwargs)
    if misspelt:
        raise ConfigError("; ".join(misspelt))
    rows = load_rows(source, data_files=data_files, split=split, **load_kwargs)
    where = describe_source(source, data_files)
    if filter_fn is not None:
        rows = rows.filter(filter_fn)
        if len(rows) == 0:
            raise DataError(
                f"filter_fn removed every row of {where} (split '{split}'): loosen the filter "
                "or choose other data"
            )
    return rows, where


def misspelt_options(builder: Callable[..., Any], keys: Iterable[str]) -> list[str]:
    """A message for each of ``keys`` that is not an option of ``builder`` but close to
    one (``colum_map``): a dataset builder passes the keys it does not name on to
    :func:`datasets.load_dataset`, which would not recognise a misspelling as one."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return []
    options = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    name = getattr(builder, "__name__", repr(builder))
    return [
        f"'{key}' is not an option of the {name} dataset{hint}"
        for key in keys
        if key not in options and (hint := did_you_mean(key, options))
    ]


def resolve_columns(
    rows: datasets.Dataset,
    where: str,
    dataset: str,
    column_map: Mapping[str, str] | None,
    *,
    required: Collection[str],
    optional: Collection[str] = (),
) -> dict[str, str]:
    """Map each column a builder expects to the dataset's column name.

    Returns:
        ``{expected: actual}`` for every required column and every optional one present.

    Raises:
        DataError: ``column_map`` names a column the builder does not use, or a
            required (or explicitly mapped) column is absent from the data.
    """
    column_map = dict(column_map or {})
    expected = [*required, *optional]
    for key in column_map:
        if key not in expected:
            raise DataError(
                f"column_map key '{key}' is not a column the {dataset} dataset reads "
                f"({', '.join(expected)}): column_map maps those names to your data's "
                f"column names{did_you_mean(key, expected)}"
            )
    present = rows.column_names
    resolved: dict[str, str] = {}
    for name in expected:
        actual = column_map.get(name, name)
        if actual in present:
            resolved[name] = actual
        elif name in required or name in column_map:
            mapped = f" (column_map['{name}'])" if name in column_map else ""
            raise DataError(
                f"column '{actual}'{mapped} not found in {where}; its columns are: "
                f"{', '.join(present)}. Set dataset.column_map to say which column holds "
                f"'{name}', e.g. column_map={{'{name}': '<your column>'}}"
                + did_you_mean(actual, present)
            )
    return resolved


def effective_max_seq_len(tokenizer: ModelTokenizer, max_seq_len: int | None) -> int | None:
    if max_seq_len is None:
        max_seq_len = getattr(tokenizer, "max_seq_len", None)
    if max_seq_len is not None and max_seq_len < 1:
        raise ConfigError(f"max_seq_len must be a positive integer, got {max_seq_len}")
    return max_seq_len


def maybe_pack(
    dataset: torch.utils.data.Dataset,
    tokenizer: ModelTokenizer,
    *,
    packed: bool,
    max_seq_len: int | None,
    split_across_pack: bool = False,
) -> torch.utils.data.Dataset:
    if not packed:
        return dataset
    if max_seq_len is None:
        raise ConfigError(
            "packed=True needs a sequence length: set dataset.max_seq_len or tokenizer.max_seq_len"
        )
    from tunesmith.data._packed import PackedDataset

    packed = PackedDataset(
        dataset, max_seq_len, padding_idx=tokenizer.pad_id, split_across_pack=split_across_pack
    )
    packed.source_dataset = dataset  # what was packed, for checks such as lost_responses
    return packed


def build_sft(
    rows: Any,
    where: str,
    tokenizer: ModelTokenizer,
    to_messages: Callable[[Mapping[str, Any]], list[Message]],
    *,
    packed: bool,
    max_seq_len: int | None,
    split_across_pack: bool = False,
) -> torch.utils.data.Dataset:
    """An :class:`SFTDataset` over ``rows``, packed if asked."""
    from tunesmith.data._sft import SFTDataset

    max_seq_len = effective_max_seq_len(tokenizer, max_seq_len)
    dataset = SFTDataset(rows, tokenizer, to_messages, max_seq_len=max_seq_len, where=where)
    return maybe_pack(
        dataset, tokenizer, packed=packed, max_seq_len=max_seq_len,
        split_across_pack=split_across_pack,
    )  # fmt: skip
