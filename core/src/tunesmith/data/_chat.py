"""Multi-turn conversations in OpenAI or ShareGPT layout (``chat``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tunesmith.data._common import build_sft, prepare_rows, resolve_columns
from tunesmith.data._messages import Message, ModelTokenizer
from tunesmith.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["chat", "conversation_to_messages"]

#: Style -> (default conversation column, role key, text key).
_STYLES = {
    "openai": ("messages", "role", "content"),
    "sharegpt": ("conversations", "from", "value"),
}
_OPENAI_ROLES = {r: r for r in ("system", "user", "assistant", "tool", "ipython")}
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "tool": "tool",
}


def conversation_to_messages(
    conversation: Any,
    *,
    conversation_style: str = "openai",
    train_on_input: bool = False,
    new_system_prompt: str | None = None,
) -> list[Message]:
    """Turn one conversation (a list of turn dicts) into :class:`Message` objects.

    Assistant turns are trained; the others are masked unless ``train_on_input``.
    ``new_system_prompt`` replaces any system turns with one masked system message.

    Raises:
        ConfigError: an unknown ``conversation_style``.
        DataError: a turn that is not a dict with the style's keys, an unknown role,
            or an empty conversation.
    """
    _check_style(conversation_style)
    _, role_key, text_key = _STYLES[conversation_style]
    roles = _OPENAI_ROLES if conversation_style == "openai" else _SHAREGPT_ROLES
    if not isinstance(conversation, list) or not conversation:
        raise DataError(
            f"the conversation must be a non-empty list of turns, got {str(conversation)[:60]!r}"
        )
    messages = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
    for number, turn in enumerate(conversation):
        if not isinstance(turn, Mapping) or turn.get(role_key) is None:
            raise DataError(
                f"turn {number} must be a dict with '{role_key}' and '{text_key}' "
                f"({conversation_style} style), got {str(turn)[:80]!r}; if the data uses the "
                "other layout, set conversation_style"
            )
        speaker = turn[role_key]
        if speaker not in roles:
            raise DataError(
                f"turn {number} has {role_key} '{speaker}': {conversation_style} turns use "
                f"{', '.join(roles)}{did_you_mean(str(speaker), roles)}"
            )
        role = roles[speaker]
        if role == "system" and new_system_prompt:
            continue
        text = _turn_text(turn.get(text_key), number, text_key)
        masked = role != "assistant" and not train_on_input
        messages.append(Message(role, text, masked=masked))
    return messages


def _check_style(style: str) -> None:
    if style not in _STYLES:
        raise ConfigError(
            f"unknown conversation_style '{style}': use 'openai' (role/content) "
            f"or 'sharegpt' (from/value){did_you_mean(style, _STYLES)}"
        )


def _turn_text(content: Any, number: int, key: str) -> str:
    if isinstance(content, str):
        return content
    # OpenAI's list-of-parts content; only text parts can be trained on here.
    if isinstance(content, list) and all(
        isinstance(p, Mapping) and p.get("type") == "text" for p in content
    ):
        return "".join(str(p.get("text") or "") for p in content)
    raise DataError(
        f"turn {number}'s '{key}' must be text (or a list of text parts), got {str(content)[:60]!r}"
    )


def chat(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    data_files: Any = None,
    split: str = "train",
    column_map: Mapping[str, str] | None = None,
    conversation_column: str | None = None,
    conversation_style: str = "openai",
    train_on_input: bool = False,
    new_system_prompt: str | None = None,
    packed: bool = False,
    max_seq_len: int | None = None,
    split_across_pack: bool = False,
    filter_fn: Callable[[dict[str, Any]], bool] | None = None,
    **load_kwargs: Any,
) -> torch.utils.data.Dataset:
    """Conversations, one per row.

    ``conversation_style="openai"`` reads a ``messages`` column of
    ``{"role", "content"}`` turns; ``"sharegpt"`` reads a ``conversations`` column of
    ``{"from", "value"}`` turns with ``human`` -> user, ``gpt`` -> assistant and
    ``system``.

    Args:
        tokenizer: The model's tokenizer (applies its chat format).
        source: Hub name, builder name (with ``data_files``) or local file.
        data_files: Files for a builder name or a Hub dataset.
        split: Split to load; slicing works (``"train[:90%]"``).
        column_map: ``{"messages": col}`` (openai) or ``{"conversations": col}``
            (sharegpt); same as ``conversation_column``.
        conversation_column: The column holding each conversation.
        conversation_style: ``"openai"`` or ``"sharegpt"``.
        train_on_input: Also train on non-assistant turns.
        new_system_prompt: Replace every conversation's system turns with this one.
        packed: Pack samples into ``max_seq_len``-long sequences.
        max_seq_len: Truncate samples to this length; defaults to ``tokenizer.max_seq_len``.
        split_across_pack: With ``packed``, continue a sample that does not fit in the
            next pack instead of keeping each whole (see :class:`PackedDataset`).
        filter_fn: Keep only rows for which it is true.
        **load_kwargs: Passed to :func:`datasets.load_dataset`.

    Returns:
        A map-style dataset of ``{"tokens", "labels"}`` (packs if ``packed``).

    Raises:
        ConfigError: an unknown style, or a ``conversation_column`` that contradicts
            ``column_map``.
        DataError: unloadable data, a missing column, no rows, or a bad turn (on access).
    """
    _check_style(conversation_style)
    expected = _STYLES[conversation_style][0]
    column_map = dict(column_map or {})
    if conversation_column is not None:
        if column_map.get(expected, conversation_column) != conversation_column:
            raise ConfigError(
                f"conversation_column '{conversation_column}' and column_map['{expected}'] = "
                f"'{column_map[expected]}' disagree: set only one of them"
            )
        column_map[expected] = conversation_column
    rows, where = prepare_rows(chat, source, data_files, split, filter_fn, load_kwargs)
    column = resolve_columns(rows, where, "chat", column_map, required=(expected,))[expected]

    def to_messages(row: Mapping[str, Any]) -> list[Message]:
        return conversation_to_messages(
            row[column],
            conversation_style=conversation_style,
            train_on_input=train_on_input,
            new_system_prompt=new_system_prompt,
        )

    return build_sft(
        rows, where, tokenizer, to_messages, packed=packed, max_seq_len=max_seq_len,
        split_across_pack=split_across_pack,
    )  # fmt: skip
