"""Jinja chat templates, rendered the way transformers renders them.

Templates come from checkpoints downloaded from the Hub, so they are untrusted
code: they run in jinja2's immutable sandbox, with the same globals and settings
as ``transformers``' ``apply_chat_template`` (``trim_blocks``, ``lstrip_blocks``,
``raise_exception``, ``strftime_now``, a ``tojson`` that does not escape HTML, and
the ``{% generation %}`` tag, here a no-op).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tunesmith.errors import CheckpointError, DataError

__all__ = ["ChatTemplate"]


def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(jinja2.ext.Extension):
        # transformers uses {% generation %} to find assistant spans; we find them by
        # prefix renders instead, so the tag only has to render its body.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(
                lineno
            )

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: Any = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


class ChatTemplate:
    """A compiled Jinja chat template.

    Args:
        source: The template text (``tokenizer_config.json``'s ``chat_template``).
        where: Where it came from, for error messages.

    Raises:
        CheckpointError: the template does not parse.
    """

    def __init__(self, source: str, *, where: str = "the chat template") -> None:
        import jinja2

        self.source = source
        self.where = where
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise CheckpointError(
                f"{where} is not a valid Jinja template ({exc.message}, line {exc.lineno}): "
                "fix chat_template in tokenizer_config.json or pass chat_template= explicitly"
            ) from None

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = False,
        **variables: Any,
    ) -> str:
        """Render a conversation.

        Args:
            messages: ``{"role": ..., "content": ...}`` dicts.
            add_generation_prompt: Append the header that opens an assistant turn.
            **variables: More template variables (``bos_token``, ``eos_token``, ...).

        Raises:
            DataError: the template rejected the conversation (``raise_exception``).
        """
        import jinja2

        variables.setdefault("tools", None)
        variables.setdefault("documents", None)
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **variables
            )
        except jinja2.TemplateError as exc:
            roles = ", ".join(m.get("role", "?") for m in messages)
            raise DataError(
                f"{self.where} rejected a conversation with roles [{roles}]: {exc}; "
                "fix the messages (e.g. alternate user/assistant turns) or use a tokenizer "
                "whose chat template accepts them"
            ) from None
