"""A tokenizer for any checkpoint that ships a Hugging Face ``tokenizer.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import CheckpointError
from tunesmith.tokenizers._templated import TemplatedTokenizer, read_tokenizer_settings

__all__ = ["HFTokenizer", "hf_tokenizer"]

#: transformers' clean_up_tokenization: (what decoding wrote, what it becomes), in order.
_CLEAN_UP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


class HFTokenizer(TemplatedTokenizer):
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
    first and ``eos`` after each assistant turn that has ``eot``
    (see :class:`~tunesmith.tokenizers.TemplatedTokenizer`).

    Args:
        path: The checkpoint directory, or its ``tokenizer.json``.
        max_seq_len: Truncate ``tokenize_messages`` output to this many tokens.
        chat_template: A Jinja template to use instead of the checkpoint's.
        add_bos: Whether ``encode(add_bos=True)`` prepends ``bos``; default: the
            config's ``add_bos_token``, else whether the tokenizer's post-processor
            adds it.
        extra_stop_tokens: Texts of more stop tokens than eos and ``generation_config.json``'s
            (a family's end-of-turn token); ones not in the vocabulary are left out.
        chat_template_kwargs: More variables for the chat template, as transformers'
            ``apply_chat_template(**kwargs)`` takes them (``{"enable_thinking": False}``).
        backend: A ``tokenizers.Tokenizer`` to use instead of reading ``tokenizer.json``
            (one a family plugin built from older files, e.g. ``vocab.json`` +
            ``merges.txt``); ``path`` is then the directory of the settings files.

    Raises:
        CheckpointError: a file is missing or unreadable, or no eos token is defined.
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
        backend: Any = None,
    ) -> None:
        from tokenizers import Tokenizer as _Backend

        path = Path(path).expanduser()
        file = path / "tokenizer.json" if path.is_dir() else path
        if backend is not None:
            self.path, self._tok = file, backend
        elif not file.is_file():
            raise CheckpointError(
                f"no tokenizer.json at {path}: point tokenizer.path at a Hugging Face model "
                "directory (or its tokenizer.json), or choose the family's tokenizer with "
                "tokenizer: {_component_: <name>, path: ...}"
            )
        else:
            self.path = file
            try:
                self._tok = _Backend.from_file(str(file))
            except Exception as exc:
                raise CheckpointError(
                    f"cannot load {file}: {exc}; re-download it, or upgrade the tokenizers library"
                ) from None
        settings = read_tokenizer_settings(file.parent)
        # transformers 5 drops tokenizer_config.json's add_bos_token where tokenizer.json
        # exists: its post-processor alone says whether bos is added.
        settings.config.pop("add_bos_token", None)
        # transformers' decode joins spaces before punctuation when the config asks, but
        # never for a BPE model (unless forced), where it would corrupt the text.
        config = settings.config
        self._clean_up_spaces = bool(config.get("clean_up_tokenization_spaces")) and (
            type(self._tok.model).__name__ != "BPE"
            or bool(
                config.get(
                    "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
                )
            )
        )
        self._setup(
            settings,
            vocabulary=file.name,
            max_seq_len=max_seq_len,
            chat_template=chat_template,
            add_bos=add_bos,
            default_add_bos=self._post_processor_adds_bos,
            extra_stop_tokens=extra_stop_tokens,
            chat_template_kwargs=chat_template_kwargs,
        )

    def _post_processor_adds_bos(self) -> bool:
        with_specials = self._tok.encode("a", add_special_tokens=True).ids
        return bool(with_specials) and with_specials[0] == self._bos_id

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoding = self._tok.encode(text, add_special_tokens=False)
        return list(encoding.ids), list(encoding.offsets)

    # ---- ModelTokenizer ----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string (``"<|eot_id|>"``), or ``None``."""
        return self._tok.token_to_id(token)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        text = self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self._clean_up_spaces:
            for spaced, joined in _CLEAN_UP:
                text = text.replace(spaced, joined)
        return text

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def hf_tokenizer(path: str | Path, *, max_seq_len: int | None = None, **kwargs: Any) -> HFTokenizer:
    """Builder registered as ``hf_tokenizer``: see :class:`HFTokenizer`."""
    return HFTokenizer(path, max_seq_len=max_seq_len, **kwargs)
