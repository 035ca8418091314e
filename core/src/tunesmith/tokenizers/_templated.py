"""What every tokenizer that reads a Hugging Face checkpoint's tokenizer files shares:
its settings (``tokenizer_config.json``, ``special_tokens_map.json``,
``chat_template.jinja``, ``generation_config.json``) and rendering conversations
through the checkpoint's chat template with per-token loss masks.

:class:`TemplatedTokenizer` is the base of :class:`~tunesmith.tokenizers.HFTokenizer`
(``tokenizer.json``) and :class:`~tunesmith.tokenizers.SentencePieceTokenizer`
(``tokenizer.model``); a subclass only says how text becomes ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data._messages import Message
from tunesmith.errors import CheckpointError, ConfigError, DataError
from tunesmith.tokenizers._chat_template import ChatTemplate
from tunesmith.tokenizers._utils import (
    common_prefix_len,
    join_chunks,
    mask_from_offsets,
    truncate,
)

__all__ = [
    "TemplatedTokenizer",
    "TokenizerSettings",
    "check_chat_template_kwargs",
    "read_tokenizer_settings",
]

_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")
#: What transformers' continue_final_message appends to the last message to find its end.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
#: Template variables tunesmith sets itself for each render.
_RENDER_ARGUMENTS = ("messages", "add_generation_prompt")


def check_chat_template_kwargs(value: Any, key: str = "chat_template_kwargs") -> dict[str, Any]:
    """``value`` as a plain dict of more variables for the chat template, as
    transformers' ``apply_chat_template(**kwargs)`` passes them
    (``{"enable_thinking": False}`` for Qwen 3); ``key`` names it in messages.

    Raises:
        ConfigError: not a mapping of names, or it sets what each render sets.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f"{key} must map template variable names to values, not {value!r}: "
            f"e.g. {key}: {{enable_thinking: false}}"
        )
    taken = [k for k in _RENDER_ARGUMENTS if k in value]
    if taken:
        raise ConfigError(
            f"{key} sets {', '.join(taken)}, which tunesmith passes the template itself: remove it"
        )
    return dict(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {path}: {exc}; restore the file from the model's repository"
        ) from None


def _token_content(value: Any) -> str | None:
    # transformers 4 wrote special tokens either as strings or as serialized AddedTokens.
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _pick_template(value: Any) -> str | None:
    # A list of {"name", "template"} dicts names several templates; "default" is the chat one.
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        return named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class TokenizerSettings:
    """A checkpoint directory's tokenizer settings, as transformers reads them.

    Attributes:
        directory: Where they were read.
        config: ``special_tokens_map.json`` updated by ``tokenizer_config.json``.
        special_tokens: ``bos_token``/``eos_token``/``pad_token``/``unk_token`` -> text.
        chat_template: The chat template (``chat_template.jinja``, else the config's
            ``chat_template``, else ``chat_template.json``), or ``None``.
        generation_eos: ``generation_config.json``'s ``eos_token_id`` values.
        added_tokens: ``tokenizer_config.json``'s ``added_tokens_decoder``: id -> text.
    """

    directory: Path
    config: dict[str, Any] = field(default_factory=dict)
    special_tokens: dict[str, str] = field(default_factory=dict)
    chat_template: str | None = None
    generation_eos: tuple[int, ...] = ()
    added_tokens: dict[int, str] = field(default_factory=dict)


def read_tokenizer_settings(directory: str | Path) -> TokenizerSettings:
    """Read the tokenizer settings files of a checkpoint directory (all optional).

    Raises:
        CheckpointError: a file exists but is not valid JSON.
    """
    directory = Path(directory)
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (directory / name).is_file():
            config.update(_read_json(directory / name))
    special = {}
    for key in _SPECIAL_KEYS:
        content = _token_content(config.get(key))
        if content is not None:
            special[key] = content
    template = None
    if (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
    elif config.get("chat_template") is not None:
        template = _pick_template(config["chat_template"])
    elif (directory / "chat_template.json").is_file():
        template = _pick_template(_read_json(directory / "chat_template.json").get("chat_template"))
    generation = {}
    if (directory / "generation_config.json").is_file():
        generation = _read_json(directory / "generation_config.json")
    elif (directory / "config.json").is_file():  # where transformers' generate looks then
        generation = _read_json(directory / "config.json")
    eos = generation.get("eos_token_id")
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    added = {}
    for key, value in (config.get("added_tokens_decoder") or {}).items():
        content = _token_content(value)
        if content is not None and str(key).isdigit():
            added[int(key)] = content
    return TokenizerSettings(
        directory=directory,
        config=config,
        special_tokens=special,
        chat_template=template,
        generation_eos=tuple(eos),
        added_tokens=added,
    )


class TemplatedTokenizer:
    """Base of tokenizers that lay conversations out with the checkpoint's chat template.

    ``tokenize_messages`` renders the chat template exactly as transformers'
    ``apply_chat_template`` does and encodes the result in one piece, so its tokens
    equal ``apply_chat_template(messages, tokenize=True)`` as long as the subclass's
    ``_encode_with_offsets`` encodes text as transformers does. The loss mask comes
    from rendering prefixes of the conversation: the characters added by message ``i``
    take ``messages[i].masked``, except the header the template writes before an
    assistant turn (what ``add_generation_prompt`` produces), which is always masked.
    A final assistant message with ``eot=False`` is cut right after its content.
    Without a chat template, messages are encoded one after another, with ``bos``
    first and ``eos`` after each assistant turn that has ``eot``.

    A subclass calls :meth:`_setup` from its constructor and implements
    :meth:`_encode_with_offsets`, :meth:`token_to_id`, ``vocab_size`` and ``decode``.
    """

    max_seq_len: int | None
    special_tokens: dict[str, str]
    chat_template: ChatTemplate | None
    chat_template_kwargs: dict[str, Any]
    add_bos: bool

    # ---- for subclasses --------------------------------------------------------

    def _setup(
        self,
        settings: TokenizerSettings,
        *,
        vocabulary: str,
        max_seq_len: int | None,
        chat_template: str | None,
        add_bos: bool | None,
        default_add_bos: Callable[[], bool],
        extra_stop_tokens: Sequence[str] = (),
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Resolve special-token ids, stop tokens, ``add_bos`` and the chat template.

        Args:
            settings: What :func:`read_tokenizer_settings` found.
            vocabulary: The vocabulary file's name, for error messages.
            max_seq_len: Truncation length of ``tokenize_messages``.
            chat_template: Replaces the checkpoint's template.
            add_bos: Whether ``encode(add_bos=True)`` prepends ``bos``; ``None``: the
                config's ``add_bos_token``, else ``default_add_bos()``.
            default_add_bos: The tokenizer's own answer when the config has none.
            extra_stop_tokens: Texts of more stop tokens (a family's end-of-turn token
                that ``generation_config.json`` does not list); ones not in the
                vocabulary are left out.
            chat_template_kwargs: More variables for every render of the chat template
                (see :func:`check_chat_template_kwargs`).

        Raises:
            CheckpointError: a special token is not in the vocabulary, or no eos.
            ConfigError: ``chat_template_kwargs`` is not a mapping of variables.
        """
        self.max_seq_len = max_seq_len
        self.special_tokens = dict(settings.special_tokens)
        self.chat_template_kwargs = check_chat_template_kwargs(chat_template_kwargs)
        directory = settings.directory
        self._bos_id = self._special_id("bos_token", directory, vocabulary)
        self._pad_id = self._special_id("pad_token", directory, vocabulary)
        eos_id = self._special_id("eos_token", directory, vocabulary)
        if eos_id is None and settings.generation_eos:
            eos_id = settings.generation_eos[0]
        if eos_id is None:
            raise CheckpointError(
                f'{directory} defines no eos_token: add "eos_token" to its '
                "tokenizer_config.json (or eos_token_id to generation_config.json)"
            )
        self._eos_id = eos_id
        extra = [self.token_to_id(text) for text in extra_stop_tokens]
        self._stop_tokens = list(
            dict.fromkeys([eos_id, *settings.generation_eos, *(i for i in extra if i is not None)])
        )
        if add_bos is None:
            add_bos = settings.config.get("add_bos_token")
        if add_bos is None:
            add_bos = self._bos_id is not None and default_add_bos()
        self.add_bos = bool(add_bos) and self._bos_id is not None
        template = chat_template if chat_template is not None else settings.chat_template
        self.chat_template = (
            ChatTemplate(template, where=f"the chat template of {directory}") if template else None
        )

    def _special_id(self, key: str, directory: Path, vocabulary: str) -> int | None:
        content = self.special_tokens.get(key)
        if content is None:
            return None
        token_id = self.token_to_id(content)
        if token_id is None:
            raise CheckpointError(
                f"{key} {content!r} of {directory} is not in {vocabulary}'s "
                f"vocabulary: fix {key} in tokenizer_config.json"
            )
        return token_id

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of ``text`` as transformers' ``encode(text, add_special_tokens=False)``
        gives them (special-token text becomes its token), with each token's
        ``(start, end)`` character span in ``text``."""
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string (``"</s>"``), or ``None``."""
        raise NotImplementedError

    # ---- ModelTokenizer ----------------------------------------------------

    @property
    def bos_id(self) -> int | None:
        return self._bos_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        """The config's ``pad_token``, else ``eos`` (padding is masked out of the loss)."""
        return self._pad_id if self._pad_id is not None else self._eos_id

    @property
    def stop_tokens(self) -> list[int]:
        """``eos`` plus every ``eos_token_id`` in ``generation_config.json``."""
        return list(self._stop_tokens)

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Token ids of ``text``, as ``tokenizer.encode(text, add_special_tokens=False)``
        in transformers, with ``bos`` (if the model uses one) and ``eos`` around it."""
        ids = self._encode_with_offsets(text)[0]
        if add_bos and self.add_bos:
            ids.insert(0, self._bos_id)
        if add_eos:
            ids.append(self._eos_id)
        return ids

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        if self.chat_template is None:
            tokens, mask = self._tokenize_plain(messages)
        else:
            tokens, mask = self._tokenize_templated(messages, add_generation_prompt)
        if add_generation_prompt:
            return tokens, mask
        return truncate(tokens, mask, self.max_seq_len, end_ids=self._stop_tokens)

    # ---- internals -------------------------------------------------------------

    def _render(self, dicts: list[dict[str, str]], add_generation_prompt: bool) -> str:
        assert self.chat_template is not None
        # As transformers: the special tokens, then the caller's variables over them.
        variables = {**self.special_tokens, **self.chat_template_kwargs}
        return self.chat_template.render(
            dicts, add_generation_prompt=add_generation_prompt, **variables
        )

    def _tokenize_templated(
        self, messages: list[Message], add_generation_prompt: bool
    ) -> tuple[list[int], list[bool]]:
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        text = self._render(dicts, add_generation_prompt)
        char_mask = [True] * len(text)
        start = 0
        for i, message in enumerate(messages):
            if i == len(messages) - 1 and not add_generation_prompt:
                end = len(text)
            else:
                end = self._message_end(dicts, i, text, start)
            body = start
            if message.role == "assistant":
                body = self._content_start(dicts, i, text, start, end)
            char_mask[body:end] = [message.masked] * (end - body)
            start = end
        last = messages[-1] if messages else None
        if last is not None and not last.eot and not add_generation_prompt:
            text, char_mask = self._cut_after_content(dicts, text, char_mask)
        tokens, offsets = self._encode_with_offsets(text)
        mask = mask_from_offsets(offsets, char_mask)
        if tokens and tokens[0] == self._bos_id:
            mask[0] = True  # never a label, whatever the first message's flag
        return tokens, mask

    def _message_end(self, dicts: list[dict[str, str]], i: int, text: str, start: int) -> int:
        """Where message ``i`` ends in ``text``: where a render of ``dicts[:i + 1]`` ends.

        Usually that render is a prefix of ``text``. Some templates render a message
        differently once later messages follow it (Qwen 3 writes a ``<think>`` block only
        for assistant turns after the last user message): then the render's tail, from
        the message's last line on (the end of its text and the end-of-turn text after
        it, which such rewrites keep), is looked up in ``text``. When even that is
        missing, only the shared part counts (a last message rendered differently)."""
        try:
            prefix = self._render(dicts[: i + 1], False)
        except DataError:
            # The template refuses this prefix (e.g. it must end with a user turn).
            content = dicts[i]["content"].strip()
            found = text.find(content, start) if content else -1
            return found + len(content) if found >= 0 else start
        shared = common_prefix_len(prefix, text)
        if shared < len(prefix):
            lines = dicts[i]["content"].strip().splitlines()
            at = prefix.rfind(lines[-1].strip(), start) if lines else -1
            # Only before the next message's text: a later turn may end the same way.
            following = dicts[i + 1]["content"].strip() if i + 1 < len(dicts) else ""
            limit = text.find(following, shared) if following else -1
            limit = limit if limit >= 0 else len(text)
            found = text.find(prefix[at:], start, limit) if at >= 0 else -1
            if found >= 0:
                return found + len(prefix) - at
        return max(start, shared)

    def _content_start(
        self, dicts: list[dict[str, str]], i: int, text: str, start: int, end: int
    ) -> int:
        """Where assistant message ``i``'s own text starts, after its header."""
        try:
            header = self._render(dicts[:i], True) if i else ""
        except DataError:
            header = ""
        body = common_prefix_len(header, text) if header else start
        if start <= body <= end and body > start:
            return body
        # No generation prompt in the template: find the content itself.
        content = dicts[i]["content"].strip()
        found = text.find(content, start, end) if content else -1
        return found if found >= 0 else start

    def _cut_after_content(
        self, dicts: list[dict[str, str]], text: str, char_mask: list[bool]
    ) -> tuple[str, list[bool]]:
        """``text`` up to the end of its last message, which is continued (no eot):
        found as transformers' ``continue_final_message`` finds it, by rendering a
        marker after the content and cutting there (and before the whitespace ahead of
        it where the template trimmed the marker's own: the template trims contents)."""
        tagged = [*dicts[:-1], {**dicts[-1], "content": dicts[-1]["content"] + _CONTINUE_TAG}]
        rendered = self._render(tagged, False)
        at = rendered.rfind(_CONTINUE_TAG.strip())
        if at >= 0:
            kept = rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG
            prefix = rendered[:at] if kept else rendered[:at].rstrip()
            if text.startswith(prefix):
                return text[: len(prefix)], char_mask[: len(prefix)]
        # A template that rewrites the marker: cut after the content itself.
        content = dicts[-1]["content"].strip()
        found = text.rfind(content) if content else -1
        if found < 0:
            return text, char_mask
        return text[: found + len(content)], char_mask[: found + len(content)]

    def _tokenize_plain(self, messages: list[Message]) -> tuple[list[int], list[bool]]:
        chunks: list[tuple[Sequence[int], bool]] = []
        if self.add_bos:
            chunks.append(([self._bos_id], True))
        for message in messages:
            ids = self._encode_with_offsets(message.content)[0]
            if message.role == "assistant" and message.eot:
                ids.append(self._eos_id)
            chunks.append((ids, message.masked))
        return join_chunks(chunks)
