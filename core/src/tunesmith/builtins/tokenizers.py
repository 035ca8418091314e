"""Built-in tokenizers, registered like any plugin's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith import Tokenizer, hookimpl
from tunesmith.errors import ConfigError
from tunesmith.tokenizers import (
    auto_tokenizer,
    check_chat_template_kwargs,
    hf_tokenizer,
    sentencepiece_tokenizer,
)


def auto(
    path: str | Path | None = None,
    *,
    checkpointer: Any = None,
    max_seq_len: int | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> Any:
    """``tokenizer: {_component_: auto}``: whichever registered tokenizer the checkpoint
    directory's files call for (see :func:`tunesmith.tokenizers.auto_tokenizer`).

    Args:
        path: The directory to look in; default the checkpoint directory.
        checkpointer: The run's :class:`tunesmith.checkpoint.Checkpointer` (recipes pass
            it): its directory, and its family's tokenizers first.
        max_seq_len: Truncation length.
        chat_template_kwargs: More chat template variables (``{enable_thinking: false}``),
            for a tokenizer that renders the checkpoint's chat template.

    Raises:
        ConfigError: no directory, or ``chat_template_kwargs`` for a tokenizer that lays
            conversations out in code.
    """
    family = checkpointer.adapter.family if checkpointer is not None else None
    directory = path if path is not None else getattr(checkpointer, "checkpoint_dir", None)
    if directory is None:
        raise ConfigError(
            "tokenizer auto has no directory to look in: set tokenizer.path or "
            "checkpointer.checkpoint_dir"
        )
    tokenizer = auto_tokenizer(directory, family=family, max_seq_len=max_seq_len)
    if chat_template_kwargs:
        if not hasattr(tokenizer, "chat_template_kwargs"):
            raise ConfigError(
                f"tokenizer.chat_template_kwargs: {type(tokenizer).__name__}, the tokenizer "
                f"of {directory}, lays conversations out itself, not through a chat "
                "template: remove chat_template_kwargs, or set "
                "tokenizer._component_=hf_tokenizer, which renders the chat template of "
                "tokenizer_config.json"
            )
        tokenizer.chat_template_kwargs = check_chat_template_kwargs(chat_template_kwargs)
    return tokenizer


@hookimpl
def register_tokenizers(register):
    register(
        Tokenizer(
            name="auto",
            builder=auto,
            description="Whichever tokenizer the checkpoint directory's files call for",
        )
    )
    register(
        Tokenizer(
            name="hf_tokenizer",
            builder=hf_tokenizer,
            files=("tokenizer.json",),
            family=None,
            priority=0,
            description="Any checkpoint's tokenizer.json + tokenizer_config.json (chat template)",
        )
    )
    # Below hf_tokenizer: a checkpoint that ships both files reads tokenizer.json,
    # and a family's own tokenizer.model reader (llama2_tokenizer) wins over this one.
    register(
        Tokenizer(
            name="sentencepiece_tokenizer",
            builder=sentencepiece_tokenizer,
            files=("tokenizer.model",),
            family=None,
            priority=-10,
            description="Any checkpoint's sentencepiece tokenizer.model + tokenizer_config.json",
        )
    )
