"""Chat messages and the tokenizer protocol every family's tokenizer implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["CROSS_ENTROPY_IGNORE_IDX", "Message", "ModelTokenizer", "Role"]

#: Label value the loss ignores (PyTorch's ``cross_entropy`` default).
CROSS_ENTROPY_IGNORE_IDX = -100

Role = Literal["system", "user", "assistant", "ipython", "tool"]


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    Attributes:
        role: Who speaks.
        content: The text.
        masked: ``True`` keeps this turn's tokens out of the loss (prompts usually are).
        eot: Whether the turn ends with the family's end-of-turn token.
    """

    role: Role
    content: str
    masked: bool = False
    eot: bool = True


@runtime_checkable
class ModelTokenizer(Protocol):
    """What recipes, datasets and generation need from a tokenizer.

    ``tokenize_messages`` returns ``(tokens, mask)`` where ``mask[i]`` is ``True``
    for tokens excluded from the loss; with ``add_generation_prompt=True`` it ends
    with the header that asks the model for an assistant turn, and is not truncated.

    Mask rules of the shipped tokenizers (``tunesmith.tokenizers`` and the family
    plugins'): a message's tokens (its header, content and end-of-turn token) take its
    ``masked`` flag, except the role header written before an assistant turn (what
    ``add_generation_prompt`` appends: the model never has to predict it), which is
    always masked, as is a leading ``bos``. Otherwise ``tokenize_messages`` truncates
    to ``max_seq_len``, keeping a final end token (eos/eot) in the last position,
    masked (a cut answer does not end there).
    ``encode(text, add_bos=True)`` adds ``bos`` only where the model uses one.
    Helpers shared by implementations live in :mod:`tunesmith.tokenizers`.
    """

    max_seq_len: int | None

    @property
    def vocab_size(self) -> int: ...

    @property
    def bos_id(self) -> int | None: ...

    @property
    def eos_id(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    @property
    def stop_tokens(self) -> list[int]: ...

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str: ...

    def tokenize_messages(
        self, messages: list[Message], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]: ...
