"""Instruction datasets: one prompt and one answer per row (``alpaca``, ``instruct``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tunesmith.data._common import build_sft, prepare_rows, resolve_columns
from tunesmith.data._loading import cell_text
from tunesmith.data._messages import Message, ModelTokenizer
from tunesmith.data._prompt import PROMPT_TEMPLATES
from tunesmith.data._prompt import prompt_template as prompt_template_of

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["alpaca", "alpaca_prompt", "instruct"]

_ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt for an instruction and optional input.

    Use it at generation time to ask a model fine-tuned with :func:`alpaca` a
    question in the format it learned.
    """
    if input:  # any non-empty input, even blank, as torchtune and Stanford Alpaca decide
        return _ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return _ALPACA_NO_INPUT.format(instruction=instruction)


def alpaca(
    tokenizer: ModelTokenizer,
    *,
    source: str = "tatsu-lab/alpaca",
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
    """Alpaca-style instruction data: columns ``instruction``, ``input`` (optional), ``output``.

    Each row becomes a user message holding :func:`alpaca_prompt` and an assistant
    message holding ``output``.

    Args:
        tokenizer: The model's tokenizer.
        source: Hub name, builder name (with ``data_files``), local file, or
            ``"tunesmith:alpaca_sample"`` (see :func:`load_rows`).
        data_files: Files for a builder name or a Hub dataset.
        split: Split to load; slicing works (``"train[:90%]"``).
        column_map: Expected column -> your column, e.g. ``{"output": "answer"}``.
        train_on_input: Also train on the prompt's tokens (else only the answer's).
        packed: Pack samples into ``max_seq_len``-long sequences (:class:`PackedDataset`).
        max_seq_len: Truncate samples to this length; defaults to ``tokenizer.max_seq_len``.
        split_across_pack: With ``packed``, continue a sample that does not fit in the
            next pack instead of keeping each whole (see :class:`PackedDataset`).
        filter_fn: Keep only rows (dicts of the original columns) for which it is true.
        **load_kwargs: Passed to :func:`datasets.load_dataset`.

    Returns:
        A map-style dataset of ``{"tokens", "labels"}`` (packs if ``packed``).

    Raises:
        DataError: unloadable data, a missing column, no rows, or a bad cell (on access).
    """
    rows, where = prepare_rows(alpaca, source, data_files, split, filter_fn, load_kwargs)
    cols = resolve_columns(
        rows, where, "alpaca", column_map, required=("instruction", "output"), optional=("input",)
    )

    def to_messages(row: Mapping[str, Any]) -> list[Message]:
        extra = cell_text(row, cols["input"], optional=True) if "input" in cols else ""
        prompt = alpaca_prompt(cell_text(row, cols["instruction"]), extra)
        return [
            Message("user", prompt, masked=not train_on_input),
            Message("assistant", cell_text(row, cols["output"])),
        ]

    dataset = build_sft(
        rows, where, tokenizer, to_messages, packed=packed, max_seq_len=max_seq_len,
        split_across_pack=split_across_pack,
    )  # fmt: skip
    # The format a question without input takes at inference (written into the output).
    dataset.prompt_template = PROMPT_TEMPLATES["alpaca"]
    return dataset


def instruct(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    data_files: Any = None,
    split: str = "train",
    column_map: Mapping[str, str] | None = None,
    train_on_input: bool = False,
    new_system_prompt: str | None = None,
    prompt_template: str | Mapping[str, Any] | None = None,
    packed: bool = False,
    max_seq_len: int | None = None,
    split_across_pack: bool = False,
    filter_fn: Callable[[dict[str, Any]], bool] | None = None,
    **load_kwargs: Any,
) -> torch.utils.data.Dataset:
    """Generic prompt/answer data: columns ``input`` (the user's turn) and ``output``.

    With ``prompt_template`` each ``input`` is put in that format first (``alpaca``,
    ``"Question: {prompt}\\nAnswer: "``, or ``{user: [prefix, suffix]}``); the
    fine-tuned checkpoint then carries the format, so its users' plain questions are
    prompted the same way.

    Args:
        tokenizer: The model's tokenizer.
        source: Hub name, builder name (with ``data_files``) or local file.
        data_files: Files for a builder name or a Hub dataset.
        split: Split to load; slicing works (``"train[:90%]"``).
        column_map: Expected column -> your column, e.g.
            ``{"input": "question", "output": "answer"}``.
        train_on_input: Also train on the prompt's tokens.
        new_system_prompt: A system message put before every prompt (never trained).
        prompt_template: The format of the user's turn (see above); ``None``: as is.
        packed: Pack samples into ``max_seq_len``-long sequences.
        max_seq_len: Truncate samples to this length; defaults to ``tokenizer.max_seq_len``.
        split_across_pack: With ``packed``, continue a sample that does not fit in the
            next pack instead of keeping each whole (see :class:`PackedDataset`).
        filter_fn: Keep only rows for which it is true.
        **load_kwargs: Passed to :func:`datasets.load_dataset`.

    Returns:
        A map-style dataset of ``{"tokens", "labels"}`` (packs if ``packed``).

    Raises:
        DataError: unloadable data, a missing column, no rows, or a bad cell (on access).
    """
    rows, where = prepare_rows(instruct, source, data_files, split, filter_fn, load_kwargs)
    cols = resolve_columns(rows, where, "instruct", column_map, required=("input", "output"))
    template = prompt_template_of(prompt_template)

    def to_messages(row: Mapping[str, Any]) -> list[Message]:
        system = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
        user = cell_text(row, cols["input"])
        if template is not None:
            user = template.wrap("user", user)
        return [
            *system,
            Message("user", user, masked=not train_on_input),
            Message("assistant", cell_text(row, cols["output"])),
        ]

    dataset = build_sft(
        rows, where, tokenizer, to_messages, packed=packed, max_seq_len=max_seq_len,
        split_across_pack=split_across_pack,
    )  # fmt: skip
    dataset.prompt_template = template
    return dataset
