"""Mistral's chat formats: each checkpoint's own template, rendered by the core's
tokenizers exactly as transformers' apply_chat_template renders it, with every
assistant turn's </s> trained; and `tokenizer: auto` picking the right reader."""

from __future__ import annotations

import json

import pytest

from tunesmith.data import Message
from tunesmith.testing import check_chat_template, check_tokenizer
from tunesmith.tokenizers import HFTokenizer, SentencePieceTokenizer, auto_tokenizer
from tunesmith_mistral import MISTRAL_V0_1_ORIGINAL_CHAT_TEMPLATE, write_tiny_mistral_tokenizer

transformers = pytest.importorskip("transformers")

CHAT = [
    Message("user", "What is the capital of France?", masked=True),
    Message("assistant", "Paris."),
    Message("user", "And of Italy?", masked=True),
    Message("assistant", "Rome."),
]
# What each template makes of CHAT (decoded with special tokens), and what is trained.
RENDERED = {
    "v0_1": "<s> [INST] What is the capital of France? [/INST] Paris.</s> [INST] And of Italy? "
    "[/INST] Rome.</s>",
    "v0_1_original": "<s>[INST] What is the capital of France? [/INST]Paris.</s> [INST] And of "
    "Italy? [/INST]Rome.</s> ",
    "v0_3": "<s>[INST] What is the capital of France?[/INST] Paris.</s>[INST] And of Italy?"
    "[/INST] Rome.</s>",
    "nemo": "<s>[INST]What is the capital of France?[/INST]Paris.</s>[INST]And of Italy?[/INST]"
    "Rome.</s>",
}


def _files(tmp_path, variant):
    directory = write_tiny_mistral_tokenizer(tmp_path / variant, variant.removesuffix("_original"))
    if variant == "v0_1_original":
        config = json.loads((directory / "tokenizer_config.json").read_text())
        config["chat_template"] = MISTRAL_V0_1_ORIGINAL_CHAT_TEMPLATE
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("variant", list(RENDERED))
def test_each_template_renders_as_transformers_does(tmp_path, variant):
    directory = _files(tmp_path, variant)
    tokenizer = auto_tokenizer(directory)
    wanted = HFTokenizer if variant == "nemo" else SentencePieceTokenizer
    assert isinstance(tokenizer, wanted)
    check_chat_template(tokenizer, directory)
    check_tokenizer(tokenizer)
    tokens, mask = tokenizer.tokenize_messages(CHAT)
    assert tokenizer.decode(tokens, skip_special_tokens=False) == RENDERED[variant]
    trained = [t for t, m in zip(tokens, mask, strict=True) if not m]
    assert tokenizer.decode(trained, skip_special_tokens=False).replace(" ", "") == (
        "Paris.</s>Rome.</s>"
    )


def test_v0_3_control_tokens_are_single_tokens(tmp_path):
    tokenizer = SentencePieceTokenizer(_files(tmp_path, "v0_3"))
    tokens, _ = tokenizer.tokenize_messages(CHAT[:1], add_generation_prompt=True)
    assert tokens[:2] == [1, 3] and tokens[-1] == 4  # <s> [INST] ... [/INST]
    # v0.1's [INST] is plain text: several pieces.
    plain = SentencePieceTokenizer(_files(tmp_path, "v0_1"))
    assert len(plain.encode("[INST]", add_bos=False, add_eos=False)) > 1


def test_v0_3_tokenizer_json_renders_as_its_tokenizer_model(tmp_path):
    # A v0.3 download holds both files; `auto` reads tokenizer.json, and both agree.
    source = _files(tmp_path, "v0_3")
    transformers.AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(tmp_path / "json"))
    directory = tmp_path / "json"
    (directory / "tokenizer.model").write_bytes((source / "tokenizer.model").read_bytes())
    tokenizer = auto_tokenizer(directory)
    assert isinstance(tokenizer, HFTokenizer)
    check_chat_template(tokenizer, directory)
    assert tokenizer.tokenize_messages(CHAT) == SentencePieceTokenizer(source).tokenize_messages(
        CHAT
    )
