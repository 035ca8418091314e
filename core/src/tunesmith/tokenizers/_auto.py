"""``tokenizer: {_component_: auto}``: the tokenizer a checkpoint directory's files call for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.errors import CheckpointError

__all__ = ["auto_tokenizer", "find_tokenizer"]


def _family_from_config(directory: Path, registry: Any) -> str | None:
    """The family whose checkpoint adapter reads ``config.json``'s ``model_type``."""
    try:
        model_type = json.loads((directory / "config.json").read_text(encoding="utf-8"))[
            "model_type"
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from tunesmith.checkpoint import find_adapter
    from tunesmith.errors import CheckpointError

    try:
        return find_adapter(str(model_type), registry=registry).family
    except CheckpointError:
        return None


def _serves(record: Any, family: str | None) -> bool:
    """Whether a tokenizer record is generic or belongs to ``family``."""
    families = (record.family,) if isinstance(record.family, str) else record.family
    return families is None or family in families


def find_tokenizer(checkpoint_dir: str | Path, *, family: str | None = None) -> tuple[Any, Path]:
    """The registered tokenizer a checkpoint directory's files call for, and its file.

    Candidates are the registered :class:`tunesmith.Tokenizer` records of ``family``
    plus the generic ones (``family=None``) with one of their ``files`` in the
    directory; the highest ``priority`` wins (ties: by name). Each record's first
    existing file, in its ``files`` order, is the one it loads.

    Args:
        checkpoint_dir: The model directory.
        family: The model family; default: the family whose checkpoint adapter reads
            the directory's ``config.json`` ``model_type``, if any.

    Returns:
        ``(tokenizer_record, file_path)``.

    Raises:
        CheckpointError: the directory does not exist or nothing matches.
    """
    from tunesmith.registry import get_registry

    directory = Path(checkpoint_dir).expanduser()
    if not directory.is_dir():
        raise CheckpointError(
            f"tokenizer directory {directory} does not exist: point tokenizer.path (or "
            "checkpointer.checkpoint_dir) at the downloaded model directory"
        )
    registry = get_registry()
    if family is None:
        family = _family_from_config(directory, registry)
    records = sorted(
        (r for r in registry.values("tokenizers") if r.files and _serves(r, family)),
        key=lambda r: (-r.priority, r.name),
    )
    matches = []
    for record in records:
        found = next((directory / f for f in record.files if (directory / f).is_file()), None)
        if found is not None:
            matches.append((record, found))
    if not matches:
        looked = "; ".join(f"{', '.join(r.files)} ({r.name})" for r in records) or "nothing"
        names = " | ".join(r.name for r in records) or "<name>"
        raise CheckpointError(
            f"no tokenizer found in {directory}"
            + (f" for model family '{family}'" if family else "")
            + f": looked for {looked}. Copy the model's tokenizer files there, or name one: "
            f"tokenizer: {{_component_: {names}, path: <tokenizer file>}}"
        )
    return matches[0]


def auto_tokenizer(
    checkpoint_dir: str | Path,
    *,
    family: str | None = None,
    max_seq_len: int | None = None,
    **kwargs: Any,
) -> Any:
    """Build the tokenizer a checkpoint directory's files call for.

    A Llama 3 repository holds both ``original/tokenizer.model`` (tiktoken) and
    ``tokenizer.json``; the family's tokenizer registers the first with a higher
    priority, so it wins, while a directory with only ``tokenizer.json`` falls back to
    the generic ``hf_tokenizer``. See :func:`find_tokenizer` for the rules.

    Args:
        checkpoint_dir: The model directory.
        family: The model family (``"llama"``); default: from ``config.json``.
        max_seq_len: Passed to the builder.
        **kwargs: Passed to the builder.

    Returns:
        An object implementing :class:`tunesmith.data.ModelTokenizer`.

    A directory a fine-tune wrote with a prompt format (``prompt_template.json``) gets
    its tokenizer wrapped to apply it, unless the tokenizer renders the directory's chat
    template, which applies it already.

    Raises:
        CheckpointError: no registered tokenizer's files are in the directory.
    """
    from tunesmith.tokenizers._prompt import with_prompt_template

    record, path = find_tokenizer(checkpoint_dir, family=family)
    tokenizer = record.builder(path, max_seq_len=max_seq_len, **kwargs)
    # A fine-tune's prompt format (prompt_template.json), for tokenizers that lay
    # conversations out in code rather than through the directory's chat template.
    return with_prompt_template(tokenizer, checkpoint_dir)
