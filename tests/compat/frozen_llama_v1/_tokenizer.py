"""Llama tokenizers: Llama 2 (sentencepiece) and Llama 3 (tiktoken), with Meta's chat formats."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tunesmith import CheckpointError, DataError
from tunesmith.data import Message
from tunesmith.tokenizers import common_prefix_len, join_chunks, truncate

__all__ = [
    "LLAMA3_PATTERN",
    "Llama2Tokenizer",
    "Llama3Tokenizer",
    "llama2_tokenizer",
    "llama3_special_tokens",
    "llama3_tokenizer",
]

# ------------------------------------------------------------------ Llama 2 ---

_B_INST, _E_INST = "[INST]", "[/INST]"
_B_SYS, _E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


class Llama2Tokenizer:
    """Llama 2's sentencepiece tokenizer (``tokenizer.model``) and chat format.

    ``tokenize_messages`` lays a conversation out as Meta's ``chat_completion``
    does, token for token::

        <s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} </s><s>[INST] ...

    Each user/assistant exchange is encoded as one string (so the sentencepiece
    pieces match Meta's exactly), then split where the prompt's own encoding ends:
    ``<s>[INST] ... [/INST]`` takes the user message's ``masked`` flag, the answer
    and its ``</s>`` the assistant's. A trailing user message ends with ``[/INST]``,
    which is already the prompt for the next answer. An assistant message with
    ``eot=False`` ends without the closing space and ``</s>``.

    Args:
        path: The sentencepiece model file.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.

    Raises:
        CheckpointError: the file is missing or not a sentencepiece model.
    """

    def __init__(self, path: str | Path, *, max_seq_len: int | None = None) -> None:
        import sentencepiece as spm

        path = Path(path).expanduser()
        if path.is_dir():
            path = path / "tokenizer.model"
        if not path.is_file():
            raise CheckpointError(
                f"no sentencepiece tokenizer at {path}: point tokenizer.path at the Llama 2 "
                "checkpoint's tokenizer.model"
            )
        self.path = path
        self.max_seq_len = max_seq_len
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(path.read_bytes())
        except Exception:
            raise CheckpointError(
                f"{path} is not a sentencepiece model (a Llama 3 original/tokenizer.model is a "
                "tiktoken file: use llama3_tokenizer for it)"
            ) from None
        self._bos_id = self._sp.bos_id()
        self._eos_id = self._sp.eos_id()
        # Llama 2 defines no pad piece; padding is masked out of the loss anyway.
        self._pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else 0

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self._bos_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def stop_tokens(self) -> list[int]:
        return [self._eos_id]

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Token ids of ``text`` (sentencepiece adds its ``▁`` dummy prefix, as Meta's does)."""
        ids = list(self._sp.encode(text))
        if add_bos:
            ids.insert(0, self._bos_id)
        if add_eos:
            ids.append(self._eos_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            return self._sp.decode(ids)
        # sentencepiece drops control pieces (<s>, </s>) when decoding: write them out.
        parts, run = [], []
        for i in ids:
            if self._sp.is_control(i):
                parts.extend([self._sp.decode(run), self._sp.id_to_piece(i)])
                run = []
            else:
                run.append(i)
        parts.append(self._sp.decode(run))
        return "".join(parts)

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        chunks: list[tuple[list[int], bool]] = []
        for prompt, prompt_masked, answer in _llama2_exchanges(messages):
            prompt_text = f"{_B_INST} {prompt.strip()} {_E_INST}"
            if answer is None:
                chunks.append(([self._bos_id, *self._sp.encode(prompt_text)], prompt_masked))
                continue
            text = f"{prompt_text} {answer.content.strip()}" + (" " if answer.eot else "")
            ids = list(self._sp.encode(text))
            split = common_prefix_len(ids, self._sp.encode(prompt_text))
            chunks.append(([self._bos_id, *ids[:split]], prompt_masked))
            chunks.append((ids[split:] + ([self._eos_id] if answer.eot else []), answer.masked))
        tokens, mask = join_chunks(chunks)
        if add_generation_prompt:
            return tokens, mask
        return truncate(tokens, mask, self.max_seq_len, end_ids=(self._eos_id,))

    def __repr__(self) -> str:
        return f"Llama2Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def _llama2_exchanges(messages: list[Message]) -> Iterator[tuple[str, bool, Message | None]]:
    """``(prompt, prompt_masked, answer)`` per exchange, the system prompt folded into
    the first user message as Meta's ``chat_completion`` does."""

    def fail(reason: str) -> DataError:
        roles = ", ".join(m.role for m in messages)
        return DataError(
            f"the Llama 2 chat format cannot lay out a conversation with roles [{roles}]: "
            f"{reason}; give it an optional system message, then user and assistant "
            "messages taking turns"
        )

    i = 0
    system: Message | None = None
    if messages and messages[0].role == "system":
        system, i = messages[0], 1
    while i < len(messages):
        user = messages[i]
        if user.role != "user":
            raise fail(f"message {i} is '{user.role}' where a user message must come")
        prompt, masked = user.content, user.masked
        if system is not None:
            prompt = _B_SYS + system.content + _E_SYS + prompt
            masked = masked and system.masked
            system = None
        answer = messages[i + 1] if i + 1 < len(messages) else None
        if answer is not None and answer.role != "assistant":
            raise fail(f"message {i + 1} is '{answer.role}' where an assistant message must come")
        yield prompt, masked, answer
        i += 2
    if system is not None:
        raise fail("a system message needs a user message after it")


def llama2_tokenizer(path: str | Path, *, max_seq_len: int | None = None) -> Llama2Tokenizer:
    """Llama 2 / Code Llama tokenizer from a sentencepiece ``tokenizer.model``.

    Args:
        path: The ``tokenizer.model`` file (or the directory holding it).
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
    """
    return Llama2Tokenizer(path, max_seq_len=max_seq_len)


# ------------------------------------------------------------------ Llama 3 ---

#: Llama 3's pre-tokenization regex.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_NUM_SPECIAL = 256
# tiktoken's regex engine gets slow on huge inputs and long runs of one character
# class; Meta cuts text at these sizes before encoding.
_MAX_ENCODE_CHARS = 400_000
_MAX_RUN_CHARS = 25_000


def llama3_special_tokens(base_vocab_size: int) -> dict[str, int]:
    """Llama 3's 256 special tokens, numbered from ``base_vocab_size`` (128000 for Meta's
    file) in Meta's order: ``<|begin_of_text|>`` first, ``<|eot_id|>`` at +9."""
    names = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]
    names += [f"<|reserved_special_token_{i}|>" for i in range(3, _NUM_SPECIAL - len(names) + 3)]
    return {name: base_vocab_size + i for i, name in enumerate(names)}


def _read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    try:
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(
            f"{path} is not a tiktoken ranks file ('<base64 token> <rank>' per line): point "
            "llama3_tokenizer at a Llama 3 checkpoint's original/tokenizer.model (a Llama 2 "
            "tokenizer.model is sentencepiece: use llama2_tokenizer)"
        ) from None
    if not ranks:
        raise CheckpointError(f"{path} is empty: re-download the Llama 3 tokenizer")
    return ranks


def _split_long_runs(text: str) -> Iterator[str]:
    """Cut ``text`` into pieces tiktoken encodes quickly (see ``_MAX_*`` above)."""
    for i in range(0, len(text), _MAX_ENCODE_CHARS):
        chunk = text[i : i + _MAX_ENCODE_CHARS]
        start, run, is_space = 0, 0, None
        for j, char in enumerate(chunk):
            space = char.isspace()
            run = run + 1 if space == is_space else 1
            is_space = space
            if run > _MAX_RUN_CHARS:
                yield chunk[start:j]
                start, run = j, 1
        yield chunk[start:]


class Llama3Tokenizer:
    """Llama 3 / 3.1 / 3.2's tiktoken tokenizer (``original/tokenizer.model``) and chat format.

    Special tokens follow the base vocabulary (ids 128000-128255 for Meta's file, or
    ``len(ranks)`` onwards for a smaller test file). ``encode`` treats special-token
    text in its input as plain text, so data cannot forge control tokens.
    ``tokenize_messages`` lays a conversation out as Meta's ``ChatFormat`` does::

        <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>...

    with content stripped and ``<|eom_id|>`` closing messages with ``eot=False``.
    A message's header, content and end token take its ``masked`` flag, except an
    assistant header (what ``add_generation_prompt`` appends), which is always masked;
    ``<|begin_of_text|>`` is masked. The role ``tool`` is written as ``ipython``.

    Args:
        path: The tiktoken ranks file.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        special_tokens: ``{token: id}`` replacing :func:`llama3_special_tokens`.

    Raises:
        CheckpointError: the file is missing or not a ranks file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_seq_len: int | None = None,
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        import tiktoken

        path = Path(path).expanduser()
        if path.is_dir():
            path = path / "original" / "tokenizer.model"
        if not path.is_file():
            raise CheckpointError(
                f"no tiktoken tokenizer at {path}: point tokenizer.path at a Llama 3 "
                "checkpoint's original/tokenizer.model (download it with the original/* files)"
            )
        self.path = path
        self.max_seq_len = max_seq_len
        ranks = _read_ranks(path)
        self.base_vocab_size = len(ranks)
        self.special_tokens = special_tokens or llama3_special_tokens(len(ranks))
        self._enc = tiktoken.Encoding(
            name=f"llama3:{path}",
            pat_str=LLAMA3_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=self.special_tokens,
        )
        self._special_ids = set(self.special_tokens.values())
        special = self.special_tokens
        self._bos_id = special["<|begin_of_text|>"]
        self._eos_id = special["<|end_of_text|>"]
        self._pad_id = special["<|finetune_right_pad_id|>"]
        self.start_header_id = special["<|start_header_id|>"]
        self.end_header_id = special["<|end_header_id|>"]
        self.eot_id = special["<|eot_id|>"]
        self.eom_id = special["<|eom_id|>"]
        self.python_tag_id = special["<|python_tag|>"]
        self._header_cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    @property
    def bos_id(self) -> int:
        return self._bos_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def stop_tokens(self) -> list[int]:
        """``<|eot_id|>``, ``<|eom_id|>`` and ``<|end_of_text|>``."""
        return [self.eot_id, self.eom_id, self._eos_id]

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        ids = [self._bos_id] if add_bos else []
        for piece in _split_long_runs(text):
            ids.extend(self._enc.encode(piece, allowed_special=set(), disallowed_special=()))
        if add_eos:
            ids.append(self._eos_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self._enc.decode(ids)

    def header(self, role: str) -> list[int]:
        """``<|start_header_id|>{role}<|end_header_id|>\\n\\n`` as ids."""
        if role not in self._header_cache:
            name = "ipython" if role == "tool" else role
            self._header_cache[role] = [
                self.start_header_id,
                *self.encode(name, add_bos=False, add_eos=False),
                self.end_header_id,
                *self.encode("\n\n", add_bos=False, add_eos=False),
            ]
        return self._header_cache[role]

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        chunks: list[tuple[list[int], bool]] = [([self._bos_id], True)]
        for message in messages:
            chunks.append(
                (self.header(message.role), True if message.role == "assistant" else message.masked)
            )
            body = self.encode(message.content.strip(), add_bos=False, add_eos=False)
            body.append(self.eot_id if message.eot else self.eom_id)
            chunks.append((body, message.masked))
        if add_generation_prompt:
            chunks.append((self.header("assistant"), True))
        tokens, mask = join_chunks(chunks)
        if add_generation_prompt:
            return tokens, mask
        return truncate(tokens, mask, self.max_seq_len, end_ids=self.stop_tokens)

    def __repr__(self) -> str:
        return f"Llama3Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def llama3_tokenizer(
    path: str | Path, *, max_seq_len: int | None = None, **kwargs: Any
) -> Llama3Tokenizer:
    """Llama 3 / 3.1 / 3.2 tokenizer from a tiktoken ranks file.

    Args:
        path: The ``original/tokenizer.model`` file (or the checkpoint directory).
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        **kwargs: Passed to :class:`Llama3Tokenizer` (``special_tokens``).
    """
    return Llama3Tokenizer(path, max_seq_len=max_seq_len, **kwargs)
