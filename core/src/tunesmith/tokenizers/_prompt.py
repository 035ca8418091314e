"""A checkpoint's prompt format: written by a fine-tune, applied by every loader.

A fine-tune whose dataset formatted its prompts (Alpaca's instruction format, or an
``instruct`` dataset's ``prompt_template``) writes the format into the output
directory twice:

- ``prompt_template.json`` (``{"name", "roles": {role: [prefix, suffix]}}``), which
  tunesmith's loaders read: a tokenizer that lays conversations out in code (Llama 3's
  tiktoken one) is wrapped so user turns get the format first;
- the chat template (``tokenizer_config.json``'s ``chat_template``, and
  ``chat_template.jinja`` where the source had one), rewritten to put each turn in
  the format before the original template lays the conversation out — what
  transformers' ``apply_chat_template``, vLLM's ``llm.chat`` and lm-eval's
  ``apply_chat_template`` render. Without an original chat template, the new one lays
  turns out as tunesmith's tokenizers do without one (bos, the turns, eos after
  answers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.data._messages import Message
from tunesmith.data._prompt import PromptTemplate

__all__ = [
    "PROMPT_TEMPLATE_FILE",
    "PromptTemplatedTokenizer",
    "chat_template_with",
    "read_prompt_template",
    "with_prompt_template",
    "write_prompt_format",
]

PROMPT_TEMPLATE_FILE = "prompt_template.json"
_MARK = "{#- tunesmith: the prompt format this model was fine-tuned with -#}\n"


class PromptTemplatedTokenizer:
    """A tokenizer whose ``tokenize_messages`` puts each turn in a prompt format first.

    Everything else is the wrapped tokenizer's (``encode``, ``decode``, ids, ...).

    Args:
        tokenizer: Any :class:`tunesmith.data.ModelTokenizer`.
        template: The format.
    """

    def __init__(self, tokenizer: Any, template: PromptTemplate) -> None:
        self.tokenizer = tokenizer
        self.prompt_template = template

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        return self.tokenizer.tokenize_messages(
            self.prompt_template.apply(messages), add_generation_prompt=add_generation_prompt
        )

    @property
    def max_seq_len(self) -> int | None:
        return self.tokenizer.max_seq_len

    @max_seq_len.setter
    def max_seq_len(self, value: int | None) -> None:
        self.tokenizer.max_seq_len = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)

    def __repr__(self) -> str:
        return (
            f"PromptTemplatedTokenizer({self.tokenizer!r}, {self.prompt_template.name or 'custom'})"
        )


def read_prompt_template(directory: str | Path) -> PromptTemplate | None:
    """The format recorded in ``directory/prompt_template.json``, if any."""
    path = Path(directory) / PROMPT_TEMPLATE_FILE
    if not path.is_file():
        return None
    from tunesmith.errors import CheckpointError

    try:
        return PromptTemplate.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}): fix or delete it") from None


def _renders_directory_template(tokenizer: Any) -> bool:
    from tunesmith.tokenizers._templated import TemplatedTokenizer

    return isinstance(tokenizer, TemplatedTokenizer) and tokenizer.chat_template is not None


def with_prompt_template(tokenizer: Any, directory: str | Path) -> Any:
    """``tokenizer``, wrapped to apply ``directory``'s recorded prompt format unless it
    renders the directory's chat template (which already applies it)."""
    template = read_prompt_template(directory)
    if template is None or _renders_directory_template(tokenizer):
        return tokenizer
    return PromptTemplatedTokenizer(tokenizer, template)


def chat_template_with(
    template: PromptTemplate, original: str | None, *, add_bos: bool = True
) -> str:
    """A Jinja chat template that puts each turn in ``template``'s format, then lays the
    conversation out with ``original`` (or, without one, as tunesmith's tokenizers do
    with no chat template: ``bos``, the turns, ``eos`` after each answer)."""
    roles = json.dumps({r: list(p) for r, p in template.roles.items()}, ensure_ascii=False)
    wrap = (
        _MARK
        + "{%- set tunesmith_format = " + roles + " -%}\n"
        "{%- set ns = namespace(messages=[]) -%}\n"
        "{%- for message in messages -%}\n"
        "{%- set around = tunesmith_format.get(message['role']) -%}\n"
        "{%- if around and message['content'] is string and not (around[1] and "
        "message['content'].endswith(around[1])) -%}\n"
        "{%- set ns.messages = ns.messages + [{'role': message['role'], 'content': "
        "around[0] ~ message['content'] ~ around[1]}] -%}\n"
        "{%- else -%}\n"
        "{%- set ns.messages = ns.messages + [message] -%}\n"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- set messages = ns.messages %}"
    )  # fmt: skip
    if original is None:
        original = (
            ("{{ bos_token }}" if add_bos else "")
            + "{% for message in messages %}{{ message['content'] }}"
            "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
        )
    elif original.startswith(_MARK):
        original = original.split("{%- set messages = ns.messages %}", 1)[1]
    return wrap + original


def write_prompt_format(
    directory: str | Path, template: PromptTemplate, *, add_bos: bool = True
) -> list[str]:
    """Record ``template`` in a checkpoint directory (see the module docstring).

    Args:
        directory: The checkpoint directory, its tokenizer files already there.
        template: The format the model was fine-tuned with.
        add_bos: Whether the tokenizer starts a conversation with ``bos`` (for a chat
            template written where the source had none).

    Returns:
        The files written, relative to ``directory``.
    """
    from tunesmith.tokenizers._templated import read_tokenizer_settings

    directory = Path(directory)
    settings = read_tokenizer_settings(directory)
    text = chat_template_with(template, settings.chat_template, add_bos=add_bos)
    written = [PROMPT_TEMPLATE_FILE]
    (directory / PROMPT_TEMPLATE_FILE).write_text(
        json.dumps(template.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    config_path = directory / "tokenizer_config.json"
    if config_path.is_file() or (directory / "tokenizer.json").is_file():
        config = (
            json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        )
        config["chat_template"] = text
        config_path.write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(config_path.name)
    if (directory / "chat_template.jinja").is_file():
        (directory / "chat_template.jinja").write_text(text, encoding="utf-8")
        written.append("chat_template.jinja")
    return written
