"""Qwen's tokenizer: byte-level BPE with ChatML turns (``<|im_start|>``/``<|im_end|>``).

Everything generic (the checkpoint's own chat template, rendered exactly as
transformers does, with per-token loss masks) comes from
:class:`tunesmith.tokenizers.HFTokenizer`. What Qwen adds: reading checkpoints that ship
only ``vocab.json`` + ``merges.txt`` (transformers' ``Qwen2Tokenizer`` pipeline),
``<|im_end|>`` as a stop token even where a base checkpoint's eos is
``<|endoftext|>``, and ChatML for checkpoints without a chat template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith import CheckpointError
from tunesmith.tokenizers import ChatTemplate, HFTokenizer

__all__ = ["CHATML_TEMPLATE", "QwenTokenizer", "qwen_tokenizer", "tokenizer_from_vocab_merges"]

#: ChatML without a default system prompt, for checkpoints that ship no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: What transformers' Qwen2Tokenizer splits text with before byte-level BPE.
_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The special tokens every Qwen 2/2.5/3 vocabulary starts its added tokens with.
_CHATML_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_END_OF_TURN = "<|im_end|>"


def tokenizer_from_vocab_merges(directory: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` built from a Qwen directory's ``vocab.json`` and
    ``merges.txt``, as transformers' ``Qwen2Tokenizer`` builds it (NFC, Qwen's split
    regex, byte-level BPE), with the added tokens of ``tokenizer_config.json``'s
    ``added_tokens_decoder`` at their ids (ChatML's three when it has none).

    Raises:
        CheckpointError: a file is missing or unreadable, or an added token's id does not
            follow the vocabulary.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import BPE

    directory = Path(directory)
    try:
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        lines = (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
        config_file = directory / "tokenizer_config.json"
        config = (
            json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read the Qwen tokenizer in {directory}: {exc}; download the model's "
            "tokenizer.json (or vocab.json and merges.txt) again"
        ) from None
    merges = [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith("#")]
    tokenizer = Tokenizer(
        BPE(vocab=vocab, merges=merges, unk_token=None, continuing_subword_prefix="",
            end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )  # fmt: skip
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    added = config.get("added_tokens_decoder") or {
        str(len(vocab) + i): {"content": text, "special": True}
        for i, text in enumerate(_CHATML_TOKENS)
    }
    for key in sorted(added, key=int):
        entry = added[key]
        token = AddedToken(
            entry["content"], special=bool(entry.get("special", True)), normalized=False,
            lstrip=bool(entry.get("lstrip")), rstrip=bool(entry.get("rstrip")),
        )  # fmt: skip
        (tokenizer.add_special_tokens if token.special else tokenizer.add_tokens)([token])
        if tokenizer.token_to_id(token.content) != int(key):
            raise CheckpointError(
                f"added token {token.content!r} has id {key} in {directory / 'tokenizer_config.json'} "
                f"but follows the {len(vocab)}-entry vocab.json at id "
                f"{tokenizer.token_to_id(token.content)}: restore the model's tokenizer.json"
            )
    return tokenizer


class QwenTokenizer(HFTokenizer):
    """The tokenizer of a Qwen 2, 2.5 or 3 checkpoint.

    Reads ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` when that is missing
    (see :func:`tokenizer_from_vocab_merges`), plus ``tokenizer_config.json``. Chat
    conversations render through the checkpoint's chat template (ChatML when it has
    none), as :class:`tunesmith.tokenizers.HFTokenizer` does: Qwen 2.5's template adds
    its default system prompt, Qwen 3's writes ``<think>...</think>`` blocks and drops
    the reasoning of assistant turns before the last user message. ``<|im_end|>``
    ends every turn and is always a stop token.

    Args:
        path: The checkpoint directory, its ``tokenizer.json`` or its ``vocab.json``.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        chat_template: A Jinja template to use instead of the checkpoint's.
        add_bos: Whether ``encode(add_bos=True)`` prepends ``bos`` (Qwen defines none).
        chat_template_kwargs: More variables for the chat template:
            ``{"enable_thinking": False}`` renders Qwen 3's non-thinking mode.

    Raises:
        CheckpointError: tokenizer files are missing or unreadable.
        ConfigError: ``chat_template_kwargs`` is not a mapping of template variables.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_seq_len: int | None = None,
        chat_template: str | None = None,
        add_bos: bool | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        path = Path(path).expanduser()
        directory = path if path.is_dir() else path.parent
        backend = None
        if path.name != "tokenizer.json" and (directory / "tokenizer.json").is_file():
            path = directory / "tokenizer.json"
        elif path.name != "tokenizer.json":
            if not (directory / "vocab.json").is_file():
                raise CheckpointError(
                    f"no Qwen tokenizer in {directory}: it needs tokenizer.json (or vocab.json "
                    "and merges.txt); point tokenizer.path at the downloaded model directory"
                )
            backend, path = tokenizer_from_vocab_merges(directory), directory / "vocab.json"
        super().__init__(
            path,
            max_seq_len=max_seq_len,
            chat_template=chat_template,
            add_bos=add_bos,
            # A base checkpoint's eos is <|endoftext|>; generation must still stop where
            # a fine-tuned chat turn ends.
            extra_stop_tokens=(_END_OF_TURN,),
            backend=backend,
            chat_template_kwargs=chat_template_kwargs,
        )
        if self.chat_template is None:
            self.chat_template = ChatTemplate(CHATML_TEMPLATE, where="the ChatML template")

    def __repr__(self) -> str:
        return f"QwenTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def qwen_tokenizer(
    path: str | Path, *, max_seq_len: int | None = None, **kwargs: Any
) -> QwenTokenizer:
    """Builder registered as ``qwen2_tokenizer`` and ``qwen3_tokenizer``: see
    :class:`QwenTokenizer`."""
    return QwenTokenizer(path, max_seq_len=max_seq_len, **kwargs)
