"""tunesmith.generate: chat formatting, batches, messages, streaming, errors."""

from __future__ import annotations

import io

import pytest

import tunesmith
from tunesmith import ConfigError, DataError
from tunesmith.data import Message
from tunesmith.generation import TextStreamer, generate_tokens, tokenize_prompt
from tunesmith.testing import FakeTokenizer

HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_prompt_goes_through_the_chat_format(loaded):
    _, tokenizer = loaded()
    ids = tokenize_prompt(tokenizer, "Tell me a joke.", system="Be brief.")
    want, _ = tokenizer.tokenize_messages(
        [Message("system", "Be brief."), Message("user", "Tell me a joke.")],
        add_generation_prompt=True,
    )
    assert ids == want
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    )
    assert text.endswith("Tell me a joke.<|eot_id|>" + HEADER)
    # Dicts, Message objects and a string give the same prompt.
    assert tokenize_prompt(tokenizer, [{"role": "user", "content": "Hi"}]) == tokenize_prompt(
        tokenizer, "Hi"
    )
    assert tokenize_prompt(tokenizer, [Message("user", "Hi")]) == tokenize_prompt(tokenizer, "Hi")
    # A conversation ending with an assistant message continues that message.
    prefilled = tokenize_prompt(tokenizer, [Message("user", "Hi"), Message("assistant", "Well,")])
    assert tokenizer.decode(prefilled, skip_special_tokens=False).endswith(HEADER + "Well,")
    # Without the chat format, a base model continues raw text.
    assert tokenize_prompt(tokenizer, "Once upon", chat_format=False) == tokenizer.encode(
        "Once upon", add_eos=False
    )


def test_generate_returns_the_decoded_greedy_answer(loaded):
    model, tokenizer = loaded()
    text = tunesmith.generate(model, tokenizer, "Tell me a joke.", max_new_tokens=10)
    ids = generate_tokens(
        model,
        [tokenize_prompt(tokenizer, "Tell me a joke.")],
        max_new_tokens=10,
        stop_tokens=tokenizer.stop_tokens,
        pad_id=tokenizer.pad_id,
    )[0]
    assert isinstance(text, str)
    assert text == tokenizer.decode([i for i in ids if i not in tokenizer.stop_tokens])
    assert text == tunesmith.generate(
        model, tokenizer, "Tell me a joke.", max_new_tokens=10, enable_kv_cache=False
    )


def test_batched_prompts_equal_one_at_a_time(loaded):
    model, tokenizer = loaded()
    prompts = [
        "Hi",
        "Tell me about the lighthouse keeper and the sea.",
        [{"role": "user", "content": "Ok?"}],
    ]
    batch = tunesmith.generate(model, tokenizer, prompts, max_new_tokens=8, system="Be brief.")
    assert isinstance(batch, list) and len(batch) == 3
    singles = [
        tunesmith.generate(model, tokenizer, p, max_new_tokens=8, system="Be brief.")
        for p in prompts
    ]
    assert batch == singles
    # A conversation (list of messages) is one prompt, not a batch.
    assert isinstance(
        tunesmith.generate(model, tokenizer, [Message("user", "Hi")], max_new_tokens=2), str
    )


def test_sampling_with_a_seed_is_reproducible(loaded):
    model, tokenizer = loaded()
    kwargs = dict(max_new_tokens=10, temperature=1.0, top_k=50, seed=3)
    assert tunesmith.generate(model, tokenizer, "Hi", **kwargs) == tunesmith.generate(
        model, tokenizer, "Hi", **kwargs
    )


def test_stream_writes_the_text_as_it_comes(loaded):
    model, tokenizer = loaded()
    pieces: list[str] = []
    text = tunesmith.generate(model, tokenizer, "Hi", max_new_tokens=10, stream=pieces.append)
    assert "".join(pieces) == text
    buffer = io.StringIO()
    assert tunesmith.generate(model, tokenizer, "Hi", max_new_tokens=10, stream=buffer) == text
    assert buffer.getvalue() == text
    with pytest.raises(ConfigError, match="single prompt"):
        tunesmith.generate(model, tokenizer, ["a", "b"], max_new_tokens=2, stream=pieces.append)


def test_streamer_holds_back_split_characters():
    tokenizer = FakeTokenizer()  # one token per UTF-8 byte
    text = "héllo 😀 wörld"
    pieces: list[str] = []
    streamer = TextStreamer(tokenizer, pieces.append, stop_tokens=[tokenizer.eos_id])
    for token in tokenizer.encode(text, add_bos=False, add_eos=True):
        streamer.put(token)
    streamer.end()
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert "😀" in pieces  # the 4-byte emoji arrives whole, once complete


def test_empty_and_too_long_prompts(loaded):
    model, tokenizer = loaded()
    for empty in ("", "   ", []):
        with pytest.raises(DataError, match="empty"):
            tunesmith.generate(model, tokenizer, empty)
    with pytest.raises(DataError, match="message 0"):
        tunesmith.generate(model, tokenizer, [{"role": "narrator", "content": "x"}])
    long = "the lighthouse keeper wrote in his logbook " * 40
    with pytest.raises(
        DataError, match=r"exceeds the model's max_seq_len of 256: shorten the prompt"
    ):
        tunesmith.generate(model, tokenizer, long, max_new_tokens=16)
    with pytest.raises(DataError, match="lower max_new_tokens to at most 235$") as error:
        tunesmith.generate(model, tokenizer, "Hi", max_new_tokens=300)
    assert "shorten" not in str(error.value)  # no prompt is short enough for 300
