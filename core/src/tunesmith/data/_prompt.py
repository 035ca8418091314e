"""Prompt templates: text put around each message's content before the tokenizer's own
chat format (the Alpaca instruction format, or a user's own).

A template is torchtune's "custom prompt template" form: a role -> ``(prefix, suffix)``
mapping. A dataset that formats its prompts with one records it as its
``prompt_template`` attribute; the fine-tuning recipe then writes it into the output
checkpoint (``prompt_template.json`` and the tokenizer's chat template), so every tool
that loads the result prompts the model as it was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.data._messages import Message
from tunesmith.errors import ConfigError, did_you_mean

__all__ = ["PROMPT_TEMPLATES", "PromptTemplate", "prompt_template"]


@dataclass(frozen=True)
class PromptTemplate:
    """Text around each message's content, by role.

    A message whose content already ends with its role's (non-empty) suffix is left
    alone, so applying a template twice (a prompt formatted by hand, then by a
    tokenizer that applies it too) changes nothing.

    Attributes:
        roles: ``{"user": (prefix, suffix), ...}``; roles not named are left alone.
        name: A short name (``"alpaca"``) for messages and model cards, or ``None``.
    """

    roles: Mapping[str, tuple[str, str]]
    name: str | None = None

    def wrap(self, role: str, content: str) -> str:
        """``content`` in ``role``'s format."""
        prefix, suffix = self.roles.get(role, ("", ""))
        if (prefix or suffix) and not (suffix and content.endswith(suffix)):
            return f"{prefix}{content}{suffix}"
        return content

    def apply(self, messages: Sequence[Message]) -> list[Message]:
        """The messages with each one's content in its role's format."""
        return [
            Message(m.role, self.wrap(m.role, m.content), masked=m.masked, eot=m.eot)
            if m.role in self.roles
            else m
            for m in messages
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``prompt_template.json``."""
        return {"name": self.name, "roles": {r: list(p) for r, p in self.roles.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptTemplate:
        """Read :meth:`to_dict`'s form, or torchtune's bare ``{role: [prefix, suffix]}``."""
        roles = data.get("roles", data) if isinstance(data, Mapping) else None
        name = data.get("name") if isinstance(data, Mapping) and "roles" in data else None
        if not isinstance(roles, Mapping) or not roles:
            raise ConfigError(
                f"prompt template {data!r} must map roles to [prefix, suffix], e.g. "
                '{user: ["Question: ", "\\nAnswer: "]}'
            )
        parsed: dict[str, tuple[str, str]] = {}
        for role, pair in roles.items():
            if (
                not isinstance(pair, Sequence)
                or isinstance(pair, str)
                or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)
            ):
                raise ConfigError(
                    f"prompt template role '{role}' must be [prefix, suffix] (two strings), "
                    f"not {pair!r}"
                )
            parsed[str(role)] = (pair[0], pair[1])
        return cls(parsed, name=name)


_ALPACA_PREFIX = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n"
)
_ALPACA_SUFFIX = "\n\n### Response:\n"

#: Templates known by name (``prompt_template: alpaca``).
PROMPT_TEMPLATES = {
    "alpaca": PromptTemplate({"user": (_ALPACA_PREFIX, _ALPACA_SUFFIX)}, name="alpaca"),
}

# torchtune's template classes whose format tunesmith has (its dotted paths are accepted).
_TORCHTUNE = {"AlpacaInstructTemplate": "alpaca"}


def prompt_template(value: Any) -> PromptTemplate | None:
    """The :class:`PromptTemplate` a config value names.

    Args:
        value: ``None``; a :class:`PromptTemplate`; a name of :data:`PROMPT_TEMPLATES`
            (``"alpaca"``); a ``{role: [prefix, suffix]}`` mapping (torchtune's custom
            template form); or a format string with ``{prompt}`` for the user's turn
            (``"Question: {prompt}\\nAnswer: "``).

    Raises:
        ConfigError: anything else, with the names it accepts.
    """
    if value is None or isinstance(value, PromptTemplate):
        return value
    if isinstance(value, Mapping):
        return PromptTemplate.from_dict(value)
    if isinstance(value, str):
        if "{prompt}" in value:
            prefix, _, suffix = value.partition("{prompt}")
            return PromptTemplate({"user": (prefix, suffix)})
        name = _TORCHTUNE.get(value.rsplit(".", 1)[-1], value)
        if name in PROMPT_TEMPLATES:
            return PROMPT_TEMPLATES[name]
    raise ConfigError(
        f"unknown prompt_template {value!r}{did_you_mean(str(value), PROMPT_TEMPLATES)}: use "
        f"{', '.join(PROMPT_TEMPLATES)}, a string with {{prompt}} in it, or "
        '{user: ["<before>", "<after>"]}'
    )
