"""Map-style datasets that tokenize one row per item, on access."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from torch.utils.data import Dataset

from tunesmith.data._loading import cell_text
from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX, Message, ModelTokenizer
from tunesmith.data._truncation import end_tail, truncate
from tunesmith.errors import DataError

__all__ = ["SFTDataset", "TextCompletionDataset", "Truncation", "lost_responses"]


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
        tokens, labels, _ = self._sample(index)
        return {"tokens": tokens, "labels": labels}

    def _sample(self, index: int) -> tuple[list[int], list[int], bool]:
        """``(tokens, labels, lost)``: ``lost`` says truncation cut away every trained
        token but the final end token (the whole response, when prompts are masked)."""
        try:
            tokens, labels = self._tokenize(self._rows[index])
        except DataError as exc:
            raise DataError(f"{self._where}, row {index}: {exc}") from None
        lost = False
        tail = end_tail(tokens, self._end_ids)
        if self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            cut = self.max_seq_len - tail if tail < self.max_seq_len else self.max_seq_len
            lost = any(x != CROSS_ENTROPY_IGNORE_IDX for x in labels[: len(labels) - tail]) and all(
                x == CROSS_ENTROPY_IGNORE_IDX for x in labels[:cut]
            )
            tokens, labels = self._cut(tokens, labels)
        elif self.cut_at is not None and len(tokens) >= self.cut_at > 1:
            # The tokenizer cut it already (keeping its end token): nothing before that
            # end is trained.
            lost = all(x == CROSS_ENTROPY_IGNORE_IDX for x in labels[: len(labels) - max(tail, 1)])
        return tokens, labels, lost

    def _cut(self, tokens: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        # The start is kept (prompts come first, and a cut answer still teaches its
        # prefix), and, as the tokenizers cut, the end token, untrained.
        return truncate(
            tokens, labels, self.max_seq_len, end_ids=self._end_ids,
            masked=CROSS_ENTROPY_IGNORE_IDX,
        )  # fmt: skip

    @property
    def cut_at(self) -> int | None:
        """The length samples are cut to: this dataset's or the tokenizer's
        ``max_seq_len``, whichever is shorter (``None``: no limit)."""
        limits = [self.max_seq_len, getattr(self._tokenizer, "max_seq_len", None)]
        limits = [n for n in limits if isinstance(n, int)]
        return min(limits) if limits else None

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
            token, untrained, as the tokenizers do).
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
        messages = self._to_messages(row)
        check_turns(messages)
        tokens, mask = self._tokenizer.tokenize_messages(messages)
        labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask, strict=True)]
        return tokens, labels


def check_turns(messages: Sequence[Message]) -> None:
    """Refuse a conversation that is not an exchange, as torchtune's SFT datasets do:
    fewer than two messages, a system message after the first, two user messages in a
    row, or an assistant message that answers no user (or tool) message.

    Raises:
        DataError: naming the first such message.
    """
    if len(messages) < 2:
        raise DataError(
            f"the conversation has {len(messages)} message(s): a sample needs at least a user "
            "message and the assistant's answer"
        )
    previous = None
    for i, message in enumerate(messages):
        problem = None
        if message.role == "system" and i > 0:
            problem = "is a system message after the first: put the system message first"
        elif message.role == "user" and previous == "user":
            problem = "is a second user message in a row: join the two, or answer the first"
        elif message.role == "assistant" and previous not in ("user", "tool", "ipython"):
            after = f"a {previous} message" if previous else "nothing"
            problem = f"is an assistant message that answers no user message (it follows {after})"
        if problem:
            raise DataError(f"message {i} {problem}")
        previous = message.role


class TextCompletionDataset(_RowDataset):
    """Plain text for continued pre-training: ``bos + text + eos``, every token trained.

    Args:
        rows: Indexable rows.
        tokenizer: Encodes the text.
        column: The column holding the text.
        max_seq_len: A longer text is cut to its first ``max_seq_len - 1`` tokens, with
            no eos, as torchtune's ``text_completion_dataset`` cuts (the text goes on).
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

    def _cut(self, tokens: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        assert self.max_seq_len is not None
        keep = max(self.max_seq_len - 1, 1)
        return tokens[:keep], labels[:keep]


class Truncation(NamedTuple):
    """What :func:`lost_responses` found."""

    lost: int  #: samples whose every trained token was cut away
    checked: int  #: samples looked at
    total: int  #: samples in the dataset
    max_seq_len: int  #: the length they were cut to


def lost_responses(dataset: Any, *, limit: int = 10_000) -> Truncation | None:
    """Count the samples that ``max_seq_len`` truncates so far that nothing of their
    response is trained (their prompt alone fills it), among the first ``limit``.

    Args:
        dataset: An :class:`SFTDataset` or :class:`TextCompletionDataset`, or a packed
            one built on it (its ``source_dataset``); anything else gives ``None``.
        limit: Look at no more samples than this (each one is tokenized).

    Returns:
        The counts, or ``None`` when the dataset does not truncate or is not one of these.
        Rows that cannot be tokenized are skipped here (training reports them).
    """
    rows = getattr(dataset, "source_dataset", dataset)
    if not isinstance(rows, _RowDataset) or rows.cut_at is None:
        return None
    total = len(rows)
    checked = min(total, limit)
    lost = 0
    for index in range(checked):
        try:
            lost += rows._sample(index)[2]
        except DataError:
            continue
    return Truncation(lost, checked, total, rows.cut_at)
