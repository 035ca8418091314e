"""Gemma's chat format, token for token as apply_chat_template renders each
generation's real template, from tokenizer.model and from tokenizer.json."""

from __future__ import annotations

import json

import pytest

from tunesmith import DataError
from tunesmith.data import Message
from tunesmith.testing import check_chat_template, check_tokenizer
from tunesmith.tokenizers import HFTokenizer, SentencePieceTokenizer, auto_tokenizer
from tunesmith_gemma import gemma_tokenizer, tiny_gemma_config

transformers = pytest.importorskip("transformers")

GENERATIONS = ["gemma", "gemma3"]  # Gemma 2's template is Gemma 1's


@pytest.mark.parametrize("kind", ["sentencepiece", "json"])
@pytest.mark.parametrize("generation", GENERATIONS)
def test_chat_format_matches_apply_chat_template(tokenizer_dir, generation, kind):
    directory = tokenizer_dir(generation, kind)
    tokenizer = gemma_tokenizer(directory)
    assert isinstance(tokenizer, SentencePieceTokenizer if kind == "sentencepiece" else HFTokenizer)
    assert "conversation 1" in check_chat_template(tokenizer, directory)
    check_tokenizer(tokenizer)


def test_end_of_turn_is_trained_and_stops_generation(tokenizer_dir):
    tokenizer = gemma_tokenizer(tokenizer_dir("gemma"))
    end = tokenizer.token_to_id("<end_of_turn>")
    assert end in tokenizer.stop_tokens and tokenizer.eos_id in tokenizer.stop_tokens
    messages = [Message("user", "Hi there", masked=True), Message("assistant", "Hello!")]
    tokens, mask = tokenizer.tokenize_messages(messages)
    assert tokens[0] == tokenizer.bos_id and tokens.count(tokenizer.bos_id) == 1
    ends = [i for i, t in enumerate(tokens) if t == end]
    assert len(ends) == 2
    assert mask[ends[0]] and not mask[ends[1]]  # the user's is masked, the answer's trained
    text = tokenizer.decode(tokens, skip_special_tokens=False)
    assert (
        text
        == "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    )


def test_system_message_follows_each_template(tokenizer_dir):
    conversation = [Message("system", "Be brief.", masked=True), Message("user", "Hi", masked=True)]
    with pytest.raises(DataError, match="System role not supported"):
        gemma_tokenizer(tokenizer_dir("gemma")).tokenize_messages(conversation)
    gemma3 = gemma_tokenizer(tokenizer_dir("gemma3"))
    tokens, _ = gemma3.tokenize_messages(conversation, add_generation_prompt=True)
    assert gemma3.decode(tokens, skip_special_tokens=False) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )


def test_auto_picks_it_for_gemma_checkpoints_and_supplies_a_missing_template(tokenizer_dir):
    directory = tokenizer_dir("gemma", "json")
    (directory / "config.json").write_text(json.dumps(tiny_gemma_config(model_type="gemma3_text")))
    settings = json.loads((directory / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    (directory / "chat_template.jinja").unlink(missing_ok=True)  # a base model's files
    tokenizer = auto_tokenizer(directory)
    assert tokenizer.token_to_id("<end_of_turn>") in tokenizer.stop_tokens
    system = [Message("system", "S", masked=True), Message("user", "U", masked=True)]
    tokens, _ = tokenizer.tokenize_messages(system)  # Gemma 3's template: folded, no error
    assert "S\n\nU" in tokenizer.decode(tokens, skip_special_tokens=False)


def test_missing_files_are_one_clear_line(tmp_path):
    from tunesmith import CheckpointError

    with pytest.raises(
        CheckpointError, match="no Gemma tokenizer in .*tokenizer.json or tokenizer.model"
    ):
        gemma_tokenizer(tmp_path)
