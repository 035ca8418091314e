"""A tiny deterministic tokenizer for tests: one token per UTF-8 byte.

It implements :class:`tunesmith.data.ModelTokenizer` without any file, so
dataset, recipe and generation tests can predict every token id by hand.
"""

from __future__ import annotations

from tunesmith.data._messages import Message

__all__ = ["FakeTokenizer"]


class FakeTokenizer:
    """Byte-level tokenizer with a few special tokens and one header token per role.

    Ids 0-255 are the UTF-8 bytes; then come ``bos`` (256), ``eos`` (257, also
    ending every turn), ``pad`` (258) and the role headers ``system`` (259),
    ``user`` (260), ``assistant`` (261), ``ipython`` (262) and ``tool`` (263).

    ``tokenize_messages`` lays a conversation out as::

        [bos] + for each message: [header(role)] + bytes(content) + ([eos] if eot)

    Masks follow the rules documented on :class:`~tunesmith.data.ModelTokenizer`: a
    message's header, content and end token share its ``masked`` flag, except that
    ``bos`` and the header of an assistant turn are always masked. Without
    ``add_generation_prompt`` the result is truncated to ``max_seq_len``, keeping a
    final ``eos`` in the last position.

    Args:
        max_seq_len: Longest sequence ``tokenize_messages`` returns, or ``None``.
    """

    BOS = 256
    EOS = 257
    PAD = 258
    HEADERS = {"system": 259, "user": 260, "assistant": 261, "ipython": 262, "tool": 263}
    _SPECIAL_TEXT = {BOS: "<|bos|>", EOS: "<|eos|>", PAD: "<|pad|>"} | {
        i: f"<|{role}|>" for role, i in HEADERS.items()
    }

    def __init__(self, max_seq_len: int | None = None) -> None:
        self.max_seq_len = max_seq_len

    @property
    def vocab_size(self) -> int:
        return 264

    @property
    def bos_id(self) -> int:
        return self.BOS

    @property
    def eos_id(self) -> int:
        return self.EOS

    @property
    def pad_id(self) -> int:
        return self.PAD

    @property
    def stop_tokens(self) -> list[int]:
        return [self.EOS]

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([self.BOS] if add_bos else []) + ids + ([self.EOS] if add_eos else [])

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        out: list[str] = []
        raw = bytearray()
        for i in ids:
            if i < 256:
                raw.append(i)
                continue
            out.append(raw.decode("utf-8", errors="replace"))
            raw.clear()
            if not skip_special_tokens:
                out.append(self._SPECIAL_TEXT.get(i, f"<|{i}|>"))
        out.append(raw.decode("utf-8", errors="replace"))
        return "".join(out)

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        tokens, mask = [self.BOS], [True]
        for message in messages:
            body = self.encode(message.content, add_bos=False, add_eos=message.eot)
            tokens += [self.HEADERS[message.role], *body]
            mask += [message.masked or message.role == "assistant"] + [message.masked] * len(body)
        if add_generation_prompt:
            tokens.append(self.HEADERS["assistant"])
            mask.append(True)
        elif self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            last = tokens[-1], mask[-1]
            tokens, mask = tokens[: self.max_seq_len], mask[: self.max_seq_len]
            if last[0] == self.EOS:
                tokens[-1], mask[-1] = last
        return tokens, mask
