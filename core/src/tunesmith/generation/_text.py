"""Text in, text out: chat formatting, ``tunesmith.generate`` and streaming."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from torch import nn

from tunesmith.data._messages import Message
from tunesmith.errors import ConfigError, DataError
from tunesmith.generation._decode import generate_tokens

__all__ = ["TextStreamer", "generate", "to_messages", "tokenize_prompt"]

_ROLES = ("system", "user", "assistant", "ipython", "tool")

Prompt = str | Sequence[Message | Mapping[str, Any]]


def _to_message(item: Message | Mapping[str, Any], index: int) -> Message:
    if isinstance(item, Message):
        return item
    if (
        isinstance(item, Mapping)
        and isinstance(item.get("content"), str)
        and item.get("role") in _ROLES
    ):
        return Message(role=item["role"], content=item["content"])
    raise DataError(
        f"message {index} is {item!r}: a message is a tunesmith.data.Message or a dict "
        f"{{'role': one of {', '.join(_ROLES)}, 'content': str}}"
    )


def to_messages(prompt: Prompt, *, system: str | None = None) -> list[Message]:
    """A conversation from a user prompt or from messages.

    Args:
        prompt: The user's text, or a conversation: :class:`tunesmith.data.Message`
            objects or ``{"role": ..., "content": ...}`` dicts.
        system: A system message to put first (when the conversation has none).

    Raises:
        DataError: an empty prompt or conversation, or a malformed message.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(
                'the prompt is empty: give the model some text to answer, e.g. prompt.user="Hi"'
            )
        messages = [Message(role="user", content=prompt)]
    else:
        messages = [_to_message(item, i) for i, item in enumerate(prompt)]
        if not messages:
            raise DataError("the conversation is empty: pass at least one user message")
    if system and messages[0].role != "system":
        messages.insert(0, Message(role="system", content=system))
    return messages


def tokenize_prompt(
    tokenizer: Any,
    prompt: Prompt,
    *,
    system: str | None = None,
    chat_format: bool = True,
) -> list[int]:
    """The token ids a model continues to answer ``prompt``.

    With ``chat_format`` the conversation goes through the family's chat format
    (``tokenizer.tokenize_messages(..., add_generation_prompt=True)``), ending with
    the header that asks for an assistant turn; a conversation that ends with an
    assistant message is continued instead (its turn left open). Without, a string
    prompt is encoded as plain text (``bos`` + text), for base models.

    Args:
        tokenizer: A :class:`tunesmith.data.ModelTokenizer`.
        prompt: See :func:`to_messages`.
        system: Optional system message.
        chat_format: Apply the chat format (default) or encode raw text.

    Raises:
        DataError: an empty prompt or a malformed message.
    """
    if not chat_format:
        if not isinstance(prompt, str):
            raise ConfigError("chat_format=False takes a string prompt, not messages")
        if not prompt:
            raise DataError("the prompt is empty: give the model some text to continue")
        return tokenizer.encode(prompt, add_bos=True, add_eos=False)
    messages = to_messages(prompt, system=system)
    if messages[-1].role == "assistant":
        # Continue the assistant's (prefilled) answer rather than starting a new turn.
        messages[-1] = Message(role="assistant", content=messages[-1].content, eot=False)
        tokens, _ = tokenizer.tokenize_messages(messages, add_generation_prompt=False)
    else:
        tokens, _ = tokenizer.tokenize_messages(messages, add_generation_prompt=True)
    return list(tokens)


def _strip_stop(ids: list[int], stop_tokens: Sequence[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] in stop_tokens else ids


class TextStreamer:
    """Writes a row's text as its tokens arrive.

    Decoding token by token breaks characters that span several tokens (byte-level
    BPE splits UTF-8) and the spacing some tokenizers apply between tokens, so the
    streamer decodes the whole growing id list and writes only the new suffix,
    holding back a trailing incomplete character (U+FFFD) until it completes.

    Args:
        tokenizer: Decodes ids (``decode(ids, skip_special_tokens=True)``).
        write: Receives each new piece of text (e.g. ``sys.stdout.write``).
        stop_tokens: Ids that end the text (not written).
    """

    def __init__(
        self, tokenizer: Any, write: Callable[[str], Any], *, stop_tokens: Sequence[int] = ()
    ) -> None:
        self.tokenizer = tokenizer
        self.write = write
        self.stop_tokens = set(stop_tokens)
        self.ids: list[int] = []
        self.text = ""  # what has been written

    def put(self, token_id: int) -> None:
        """Add one token; write whatever text it completes."""
        if token_id in self.stop_tokens:
            return
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return  # an unfinished character, or a decode that is still settling
        self._emit(text)

    def end(self) -> None:
        """Write what is left (called once the row is finished)."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.startswith(self.text):
            self._emit(text)

    def _emit(self, text: str) -> None:
        piece = text[len(self.text) :]
        if piece:
            self.write(piece)
            self.text = text


def _writer(stream: Callable[[str], Any] | TextIO) -> Callable[[str], Any]:
    if callable(stream):
        return stream
    if hasattr(stream, "write"):

        def write(piece: str) -> None:
            stream.write(piece)
            if hasattr(stream, "flush"):
                stream.flush()

        return write
    raise ConfigError(
        f"stream must be a callable or a text stream such as sys.stdout, not {stream!r}"
    )


def _is_batch(prompt_or_messages: Any) -> bool:
    """A list of prompts (strings or conversations), as opposed to one conversation."""
    if isinstance(prompt_or_messages, str) or not isinstance(prompt_or_messages, Sequence):
        return False
    return bool(prompt_or_messages) and all(
        isinstance(p, str) or (isinstance(p, Sequence) and not isinstance(p, Mapping))
        for p in prompt_or_messages
    )


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompt_or_messages: Prompt | Sequence[Prompt],
    *,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    enable_kv_cache: bool = True,
    chat_format: bool = True,
    stream: Callable[[str], Any] | TextIO | None = None,
) -> str | list[str]:
    """Generate the model's answer to a prompt, a conversation, or a batch of them.

    Prompts go through the family's chat format (see :func:`tokenize_prompt`) and
    generation stops at the tokenizer's end-of-turn tokens (``stop_tokens``) or
    after ``max_new_tokens``. A list of prompts is generated as one left-padded
    batch.

    Args:
        model: The model, e.g. from :func:`tunesmith.load_pretrained`.
        tokenizer: Its :class:`tunesmith.data.ModelTokenizer`.
        prompt_or_messages: A string; a conversation (a list of
            :class:`tunesmith.data.Message` or ``{"role", "content"}`` dicts); or a
            list of strings / conversations for batched generation.
        system: A system message put before each prompt.
        max_new_tokens: The most tokens to generate per prompt.
        temperature: ``0`` (default) for greedy decoding, else the sampling
            temperature.
        top_k: Sample among the ``top_k`` most likely tokens only.
        top_p: Sample from the smallest set of tokens whose probability reaches
            ``top_p`` only.
        min_p: Sample only tokens with ``min_p`` times the top token's probability.
        repetition_penalty: Discourage (``> 1``) the tokens already in the prompt or
            the answer, greedy or not, as transformers and vLLM do.
        seed: Makes sampling reproducible.
        enable_kv_cache: Use the model's KV cache (much faster for long outputs).
        chat_format: ``False`` continues a string prompt as raw text (base models).
        stream: Receives the text as it is generated: a callable taking each new
            piece, or a text stream such as ``sys.stdout`` (single prompt only).

    Returns:
        The generated text (``str``) for a single prompt or conversation, or a list
        of texts in prompt order for a batch.

    Raises:
        DataError: an empty prompt, or one too long for the model with
            ``max_new_tokens``.
        ConfigError: invalid sampling settings.

    Example:
        >>> model, tokenizer = tunesmith.load_pretrained("output/epoch_0")
        >>> tunesmith.generate(model, tokenizer, "Tell me a joke.", max_new_tokens=64)
        >>> tunesmith.generate(model, tokenizer, ["Hi!", "Name three colours."], temperature=0.7, seed=0)
    """
    batched = _is_batch(prompt_or_messages)
    prompts = list(prompt_or_messages) if batched else [prompt_or_messages]
    ids = [tokenize_prompt(tokenizer, p, system=system, chat_format=chat_format) for p in prompts]
    stop_tokens = list(tokenizer.stop_tokens)

    on_token = None
    streamer = None
    if stream is not None:
        if len(prompts) > 1:
            raise ConfigError("stream= works with a single prompt; drop it for batched generation")
        streamer = TextStreamer(tokenizer, _writer(stream), stop_tokens=stop_tokens)

        def on_token(row: int, token: int) -> None:
            streamer.put(token)

    outputs = generate_tokens(
        model,
        ids,
        max_new_tokens=max_new_tokens,
        stop_tokens=stop_tokens,
        pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        enable_kv_cache=enable_kv_cache,
        on_token=on_token,
    )
    if streamer is not None:
        streamer.end()
    texts = [
        tokenizer.decode(_strip_stop(out, stop_tokens), skip_special_tokens=True) for out in outputs
    ]
    return texts if batched else texts[0]
