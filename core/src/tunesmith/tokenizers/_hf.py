"""A tokenizer for any checkpoint that ships a Hugging Face ``tokenizer.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.data._messages import Message
from tunesmith.errors import CheckpointError, DataError
from tunesmith.tokenizers._chat_template import ChatTemplate
from tunesmith.tokenizers._utils import (
    common_prefix_len,
    join_chunks,
    mask_from_offsets,
    truncate,
)

__all__ = ["HFTokenizer", "hf_tokenizer"]

_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


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


class HFTokenizer:
    """Any checkpoint's ``tokenizer.json`` (``tokenizers`` library) plus its config.

    Reads ``tokenizer_config.json`` (special tokens, ``add_bos_token``,
    ``chat_template``), ``chat_template.jinja`` when present (where transformers
    writes the template since 4.43), ``special_tokens_map.json`` for older
    checkpoints, and ``generation_config.json``'s ``eos_token_id`` for stop tokens.

    ``tokenize_messages`` renders the chat template exactly as transformers'
    ``apply_chat_template`` does and encodes the result in one piece, so its tokens
    equal ``apply_chat_template(messages, tokenize=True)``. The loss mask comes from
    rendering prefixes of the conversation: the characters added by message ``i``
    take ``messages[i].masked``, except the header the template writes before an
    assistant turn (what ``add_generation_prompt`` produces), which is always masked.
    A final assistant message with ``eot=False`` is cut right after its content.
    Without a chat template, messages are encoded one after another, with ``bos``
    first and ``eos`` after each assistant turn that has ``eot``.

    Args:
        path: The checkpoint directory, or its ``tokenizer.json``.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        chat_template: A Jinja template to use instead of the checkpoint's.
        add_bos: Whether ``encode(add_bos=True)`` prepends ``bos``; default: the
            config's ``add_bos_token``, else whether the tokenizer's post-processor
            adds it.

    Raises:
        CheckpointError: a file is missing or unreadable, or no eos token is defined.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_seq_len: int | None = None,
        chat_template: str | None = None,
        add_bos: bool | None = None,
    ) -> None:
        from tokenizers import Tokenizer as _Backend

        path = Path(path).expanduser()
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise CheckpointError(
                f"no tokenizer.json at {path}: point tokenizer.path at a Hugging Face model "
                "directory (or its tokenizer.json), or choose the family's tokenizer with "
                "tokenizer: {_component_: <name>, path: ...}"
            )
        directory = file.parent
        self.path = file
        self.max_seq_len = max_seq_len
        try:
            self._tok = _Backend.from_file(str(file))
        except Exception as exc:
            raise CheckpointError(
                f"cannot load {file}: {exc}; re-download it, or upgrade the tokenizers library"
            ) from None

        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (directory / name).is_file():
                config.update(_read_json(directory / name))
        self.special_tokens: dict[str, str] = {}
        for key in _SPECIAL_KEYS:
            content = _token_content(config.get(key))
            if content is not None:
                self.special_tokens[key] = content

        self._bos_id = self._special_id("bos_token")
        self._pad_id = self._special_id("pad_token")
        eos_id = self._special_id("eos_token")
        generation = {}
        if (directory / "generation_config.json").is_file():
            generation = _read_json(directory / "generation_config.json")
        gen_eos = generation.get("eos_token_id")
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        if eos_id is None and gen_eos:
            eos_id = gen_eos[0]
        if eos_id is None:
            raise CheckpointError(
                f'{directory} defines no eos_token: add "eos_token" to its '
                "tokenizer_config.json (or eos_token_id to generation_config.json)"
            )
        self._eos_id = eos_id
        self._stop_tokens = list(dict.fromkeys([eos_id, *gen_eos]))

        if add_bos is None:
            add_bos = config.get("add_bos_token")
        if add_bos is None:
            add_bos = self._post_processor_adds_bos()
        self.add_bos = bool(add_bos) and self._bos_id is not None

        if chat_template is None:
            if (directory / "chat_template.jinja").is_file():
                chat_template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
            elif config.get("chat_template") is not None:
                chat_template = _pick_template(config["chat_template"])
            elif (directory / "chat_template.json").is_file():
                chat_template = _pick_template(
                    _read_json(directory / "chat_template.json").get("chat_template")
                )
        self.chat_template = (
            ChatTemplate(chat_template, where=f"the chat template of {directory}")
            if chat_template
            else None
        )

    def _special_id(self, key: str) -> int | None:
        content = self.special_tokens.get(key)
        if content is None:
            return None
        token_id = self._tok.token_to_id(content)
        if token_id is None:
            raise CheckpointError(
                f"{key} {content!r} of {self.path.parent} is not in {self.path.name}'s "
                f"vocabulary: fix {key} in tokenizer_config.json"
            )
        return token_id

    def _post_processor_adds_bos(self) -> bool:
        if self._bos_id is None:
            return False
        with_specials = self._tok.encode("a", add_special_tokens=True).ids
        return bool(with_specials) and with_specials[0] == self._bos_id

    # ---- ModelTokenizer ----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

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

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string (``"<|eot_id|>"``), or ``None``."""
        return self._tok.token_to_id(token)

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Token ids of ``text``, as ``tokenizer.encode(text, add_special_tokens=False)``
        in transformers, with ``bos`` (if the model uses one) and ``eos`` around it."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_bos and self.add_bos:
            ids.insert(0, self._bos_id)
        if add_eos:
            ids.append(self._eos_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

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
        return self.chat_template.render(
            dicts, add_generation_prompt=add_generation_prompt, **self.special_tokens
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
            text, char_mask = self._cut_after_content(last, text, char_mask)
        encoding = self._tok.encode(text, add_special_tokens=False)
        tokens, mask = list(encoding.ids), mask_from_offsets(encoding.offsets, char_mask)
        if tokens and tokens[0] == self._bos_id:
            mask[0] = True  # never a label, whatever the first message's flag
        return tokens, mask

    def _message_end(self, dicts: list[dict[str, str]], i: int, text: str, start: int) -> int:
        """Where message ``i`` ends in ``text``: how far a render of ``dicts[:i + 1]``
        agrees with it (templates may render a conversation's last message
        differently, so only the shared part counts)."""
        try:
            return max(start, common_prefix_len(self._render(dicts[: i + 1], False), text))
        except DataError:
            # The template refuses this prefix (e.g. it must end with a user turn).
            content = dicts[i]["content"].strip()
            found = text.find(content, start) if content else -1
            return found + len(content) if found >= 0 else start

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

    @staticmethod
    def _cut_after_content(
        message: Message, text: str, char_mask: list[bool]
    ) -> tuple[str, list[bool]]:
        content = message.content.strip()
        found = text.rfind(content) if content else -1
        if found < 0:
            return text, char_mask
        cut = found + len(content)
        return text[:cut], char_mask[:cut]

    def _tokenize_plain(self, messages: list[Message]) -> tuple[list[int], list[bool]]:
        chunks: list[tuple[list[int], bool]] = []
        if self.add_bos:
            chunks.append(([self._bos_id], True))
        for message in messages:
            ids = self._tok.encode(message.content, add_special_tokens=False).ids
            if message.role == "assistant" and message.eot:
                ids.append(self._eos_id)
            chunks.append((ids, message.masked))
        return join_chunks(chunks)

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def hf_tokenizer(path: str | Path, *, max_seq_len: int | None = None, **kwargs: Any) -> HFTokenizer:
    """Builder registered as ``hf_tokenizer``: see :class:`HFTokenizer`."""
    return HFTokenizer(path, max_seq_len=max_seq_len, **kwargs)
