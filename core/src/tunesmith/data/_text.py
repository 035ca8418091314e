"""Unstructured text for continued pre-training (``text_completion``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tunesmith.data._common import (
    effective_max_seq_len,
    maybe_pack,
    prepare_rows,
    resolve_columns,
)
from tunesmith.data._messages import ModelTokenizer

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["text_completion"]


def text_completion(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    data_files: Any = None,
    split: str = "train",
    column_map: Mapping[str, str] | None = None,
    train_on_input: bool = False,
    packed: bool = False,
    max_seq_len: int | None = None,
    split_across_pack: bool = False,
    filter_fn: Callable[[dict[str, Any]], bool] | None = None,
    **load_kwargs: Any,
) -> torch.utils.data.Dataset:
    """Text from a ``text`` column, encoded as ``bos + text + eos`` with every token trained.

    A ``.txt`` file gives one row per line.

    Args:
        tokenizer: The model's tokenizer.
        source: Hub name, builder name (with ``data_files``) or local file.
        data_files: Files for a builder name or a Hub dataset.
        split: Split to load; slicing works (``"train[:90%]"``).
        column_map: ``{"text": "<your column>"}``.
        train_on_input: Accepted so every builder takes the same keys; it changes
            nothing here since all tokens are trained.
        packed: Pack samples into ``max_seq_len``-long sequences (usual for pre-training).
        max_seq_len: Truncate samples to this length; defaults to ``tokenizer.max_seq_len``.
        split_across_pack: With ``packed``, lay texts end to end and continue one that
            does not fit in the next pack (torchtune's default for text) instead of
            keeping each whole (see :class:`~tunesmith.data.PackedDataset`).
        filter_fn: Keep only rows for which it is true.
        **load_kwargs: Passed to :func:`datasets.load_dataset`.

    Returns:
        A map-style dataset of ``{"tokens", "labels"}`` (packs if ``packed``).

    Raises:
        DataError: unloadable data, a missing column, no rows, or a bad cell (on access).
    """
    from tunesmith.data._sft import TextCompletionDataset

    rows, where = prepare_rows(text_completion, source, data_files, split, filter_fn, load_kwargs)
    column = resolve_columns(rows, where, "text_completion", column_map, required=("text",))["text"]
    max_seq_len = effective_max_seq_len(tokenizer, max_seq_len)
    dataset = TextCompletionDataset(
        rows, tokenizer, column=column, max_seq_len=max_seq_len, where=where
    )
    return maybe_pack(
        dataset, tokenizer, packed=packed, max_seq_len=max_seq_len,
        split_across_pack=split_across_pack,
    )  # fmt: skip
