"""Map-style datasets that tokenize one row per item, on access."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from tunesmith.data._common import cell_text
from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX, Message, ModelTokenizer
from tunesmith.errors import DataError

__all__ = ["SFTDataset", "TextCompletionDataset"]


class _RowDataset(Dataset):
    """Rows tokenized on access; a bad cell raises a :class:`DataError` naming its row."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        tokenizer: ModelTokenizer,
        *,
        max_seq_len: int | None = None,
        where: str = "dataset",
    ) -> None:
        self._rows = rows
        self._tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self._where = where
        self._end_ids = {tokenizer.eos_id, *tokenizer.stop_tokens}

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        try:
            tokens, labels = self._tokenize(self._rows[index])
        except DataError as exc:
            raise DataError(f"{self._where}, row {index}: {exc}") from None
        if self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            # Keep the start (prompts come first, and a cut answer still teaches its
            # prefix) and, like the tokenizers do, a final end token, so the model keeps
            # learning that answers stop.
            last = tokens[-1], labels[-1]
            tokens, labels = tokens[: self.max_seq_len], labels[: self.max_seq_len]
            if last[0] in self._end_ids:
                tokens[-1], labels[-1] = last
        return {"tokens": tokens, "labels": labels}

    def _tokenize(self, row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        raise NotImplementedError


class SFTDataset(_RowDataset):
    """Supervised fine-tuning samples: each row becomes a conversation, then tokens.

    Items are ``{"tokens": list[int], "labels": list[int]}`` of equal length, where
    ``labels[i]`` is ``tokens[i]`` for trained tokens and ``CROSS_ENTROPY_IGNORE_IDX``
    for masked ones (per the tokenizer's mask). Labels are not shifted.

    Args:
        rows: Indexable rows (a :class:`datasets.Dataset` or a list of dicts).
        tokenizer: Turns the messages into ``(tokens, mask)``.
        to_messages: ``row -> list[Message]``; may raise :class:`DataError` for a bad
            cell, which is re-raised naming the row.
        max_seq_len: Truncate longer samples to this many tokens (keeping a final end
            token, as the tokenizers do).
        where: How messages name the data (a file path or a Hub name).
    """

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        tokenizer: ModelTokenizer,
        to_messages: Callable[[Mapping[str, Any]], list[Message]],
        *,
        max_seq_len: int | None = None,
        where: str = "dataset",
    ) -> None:
        super().__init__(rows, tokenizer, max_seq_len=max_seq_len, where=where)
        self._to_messages = to_messages

    def _tokenize(self, row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        tokens, mask = self._tokenizer.tokenize_messages(self._to_messages(row))
        labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask, strict=True)]
        return tokens, labels


class TextCompletionDataset(_RowDataset):
    """Plain text for continued pre-training: ``bos + text + eos``, every token trained.

    Args:
        rows: Indexable rows.
        tokenizer: Encodes the text.
        column: The column holding the text.
        max_seq_len: Truncate longer samples to this many tokens (keeping a final end
            token, as the tokenizers do).
        where: How messages name the data.
    """

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        tokenizer: ModelTokenizer,
        *,
        column: str = "text",
        max_seq_len: int | None = None,
        where: str = "dataset",
    ) -> None:
        super().__init__(rows, tokenizer, max_seq_len=max_seq_len, where=where)
        self._column = column

    def _tokenize(self, row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        tokens = self._tokenizer.encode(cell_text(row, self._column), add_bos=True, add_eos=True)
        return tokens, list(tokens)
