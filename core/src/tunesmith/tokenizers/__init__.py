"""Tokenizers: the generic Hugging Face ``tokenizer.json`` and sentencepiece
``tokenizer.model`` ones, ``auto`` selection, and the helpers every family's tokenizer
shares (chat templates, loss masks, truncation).

Families ship their own tokenizers in their plugins (``llama3_tokenizer``...) and
register them with ``register_tokenizers``; all implement
:class:`tunesmith.data.ModelTokenizer`.
"""

from tunesmith.tokenizers._auto import auto_tokenizer, find_tokenizer
from tunesmith.tokenizers._chat_template import ChatTemplate
from tunesmith.tokenizers._hf import HFTokenizer, hf_tokenizer
from tunesmith.tokenizers._prompt import (
    PromptTemplatedTokenizer,
    read_prompt_template,
    with_prompt_template,
    write_prompt_format,
)
from tunesmith.tokenizers._sentencepiece import SentencePieceTokenizer, sentencepiece_tokenizer
from tunesmith.tokenizers._templated import (
    TemplatedTokenizer,
    TokenizerSettings,
    check_chat_template_kwargs,
    read_tokenizer_settings,
)
from tunesmith.tokenizers._utils import (
    common_prefix_len,
    join_chunks,
    mask_from_offsets,
    truncate,
)

__all__ = [
    "ChatTemplate",
    "HFTokenizer",
    "PromptTemplatedTokenizer",
    "SentencePieceTokenizer",
    "TemplatedTokenizer",
    "TokenizerSettings",
    "auto_tokenizer",
    "check_chat_template_kwargs",
    "common_prefix_len",
    "find_tokenizer",
    "hf_tokenizer",
    "join_chunks",
    "mask_from_offsets",
    "read_prompt_template",
    "read_tokenizer_settings",
    "sentencepiece_tokenizer",
    "truncate",
    "with_prompt_template",
    "write_prompt_format",
]
