"""Built-in tokenizers, registered like any plugin's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith import Tokenizer, hookimpl
from tunesmith.tokenizers import auto_tokenizer, hf_tokenizer, sentencepiece_tokenizer


def auto(
    path: str | Path | None = None, *, checkpointer: Any = None, max_seq_len: int | None = None
) -> Any:
    """``tokenizer: {_component_: auto}``: whichever registered tokenizer the checkpoint
    directory's files call for (see :func:`tunesmith.tokenizers.auto_tokenizer`).

    Args:
        path: The directory to look in; default the checkpoint directory.
        checkpointer: The run's :class:`tunesmith.checkpoint.Checkpointer` (recipes pass
            it): its directory, and its family's tokenizers first.
        max_seq_len: Truncation length.
    """
    family = checkpointer.adapter.family if checkpointer is not None else None
    directory = path if path is not None else getattr(checkpointer, "checkpoint_dir", None)
    if directory is None:
        from tunesmith.errors import ConfigError

        raise ConfigError(
            "tokenizer auto has no directory to look in: set tokenizer.path or "
            "checkpointer.checkpoint_dir"
        )
    return auto_tokenizer(directory, family=family, max_seq_len=max_seq_len)


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
