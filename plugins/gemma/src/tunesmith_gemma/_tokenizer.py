"""Gemma's tokenizer: the checkpoint's ``tokenizer.json`` (through the core's
:class:`~tunesmith.tokenizers.HFTokenizer`) or sentencepiece ``tokenizer.model``
(:class:`~tunesmith.tokenizers.SentencePieceTokenizer`), with Gemma's chat format.

Both render conversations with the checkpoint's own chat template exactly as
transformers' ``apply_chat_template`` does (``<bos>`` once, from the template;
``<start_of_turn>user\\n...<end_of_turn>\\n``); a checkpoint without one (a base model
directory) gets its generation's template. ``<end_of_turn>`` ends every turn, so it
is always a stop token (Gemma 1's ``generation_config.json`` names only ``<eos>``)
and is trained at the end of each assistant turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith import CheckpointError
from tunesmith.tokenizers import (
    HFTokenizer,
    SentencePieceTokenizer,
    TemplatedTokenizer,
    read_tokenizer_settings,
)
from tunesmith_gemma._chat import END_OF_TURN, GEMMA3_CHAT_TEMPLATE, GEMMA_CHAT_TEMPLATE

__all__ = ["gemma_tokenizer"]

_FILES = ("tokenizer.json", "tokenizer.model")


def _default_template(directory: Path) -> str:
    """The chat template of the generation ``config.json`` in ``directory`` names."""
    try:
        model_type = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        model_type = str(model_type.get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        model_type = ""
    return GEMMA3_CHAT_TEMPLATE if model_type.startswith("gemma3") else GEMMA_CHAT_TEMPLATE


def gemma_tokenizer(
    path: str | Path,
    *,
    max_seq_len: int | None = None,
    chat_template: str | None = None,
    **kwargs: Any,
) -> TemplatedTokenizer:
    """Gemma / Gemma 2 / Gemma 3 tokenizer from a checkpoint's tokenizer files.

    Args:
        path: The checkpoint directory (``tokenizer.json`` is preferred to
            ``tokenizer.model`` when both are there), or either file.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        chat_template: A Jinja template to use instead of the checkpoint's (default:
            the checkpoint's, else Gemma 3's for a ``gemma3``/``gemma3_text``
            ``config.json`` beside it, else Gemma 1/2's).
        **kwargs: Passed to the tokenizer class (``add_bos``).

    Returns:
        An :class:`~tunesmith.tokenizers.HFTokenizer` or
        :class:`~tunesmith.tokenizers.SentencePieceTokenizer` that stops at ``<eos>``
        and ``<end_of_turn>``.

    Raises:
        CheckpointError: no tokenizer file at ``path``, or a file that does not load.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = next((path / f for f in _FILES if (path / f).is_file()), None)
        if found is None:
            raise CheckpointError(
                f"no Gemma tokenizer in {path}: expected tokenizer.json or tokenizer.model — "
                "download the checkpoint's tokenizer files too, or point tokenizer.path at them"
            )
        path = found
    if chat_template is None and read_tokenizer_settings(path.parent).chat_template is None:
        chat_template = _default_template(path.parent)
    kind = SentencePieceTokenizer if path.suffix == ".model" else HFTokenizer
    return kind(
        path,
        max_seq_len=max_seq_len,
        chat_template=chat_template,
        extra_stop_tokens=[END_OF_TURN],
        **kwargs,
    )
