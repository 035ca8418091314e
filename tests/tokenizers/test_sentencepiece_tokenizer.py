"""SentencePieceTokenizer: tokenizer.model + tokenizer_config.json encode, decode and
render chat templates exactly as transformers does with the same files."""

from __future__ import annotations

import json

import pytest

from tunesmith.errors import CheckpointError
from tunesmith.testing import check_chat_template, check_tokenizer, write_sentencepiece_model
from tunesmith.tokenizers import SentencePieceTokenizer, auto_tokenizer

transformers = pytest.importorskip("transformers")

CONTROL = ("[INST]", "[/INST]")
# A template that glues text to control tokens and special tokens with and without
# spaces, so the dummy-prefix rules around them are exercised.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ '[INST]' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}"
    "{{ m['content'] + eos_token }}{% else %}{{ raise_exception('no system role') }}"
    "{% endif %}{% endfor %}"
)
TEXTS = (
    "Hello world",
    " Hello  world",
    "<s>Hello</s>Bye",
    "[INST]Hi [/INST] there</s>",
    "Tabs\tand  double spaces",
    "café ☃ 12345",
)


def _checkpoint(directory, **config):
    write_sentencepiece_model(
        directory, vocab_size=400, byte_fallback=True, control_symbols=CONTROL
    )
    added = {
        str(i): {"content": t, "special": True, "normalized": False, "lstrip": False, "rstrip": False,
                 "single_word": False}
        for i, t in enumerate(("<unk>", "<s>", "</s>", *CONTROL))
    }  # fmt: skip
    settings = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "added_tokens_decoder": added,
        "chat_template": TEMPLATE,
        **config,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    return directory


@pytest.mark.parametrize("legacy", [None, False, True])
def test_encode_and_decode_equal_transformers(tmp_path, legacy):
    directory = _checkpoint(tmp_path, **({} if legacy is None else {"legacy": legacy}))
    reference = transformers.AutoTokenizer.from_pretrained(str(directory))
    ours = SentencePieceTokenizer(directory)
    for text in TEXTS:
        ids = reference.encode(text, add_special_tokens=False)
        assert ours.encode(text, add_bos=False, add_eos=False) == ids, text
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(
                ids, skip_special_tokens=skip
            )
    assert ours.token_to_id("[INST]") == 3
    assert ours.encode("Hi")[0] == ours.bos_id == 1 and ours.encode("Hi")[-1] == ours.eos_id == 2


@pytest.mark.parametrize("legacy", [False, True])
def test_chat_template_equals_apply_chat_template(tmp_path, legacy):
    directory = _checkpoint(tmp_path, legacy=legacy)
    tokenizer = SentencePieceTokenizer(directory)
    check_chat_template(tokenizer, directory)
    check_tokenizer(tokenizer)


def test_auto_picks_it_for_a_lone_tokenizer_model(tmp_path):
    tokenizer = auto_tokenizer(_checkpoint(tmp_path), max_seq_len=16)
    assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.max_seq_len == 16


def test_a_file_that_is_not_sentencepiece_is_one_clear_error(tmp_path):
    (tmp_path / "tokenizer.model").write_text("not a model")
    with pytest.raises(CheckpointError, match="is not a sentencepiece model: re-download"):
        SentencePieceTokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="no tokenizer.model at"):
        SentencePieceTokenizer(tmp_path / "missing")
