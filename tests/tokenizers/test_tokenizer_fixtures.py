"""The in-process tokenizer writers: fast, deterministic, valid files."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tunesmith.testing import write_hf_tokenizer, write_sentencepiece_model, write_tiktoken_ranks


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "write",
    [
        lambda d: write_sentencepiece_model(d),
        lambda d: write_sentencepiece_model(d, vocab_size=512, byte_fallback=True),
        lambda d: write_tiktoken_ranks(d / "original" / "tokenizer.model"),
        lambda d: write_hf_tokenizer(d),
    ],
    ids=["sentencepiece", "sentencepiece-byte-fallback", "tiktoken", "hf"],
)
def test_writers_are_fast_and_deterministic(tmp_path, write):
    start = time.perf_counter()
    write(tmp_path / "a")
    assert time.perf_counter() - start < 1.0
    write(tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first and first == second


def test_sentencepiece_model_has_llama2_ids(tmp_path):
    import sentencepiece as spm

    path = write_sentencepiece_model(tmp_path, vocab_size=300)
    assert path == tmp_path / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.get_piece_size() == 300
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert sp.decode(sp.encode("the quick brown fox")) == "the quick brown fox"
    assert len(sp.encode("the quick brown fox")) < len("the quick brown fox") / 2


def test_tiktoken_ranks_are_a_valid_bpe(tmp_path):
    path = write_tiktoken_ranks(tmp_path / "tok.model", vocab_size=400)
    ranks = {}
    for line in path.read_text().splitlines():
        token, rank = line.split(" ")
        ranks[base64.b64decode(token)] = int(rank)
    assert sorted(ranks.values()) == list(range(400))
    assert all(ranks[bytes([b])] == b for b in range(256))
    for token, rank in ranks.items():
        if len(token) > 1:  # every merge joins two tokens learned before it
            assert any(
                ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank
                for i in range(1, len(token))
            ), token


def test_hf_tokenizer_files_load_in_transformers(tmp_path):
    from transformers import AutoTokenizer

    directory = write_hf_tokenizer(tmp_path, pad_token="<|finetune_right_pad_id|>")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|begin_of_text|>" and config["eos_token"] == "<|eot_id|>"
    tok = AutoTokenizer.from_pretrained(directory)
    assert tok.pad_token == "<|finetune_right_pad_id|>"
    assert len(tok) == 520
    assert tok.convert_ids_to_tokens(tok.encode("Hi"))[0] == "<|begin_of_text|>"


def test_writers_train_on_a_given_corpus(tmp_path):
    import sentencepiece as spm

    from tunesmith.tokenizers import HFTokenizer

    corpus = "\n".join(f"zorblax quimbly {i} zorblax" for i in range(50))
    tok = HFTokenizer(write_hf_tokenizer(tmp_path / "hf", vocab_size=300, corpus=corpus))
    assert len(tok.encode("zorblax", add_bos=False, add_eos=False)) == 1
    assert len(HFTokenizer(write_hf_tokenizer(tmp_path / "default")).encode("zorblax")) > 3
    sp = spm.SentencePieceProcessor(
        model_file=str(write_sentencepiece_model(tmp_path / "sp", vocab_size=50, corpus=corpus))
    )
    assert sp.encode("zorblax", out_type=str) == ["▁zorblax"]
    ranks = write_tiktoken_ranks(tmp_path / "tt.model", vocab_size=300, corpus=corpus)
    assert base64.b64encode(b"zorblax").decode() in {
        line.split()[0] for line in ranks.read_text().splitlines()
    }
