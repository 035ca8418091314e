"""A tokenizer for any checkpoint that ships a sentencepiece ``tokenizer.model``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import CheckpointError
from tunesmith.tokenizers._templated import TemplatedTokenizer, read_tokenizer_settings

__all__ = ["SentencePieceTokenizer", "sentencepiece_tokenizer"]

# sentencepiece piece types (sentencepiece_model.proto): CONTROL and USER_DEFINED pieces
# are whole tokens that text never merges into.
_CONTROL, _USER_DEFINED = 3, 4


class SentencePieceTokenizer(TemplatedTokenizer):
    """Any checkpoint's sentencepiece ``tokenizer.model`` plus its Hugging Face config.

    Reads the same settings as :class:`~tunesmith.tokenizers.HFTokenizer`
    (``tokenizer_config.json``: ``bos_token``/``eos_token``/``pad_token``,
    ``add_bos_token``, ``chat_template``, ``added_tokens_decoder``, ``legacy``,
    ``add_prefix_space``; ``chat_template.jinja``; ``generation_config.json``) and lays
    conversations out through the chat template the same way (see
    :class:`~tunesmith.tokenizers.TemplatedTokenizer`).

    Text is encoded as transformers encodes it after converting the model to a fast
    tokenizer, so ``tokenize_messages`` equals ``apply_chat_template``: special-token
    text (bos/eos/unk, ``added_tokens_decoder`` entries, the model's control and
    user-defined pieces) becomes its token; each stretch of text between them is
    encoded by sentencepiece, with the dummy-prefix ``▁`` added the way transformers'
    ``Metaspace`` pre-tokenizer adds it (never before a stretch that already starts
    with a space): before every stretch with ``"legacy": true``, only at the very start
    of the text otherwise, and never when the model was trained without a dummy prefix
    (Gemma) or the config sets ``add_prefix_space`` to false.

    Args:
        path: The checkpoint directory, or its ``tokenizer.model``.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        chat_template: A Jinja template to use instead of the checkpoint's.
        add_bos: Whether ``encode(add_bos=True)`` prepends ``bos``; default: the
            config's ``add_bos_token``, else true when there is a bos token.
        extra_stop_tokens: Texts of more stop tokens than eos and ``generation_config.json``'s
            (a family's end-of-turn token); ones not in the vocabulary are left out.
        chat_template_kwargs: More variables for the chat template, as transformers'
            ``apply_chat_template(**kwargs)`` takes them (``{"enable_thinking": False}``).

    Raises:
        CheckpointError: the file is missing or not a sentencepiece model, or no eos
            token is defined.

        ConfigError: ``chat_template_kwargs`` is not a mapping of template variables.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_seq_len: int | None = None,
        chat_template: str | None = None,
        add_bos: bool | None = None,
        extra_stop_tokens: Sequence[str] = (),
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        path = Path(path).expanduser()
        file = path / "tokenizer.model" if path.is_dir() else path
        if not file.is_file():
            raise CheckpointError(
                f"no tokenizer.model at {path}: point tokenizer.path at a model directory "
                "with a sentencepiece tokenizer.model (or at the file itself)"
            )
        self.path = file
        settings = read_tokenizer_settings(file.parent)
        self._sp, dummy_prefix, types = _load_processor(file)
        self._pieces = {self._sp.id_to_piece(i): i for i in range(len(types))}
        self._added = {text: token_id for token_id, text in sorted(settings.added_tokens.items())}
        self._id_to_added = {i: t for t, i in self._added.items()}
        # Text that is one token whole: added tokens, the named special tokens, and the
        # model's control / user-defined pieces; matched longest first, as tokenizers does.
        user_defined = {self._sp.id_to_piece(i) for i, k in enumerate(types) if k == _USER_DEFINED}
        control = {self._sp.id_to_piece(i) for i, k in enumerate(types) if k == _CONTROL}
        whole = set(self._added) | set(settings.special_tokens.values()) | control | user_defined
        whole = {t for t in whole if t and self.token_to_id(t) is not None}
        # User-defined pieces are ordinary text to transformers' decoder; the rest is skipped.
        self._special_ids = {self.token_to_id(t) for t in whole - user_defined}
        pattern = "|".join(re.escape(t) for t in sorted(whole, key=len, reverse=True))
        self._split = re.compile(pattern) if whole else None
        prefix = dummy_prefix and settings.config.get("add_prefix_space", True) is not False
        self._prefix = (
            "never" if not prefix else "always" if settings.config.get("legacy") else "first"
        )
        self._setup(
            settings,
            vocabulary=file.name,
            max_seq_len=max_seq_len,
            chat_template=chat_template,
            add_bos=add_bos,
            default_add_bos=lambda: True,
            extra_stop_tokens=extra_stop_tokens,
            chat_template_kwargs=chat_template_kwargs,
        )

    # ---- encoding ----------------------------------------------------------------

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        position = 0
        matches = list(self._split.finditer(text)) if self._split is not None else []
        for match in [*matches, None]:
            end = match.start() if match is not None else len(text)
            if end > position:
                self._encode_stretch(text[position:end], position, ids, offsets)
            if match is not None:
                ids.append(self.token_to_id(match.group()))
                offsets.append(match.span())
                position = match.end()
        return ids, offsets

    def _encode_stretch(
        self, stretch: str, start: int, ids: list[int], offsets: list[tuple[int, int]]
    ) -> None:
        """Encode text between special tokens (as transformers' Metaspace + BPE would)."""
        prepend = (
            self._prefix == "always" or (self._prefix == "first" and start == 0)
        ) and not stretch.startswith(" ")
        source = " " + stretch if prepend else stretch
        # sentencepiece reports UTF-8 byte offsets; map them to character offsets.
        char_at = [0]
        for index, char in enumerate(source):
            char_at.extend([index + 1] * len(char.encode("utf-8")))
        shift = 1 if prepend else 0
        for piece in self._sp.encode(source, return_type="proto").pieces:
            begin = max(char_at[piece.begin] - shift, 0)
            finish = max(char_at[piece.end] - shift, 0)
            ids.append(piece.id)
            offsets.append((start + begin, start + finish))

    # ---- ModelTokenizer ----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return max(self._sp.get_piece_size(), max(self._id_to_added, default=-1) + 1)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string (``"</s>"``, ``"[INST]"``), or ``None``."""
        if token in self._added:
            return self._added[token]
        return self._pieces.get(token)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        parts: list[str] = []
        run: list[int] = []
        for token_id in (int(i) for i in ids):
            if token_id not in self._special_ids and token_id < self._sp.get_piece_size():
                run.append(token_id)
                continue
            if not skip_special_tokens:
                parts += [self._sp.decode(run), self._token_text(token_id)]
                run = []
        text = "".join([*parts, self._sp.decode(run)])
        # transformers' decoder strips the one space a dummy prefix stands for.
        return text[1:] if self._prefix != "never" and text.startswith(" ") else text

    def _token_text(self, token_id: int) -> str:
        return self._id_to_added.get(token_id) or self._sp.id_to_piece(token_id)

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def _load_processor(file: Path) -> tuple[Any, bool, list[int]]:
    """A processor that adds no dummy prefix itself, whether the model adds one, and
    the type of each piece."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(file.read_bytes())
        dummy_prefix = proto.normalizer_spec.add_dummy_prefix
        proto.normalizer_spec.add_dummy_prefix = False
        processor = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    except Exception:
        raise CheckpointError(
            f"{file} is not a sentencepiece model: re-download it, or choose the tokenizer "
            "that reads it (tokenizer: {_component_: <name>} from `tunesmith plugins`)"
        ) from None
    return processor, dummy_prefix, [piece.type for piece in proto.pieces]


def sentencepiece_tokenizer(
    path: str | Path, *, max_seq_len: int | None = None, **kwargs: Any
) -> SentencePieceTokenizer:
    """Builder registered as ``sentencepiece_tokenizer``: see :class:`SentencePieceTokenizer`."""
    return SentencePieceTokenizer(path, max_seq_len=max_seq_len, **kwargs)
