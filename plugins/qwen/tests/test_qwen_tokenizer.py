"""Qwen's tokenizer against transformers: ids and chat formats of each release's real
chat template (Qwen2 and Qwen2.5 default system prompts, Qwen3 thinking blocks), loss
masks, the vocab.json + merges.txt fallback and stop tokens."""

from __future__ import annotations

import json

import pytest

from tunesmith.data import Message
from tunesmith.testing import check_chat_template, check_tokenizer
from tunesmith.tokenizers import auto_tokenizer
from tunesmith_qwen import (
    QwenTokenizer,
    tiny_qwen3_config,
    write_tiny_qwen_checkpoint,
    write_tiny_qwen_tokenizer,
)

transformers = pytest.importorskip("transformers")
RELEASES = ["qwen2", "qwen2_5", "qwen3"]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    return {r: write_tiny_qwen_tokenizer(tmp_path_factory.mktemp(r), release=r) for r in RELEASES}


@pytest.mark.parametrize("release", RELEASES)
def test_conformance_and_chat_format_equal_transformers(directories, release):
    tokenizer = QwenTokenizer(directories[release])
    check_tokenizer(tokenizer)
    assert len(check_chat_template(tokenizer, directories[release])) == 4
    assert tokenizer.bos_id is None and tokenizer.add_bos is False
    assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>")
    assert tokenizer.pad_id == tokenizer.token_to_id("<|endoftext|>")


@pytest.mark.parametrize(
    ("release", "system"),
    [("qwen2", "You are a helpful assistant."),
     ("qwen2_5", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")],
)  # fmt: skip
def test_qwen2_templates_add_their_default_system_prompt_untrained(directories, release, system):
    tokenizer = QwenTokenizer(directories[release])
    tokens, mask = tokenizer.tokenize_messages(
        [Message("user", "Hi", masked=True), Message("assistant", "Hello!")]
    )
    assert tokenizer.decode(tokens, skip_special_tokens=False) == (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    assert _trained(tokenizer, tokens, mask) == ["Hello!<|im_end|>\n"]


THINKING = [
    # (conversation, the trained spans): Qwen3's template writes the last assistant turn
    # with a <think> block (empty without reasoning) and drops the reasoning of assistant
    # turns before the last user message.
    (
        [("user", "What is 2+2?"), ("assistant", "<think>\nTwo plus two.\n</think>\n\nFour.")],
        ["<think>\nTwo plus two.\n</think>\n\nFour.<|im_end|>\n"],
    ),
    (
        [("user", "Name a prime."), ("assistant", "Seven.")],
        ["<think>\n\n</think>\n\nSeven.<|im_end|>\n"],
    ),
    (
        [("system", "You answer briefly."), ("user", "What is 2+2?"),
         ("assistant", "<think>\nTwo plus two.\n</think>\n\nFour."), ("user", "And 3+3?"),
         ("assistant", "<think>\nThree and three.\n</think>\n\nSix.")],
        ["Four.<|im_end|>\n", "<think>\nThree and three.\n</think>\n\nSix.<|im_end|>\n"],
    ),
    (
        [("user", "Hi"), ("assistant", "Hello!"), ("user", "2+2?"), ("assistant", "Four.")],
        ["Hello!<|im_end|>\n", "<think>\n\n</think>\n\nFour.<|im_end|>\n"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("turns", "trained"), THINKING, ids=range(len(THINKING)))
def test_qwen3_thinking_turns_render_as_the_template_does(directories, turns, trained):
    tokenizer = QwenTokenizer(directories["qwen3"])
    reference = transformers.AutoTokenizer.from_pretrained(directories["qwen3"])
    messages = [Message(role, text, masked=role != "assistant") for role, text in turns]
    tokens, mask = tokenizer.tokenize_messages(messages)
    wanted = reference.apply_chat_template(
        [{"role": r, "content": t} for r, t in turns], tokenize=True, return_dict=False
    )
    assert tokens == list(wanted)
    assert _trained(tokenizer, tokens, mask) == trained
    # every assistant turn's <|im_end|> is trained
    end = tokenizer.token_to_id("<|im_end|>")
    assert sum(t == end and not m for t, m in zip(tokens, mask, strict=True)) == len(trained)
    prompt, _ = tokenizer.tokenize_messages(messages[:-1], add_generation_prompt=True)
    assert prompt == list(
        reference.apply_chat_template(
            [{"role": r, "content": t} for r, t in turns[:-1]], add_generation_prompt=True,
            tokenize=True, return_dict=False,
        )
    )  # fmt: skip


@pytest.mark.parametrize("thinking", [False, True])
def test_qwen3_enable_thinking_renders_as_transformers_and_through_auto(directories, thinking):
    # enable_thinking=False writes an empty <think> block after the generation prompt.
    directory = directories["qwen3"]
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    turns = [("user", "What is 2+2?"), ("assistant", "Four."), ("user", "And 3+3?")]
    messages = [Message(role, text) for role, text in turns]
    wanted = reference.apply_chat_template(
        [{"role": r, "content": t} for r, t in turns], add_generation_prompt=True,
        enable_thinking=thinking, tokenize=True, return_dict=False,
    )  # fmt: skip
    kwargs = {"enable_thinking": thinking}
    for tokenizer in (
        QwenTokenizer(directory, chat_template_kwargs=kwargs),
        auto_tokenizer(directory, chat_template_kwargs=kwargs),
    ):
        prompt, _ = tokenizer.tokenize_messages(messages, add_generation_prompt=True)
        assert prompt == list(wanted)
        text = tokenizer.decode(prompt, skip_special_tokens=False)
        assert text.endswith("<think>\n\n</think>\n\n") is not thinking
    default, _ = QwenTokenizer(directory).tokenize_messages(messages, add_generation_prompt=True)
    assert (default == prompt) is thinking  # the template's default: thinking


def _trained(tokenizer, tokens, mask):
    spans, current = [], []
    for token, masked in zip(tokens, mask, strict=True):
        if not masked:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current, skip_special_tokens=False))
            current = []
    return spans + ([tokenizer.decode(current, skip_special_tokens=False)] if current else [])


def test_vocab_json_and_merges_txt_without_tokenizer_json(directories, tmp_path):
    from tokenizers import Tokenizer

    source = directories["qwen3"]
    backend = Tokenizer.from_file(str(source / "tokenizer.json"))
    backend.model.save(str(tmp_path))  # vocab.json + merges.txt, as older repos ship them
    for name in ("tokenizer_config.json", "generation_config.json"):
        (tmp_path / name).write_text((source / name).read_text())
    assert not (tmp_path / "tokenizer.json").exists()
    ours, full = QwenTokenizer(tmp_path), QwenTokenizer(source)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "Héllo wörld 12345, it's <think>\nfine</think> <|im_end|> ok  \n\n spaces"
    assert ours.vocab_size == full.vocab_size
    assert ours.encode(text, add_eos=False) == full.encode(text, add_eos=False)
    assert ours.encode(text, add_eos=False) == reference.encode(text)
    assert ours.decode(ours.encode(text, add_eos=False)) == text.replace("<|im_end|>", "")
    messages = [
        Message("user", "Hi", masked=True),
        Message("assistant", "<think>\nx\n</think>\n\nOk."),
    ]
    assert ours.tokenize_messages(messages) == full.tokenize_messages(messages)
    assert isinstance(auto_tokenizer(tmp_path, family="qwen3"), QwenTokenizer)


def test_a_base_checkpoint_still_stops_at_im_end_and_chatml_fills_in(directories, tmp_path):
    source = directories["qwen2_5"]
    (tmp_path / "tokenizer.json").write_text((source / "tokenizer.json").read_text())
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.pop("chat_template")
    config["eos_token"] = "<|endoftext|>"  # as the base releases ship it
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = QwenTokenizer(tmp_path)
    end = tokenizer.token_to_id("<|im_end|>")
    assert tokenizer.eos_id == tokenizer.token_to_id("<|endoftext|>")
    assert end in tokenizer.stop_tokens
    tokens, mask = tokenizer.tokenize_messages(
        [Message("user", "Hi", masked=True), Message("assistant", "Yo")]
    )
    assert tokenizer.decode(tokens, skip_special_tokens=False) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    )
    assert _trained(tokenizer, tokens, mask) == ["Yo<|im_end|>\n"]


def test_auto_picks_the_qwen_tokenizer_for_a_qwen_checkpoint(tmp_path):
    directory = write_tiny_qwen_checkpoint(tmp_path, tiny_qwen3_config(), tokenizer="qwen3")
    tokenizer = auto_tokenizer(directory)
    assert isinstance(tokenizer, QwenTokenizer)
    assert tokenizer.vocab_size <= tiny_qwen3_config()["vocab_size"]


def test_missing_files_are_one_line_errors(tmp_path):
    from tunesmith import CheckpointError

    with pytest.raises(CheckpointError, match="needs tokenizer.json") as error:
        QwenTokenizer(tmp_path)
    assert "\n" not in str(error.value)


def test_truncation_keeps_im_end_and_its_newline_untrained(directories):
    # The template ends an answer with <|im_end|> "\n": a cut sample still ends so, but
    # the cut answer does not end there, so they are not trained.
    whole = QwenTokenizer(directories["qwen2_5"])
    messages = [
        Message("user", "Name a prime number.", masked=True),
        Message("assistant", "Seven. And another one? Eleven, then thirteen. " * 4),
    ]
    tokens, _ = whole.tokenize_messages(messages)
    im_end = whole.token_to_id("<|im_end|>")
    assert tokens[-2] == im_end and whole.decode(tokens[-1:], skip_special_tokens=False) == "\n"
    cut = QwenTokenizer(directories["qwen2_5"], max_seq_len=len(tokens) - 10)
    short, mask = cut.tokenize_messages(messages)
    assert len(short) == len(tokens) - 10
    assert short[:-2] == tokens[: len(short) - 2] and short[-2:] == tokens[-2:]
    assert mask[-2:] == [True, True] and mask[-3] is False
