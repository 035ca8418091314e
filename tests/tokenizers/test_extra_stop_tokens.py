"""``extra_stop_tokens``: a family names an end-of-turn token its checkpoints'
generation_config.json leaves out (Gemma 1's ``<end_of_turn>``)."""

from __future__ import annotations

from tunesmith.data import Message
from tunesmith.testing import write_hf_tokenizer, write_sentencepiece_model
from tunesmith.tokenizers import HFTokenizer, SentencePieceTokenizer


def test_hf_tokenizer_stops_at_extra_tokens_and_keeps_them_through_truncation(tmp_path):
    write_hf_tokenizer(tmp_path, eos_token="<|end_of_text|>")
    plain = HFTokenizer(tmp_path)
    tokenizer = HFTokenizer(
        tmp_path, extra_stop_tokens=["<|eot_id|>", "<not-a-token>"], max_seq_len=12
    )
    eot = tokenizer.token_to_id("<|eot_id|>")
    assert eot not in plain.stop_tokens
    assert tokenizer.stop_tokens == [*plain.stop_tokens, eot]  # the unknown one left out
    long = [Message("user", "Hi " * 20, masked=True), Message("assistant", "Hello " * 20)]
    tokens, _ = tokenizer.tokenize_messages(long)
    assert len(tokens) == 12 and tokens[-1] == eot  # truncation keeps the end of turn


def test_sentencepiece_tokenizer_takes_them_too(tmp_path):
    write_sentencepiece_model(tmp_path, control_symbols=["[EOT]"])
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>", "bos_token": "<s>"}')
    tokenizer = SentencePieceTokenizer(tmp_path, extra_stop_tokens=["[EOT]"])
    assert tokenizer.stop_tokens == [2, 3]
