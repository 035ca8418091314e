"""The dataset builders, on small local files and the byte-level FakeTokenizer."""

from __future__ import annotations

import re

import pytest

from tunesmith.data import (
    CROSS_ENTROPY_IGNORE_IDX,
    Message,
    PackedDataset,
    alpaca,
    alpaca_prompt,
    chat,
    instruct,
    load_rows,
    text_completion,
)
from tunesmith.errors import ConfigError, DataError
from tunesmith.testing import FakeTokenizer

IGNORE = CROSS_ENTROPY_IGNORE_IDX
BOS, EOS = FakeTokenizer.BOS, FakeTokenizer.EOS
SYSTEM, USER, ASSISTANT = (FakeTokenizer.HEADERS[r] for r in ("system", "user", "assistant"))
ALPACA_ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]


def b(text: str) -> list[int]:
    return list(text.encode())


# ------------------------------------------------------------------ alpaca ---


def test_alpaca_prompt_text():
    assert alpaca_prompt("Name a colour.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )
    assert alpaca_prompt("Add the numbers.", "2 and 3") == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    # Any non-empty input takes the input template, a blank one too (as torchtune does).
    assert "### Input:\n \n\n" in alpaca_prompt("Add the numbers.", " ")


@pytest.mark.parametrize("name", ["a.json", "a.jsonl", "a.csv", "a.parquet"])
def test_alpaca_tokens_and_labels(write, tokenizer, name):
    ds = alpaca(tokenizer, source=str(write(name, ALPACA_ROWS)))
    assert len(ds) == 2
    for row, item in zip(ALPACA_ROWS, [ds[0], ds[1]], strict=True):
        prompt = [USER, *b(alpaca_prompt(row["instruction"], row["input"])), EOS]
        answer = [*b(row["output"]), EOS]
        assert item["tokens"] == [BOS, *prompt, ASSISTANT, *answer]
        # bos, the prompt and the assistant header are masked; the answer is trained
        assert item["labels"] == [IGNORE] * (2 + len(prompt)) + answer


def test_train_on_input_changes_only_the_prompt_labels(write, tokenizer):
    path = str(write("a.jsonl", ALPACA_ROWS))
    off = alpaca(tokenizer, source=path)[1]
    on = alpaca(tokenizer, source=path, train_on_input=True)[1]
    assert on["tokens"] == off["tokens"]
    header = off["tokens"].index(ASSISTANT)
    assert off["labels"] == [IGNORE] * (header + 1) + off["tokens"][header + 1 :]
    # bos and the assistant header stay masked (the tokenizer's rule); the prompt trains
    expected_on = [IGNORE] + on["tokens"][1:]
    expected_on[header] = IGNORE
    assert on["labels"] == expected_on


def test_alpaca_input_column_is_optional(write, tokenizer):
    path = write("no_input.csv", [{"instruction": "Say hi.", "output": "Hi."}])
    item = alpaca(tokenizer, source=str(path))[0]
    assert item["tokens"] == [
        BOS,
        USER,
        *b(alpaca_prompt("Say hi.")),
        EOS,
        ASSISTANT,
        *b("Hi."),
        EOS,
    ]


def test_alpaca_column_map(write, tokenizer):
    rows = [{"task": "Name a colour.", "context": "", "answer": "Blue."}]
    path = write("renamed.csv", rows)
    ds = alpaca(
        tokenizer,
        source="csv",
        data_files=str(path),
        column_map={"instruction": "task", "input": "context", "output": "answer"},
    )
    expected = alpaca(tokenizer, source=str(write("a.jsonl", ALPACA_ROWS[:1])))[0]
    assert ds[0] == expected


def test_missing_column_names_column_source_columns_and_fix(write, tokenizer):
    path = write("qa.jsonl", [{"instruction": "x", "outptu": "y"}])
    with pytest.raises(DataError) as info:
        alpaca(tokenizer, source=str(path))
    assert str(info.value) == (
        f"column 'output' not found in {path}; its columns are: instruction, outptu. Set "
        "dataset.column_map to say which column holds 'output', e.g. "
        "column_map={'output': '<your column>'} — did you mean 'outptu'?"
    )


def test_mapped_column_missing(write, tokenizer):
    path = write("qa.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(
        DataError,
        match=r"column 'reply' \(column_map\['output'\]\) not found in .*qa\.jsonl; its columns are: question, answer",
    ):
        instruct(tokenizer, source=str(path), column_map={"input": "question", "output": "reply"})


def test_column_map_key_typo(write, tokenizer):
    path = write("qa.jsonl", ALPACA_ROWS)
    with pytest.raises(
        DataError,
        match=r"column_map key 'ouput' is not a column the alpaca dataset reads \(instruction, output, input\).*did you mean 'output'",
    ):
        alpaca(tokenizer, source=str(path), column_map={"ouput": "answer"})


def test_csv_cells_stay_text_and_empty_cells_name_the_row(write, tokenizer):
    rows = [
        {"instruction": "2 + 2", "output": "4"},
        {"instruction": "3 + 3", "output": ""},
        {"instruction": "Pad", "output": "007"},
        {"instruction": "Nothing", "output": "NA"},
    ]
    path = write("sums.csv", rows)
    ds = alpaca(tokenizer, source=str(path))
    # read as text: not 4.0 (pandas' float for a column with a gap), not 7
    assert ds[0]["tokens"][-3:] == [ASSISTANT, *b("4"), EOS]
    assert ds[2]["tokens"][-5:] == [ASSISTANT, *b("007"), EOS]
    assert ds[3]["tokens"][-4:] == [ASSISTANT, *b("NA"), EOS]
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}, row 1: column 'output' is empty \(null\)"
    ):
        ds[1]


def test_default_source_is_the_hub_and_fails_clearly_offline(tokenizer, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match="could not load tatsu-lab/alpaca"):
        alpaca(tokenizer)


def test_bundled_sample_builds(tokenizer):
    ds = alpaca(tokenizer, source="tunesmith:alpaca_sample")
    assert 150 <= len(ds) <= 250
    item = ds[0]
    assert len(item["tokens"]) == len(item["labels"]) <= tokenizer.max_seq_len
    trained = [t for t in item["labels"] if t != IGNORE]
    assert trained[-1] == EOS
    answer = tokenizer.decode(trained)
    assert answer and answer in {r["output"] for r in load_rows("tunesmith:alpaca_sample")}


# ---------------------------------------------------------------- instruct ---


def test_instruct_with_new_system_prompt(write, tokenizer):
    path = write("qa.parquet", [{"question": "Hi?", "answer": "Hello."}])
    ds = instruct(
        tokenizer,
        source=str(path),
        column_map={"input": "question", "output": "answer"},
        new_system_prompt="Be brief.",
    )
    system = [SYSTEM, *b("Be brief."), EOS]
    user = [USER, *b("Hi?"), EOS]
    answer = [*b("Hello."), EOS]
    assert ds[0]["tokens"] == [BOS, *system, *user, ASSISTANT, *answer]
    assert ds[0]["labels"] == [IGNORE] * (2 + len(system) + len(user)) + answer
    trained_prompt = instruct(
        tokenizer,
        source=str(path),
        column_map={"input": "question", "output": "answer"},
        new_system_prompt="Be brief.",
        train_on_input=True,
    )[0]["labels"]
    # the system prompt is never trained; the user turn is
    assert trained_prompt == [IGNORE] * (1 + len(system)) + user + [IGNORE] + answer


# -------------------------------------------------------------------- chat ---

OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "See you"},
        ]
    }
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "See you"},
        ]
    }
]


def _expected_chat(system="Be kind.", train_on_input=False):
    turns = [
        (SYSTEM, system),
        (USER, "Hi"),
        (ASSISTANT, "Hello"),
        (USER, "Bye"),
        (ASSISTANT, "See you"),
    ]
    tokens, labels = [BOS], [IGNORE]
    for header, text in turns:
        ids = [header, *b(text), EOS]
        tokens += ids
        if header == ASSISTANT:
            labels += [IGNORE, *ids[1:]]
        else:
            labels += ids if train_on_input else [IGNORE] * len(ids)
    return tokens, labels


@pytest.mark.parametrize("train_on_input", [False, True])
def test_chat_openai(write, tokenizer, train_on_input):
    ds = chat(tokenizer, source=str(write("c.jsonl", OPENAI)), train_on_input=train_on_input)
    tokens, labels = _expected_chat(train_on_input=train_on_input)
    assert ds[0] == {"tokens": tokens, "labels": labels}


def test_chat_sharegpt_matches_openai(write, tokenizer):
    ds = chat(tokenizer, source=str(write("c.json", SHAREGPT)), conversation_style="sharegpt")
    tokens, labels = _expected_chat()
    assert ds[0] == {"tokens": tokens, "labels": labels}


def test_chat_new_system_prompt_replaces_the_system_turn(write, tokenizer):
    ds = chat(tokenizer, source=str(write("c.jsonl", OPENAI)), new_system_prompt="Be terse.")
    assert ds[0]["tokens"] == _expected_chat(system="Be terse.")[0]


def test_chat_conversation_column(write, tokenizer):
    rows = [{"dialog": OPENAI[0]["messages"]}]
    path = str(write("c.jsonl", rows))
    assert (
        chat(tokenizer, source=path, conversation_column="dialog")[0]["tokens"]
        == _expected_chat()[0]
    )
    assert (
        chat(tokenizer, source=path, column_map={"messages": "dialog"})[0]["tokens"]
        == _expected_chat()[0]
    )
    with pytest.raises(ConfigError, match="disagree"):
        chat(tokenizer, source=path, conversation_column="dialog", column_map={"messages": "other"})


def test_chat_missing_conversation_column_suggests_the_style(write, tokenizer):
    path = write("c.jsonl", SHAREGPT)
    with pytest.raises(
        DataError,
        match=r"column 'messages' not found in .*c\.jsonl; its columns are: conversations\. Set dataset\.column_map",
    ):
        chat(tokenizer, source=str(path))


def test_chat_openai_text_parts(write, tokenizer):
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]},
            ]
        }
    ]
    item = chat(tokenizer, source=str(write("parts.jsonl", rows)))[0]
    assert item["tokens"] == [BOS, USER, *b("Hi"), EOS, ASSISTANT, *b("Yo"), EOS]


def test_chat_unknown_role_names_row_and_turn(write, tokenizer):
    rows = [
        OPENAI[0],
        {"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]},
    ]
    ds = chat(tokenizer, source=str(write("c.jsonl", rows)))
    ds[0]
    with pytest.raises(
        DataError,
        match=r"c\.jsonl, row 1: turn 1 has role 'bot': openai turns use system, user, assistant, tool, ipython",
    ):
        ds[1]


def _turns(*roles: str) -> dict:
    return {"messages": [{"role": r, "content": f"{r} {i}"} for i, r in enumerate(roles)]}


@pytest.mark.parametrize(
    "roles, message",
    [
        (("user",), r"the conversation has 1 message\(s\): a sample needs at least a user"),
        (("user", "user", "assistant"), r"message 1 is a second user message in a row"),
        (("assistant", "user"), r"message 0 is an assistant message that answers no user "
                                r"message \(it follows nothing\)"),
        (("user", "assistant", "system"), r"message 2 is a system message after the first"),
        (("system", "assistant"), r"message 1 .* \(it follows a system message\)"),
    ],
)  # fmt: skip
def test_chat_refuses_what_is_not_an_exchange_naming_the_row(write, tokenizer, roles, message):
    """As torchtune's SFT datasets refuse them (a one-message row trained nothing)."""
    rows = [_turns("system", "user", "assistant", "user", "tool", "assistant"), _turns(*roles)]
    ds = chat(tokenizer, source=str(write("c.jsonl", rows)))
    assert any(label != IGNORE for label in ds[0]["labels"])  # a tool turn may come between
    with pytest.raises(DataError, match=r"c\.jsonl, row 1: " + message):
        ds[1]


def test_chat_sharegpt_unknown_speaker(write, tokenizer):
    rows = [{"conversations": [{"from": "humn", "value": "x"}]}]
    ds = chat(tokenizer, source=str(write("c.jsonl", rows)), conversation_style="sharegpt")
    with pytest.raises(DataError, match=r"turn 0 has from 'humn'.*did you mean 'human'"):
        ds[0]


def test_chat_unknown_style(write, tokenizer):
    with pytest.raises(
        ConfigError, match=r"unknown conversation_style 'sharegtp'.*did you mean 'sharegpt'"
    ):
        chat(tokenizer, source=str(write("c.jsonl", OPENAI)), conversation_style="sharegtp")


# --------------------------------------------------------- text_completion ---


def test_text_completion_from_txt(write, tokenizer):
    ds = text_completion(tokenizer, source=str(write("t.txt", [{"text": "abc"}, {"text": "de"}])))
    assert [ds[0], ds[1]] == [
        {"tokens": [BOS, *b("abc"), EOS], "labels": [BOS, *b("abc"), EOS]},
        {"tokens": [BOS, *b("de"), EOS], "labels": [BOS, *b("de"), EOS]},
    ]


def test_text_completion_column_map(write, tokenizer):
    path = write("t.parquet", [{"body": "hello", "id": 1}])
    ds = text_completion(
        tokenizer, source="parquet", data_files=str(path), column_map={"text": "body"}
    )
    assert ds[0]["tokens"] == [BOS, *b("hello"), EOS]
    with pytest.raises(
        DataError,
        match=r"column 'text' not found in parquet files .*t\.parquet; its columns are: body, id",
    ):
        text_completion(tokenizer, source="parquet", data_files=str(path))


# ------------------------------------------------- shared builder behaviour ---


def test_truncation_to_max_seq_len(write):
    path = str(write("t.jsonl", [{"text": "x" * 50}]))
    item = text_completion(FakeTokenizer(max_seq_len=20), source=path)[0]
    # text: the first max_seq_len - 1 tokens, no eos (the text goes on), as torchtune cuts
    assert item["tokens"] == [BOS, *b("x" * 18)] and item["labels"] == item["tokens"]
    item = text_completion(FakeTokenizer(max_seq_len=20), source=path, max_seq_len=8)[0]
    assert item["tokens"] == [BOS, *b("x" * 6)]
    assert len(text_completion(FakeTokenizer(), source=path)[0]["tokens"]) == 52
    # a conversation: the start, and the final end token, untrained (the answer goes on)
    rows = str(write("a.jsonl", ALPACA_ROWS))
    sft = alpaca(FakeTokenizer(), source=rows, max_seq_len=30)[1]
    assert len(sft["tokens"]) == len(sft["labels"]) == 30
    assert sft["tokens"][-1] == EOS
    assert sft["labels"] == [IGNORE] * 30  # the prompt alone fills the window
    whole = alpaca(FakeTokenizer(), source=rows, max_seq_len=None)[1]
    cut = alpaca(FakeTokenizer(), source=rows, max_seq_len=len(whole["tokens"]) - 1)[1]
    assert cut["tokens"] == [*whole["tokens"][:-2], EOS]
    assert cut["labels"] == [*whole["labels"][:-2], IGNORE] and whole["labels"][-2] != IGNORE


def test_filter_fn(write, tokenizer):
    path = str(write("a.jsonl", ALPACA_ROWS))
    ds = alpaca(tokenizer, source=path, filter_fn=lambda row: bool(row["input"]))
    assert len(ds) == 1 and ds[0]["tokens"][-2] == ord("5")
    with pytest.raises(DataError, match=r"filter_fn removed every row of .*a\.jsonl"):
        alpaca(tokenizer, source=path, filter_fn=lambda row: False)


def test_split_slicing_in_builders(write, tokenizer):
    rows = [{"text": f"row {i}"} for i in range(10)]
    path = str(write("t.jsonl", rows))
    train = text_completion(tokenizer, source=path, split="train[:90%]")
    val = text_completion(tokenizer, source=path, split="train[90%:]")
    assert (len(train), len(val)) == (9, 1)
    assert val[0]["tokens"] == [BOS, *b("row 9"), EOS]


def test_packed_builder(write):
    rows = [{"text": "ab"}, {"text": "cde"}, {"text": "f"}]
    ds = text_completion(
        FakeTokenizer(max_seq_len=8), source=str(write("t.jsonl", rows)), packed=True
    )
    assert isinstance(ds, PackedDataset)
    # best-fit decreasing: the shortest row fills the longest row's pack; packs come in
    # the order of their first row (the first row's pack, padded, comes first)
    assert [p["seq_lens"].tolist() for p in ds] == [[4, 4], [5, 3]]
    assert ds[0]["tokens"].tolist() == [BOS, *b("ab"), EOS] + [FakeTokenizer.PAD] * 4
    assert ds[1]["tokens"].tolist() == [BOS, *b("cde"), EOS, BOS, *b("f"), EOS]


def test_packed_needs_a_length(write):
    with pytest.raises(ConfigError, match="packed=True needs a sequence length"):
        text_completion(FakeTokenizer(), source=str(write("t.jsonl", [{"text": "a"}])), packed=True)


@pytest.mark.parametrize("name", ["alpaca", "instruct", "chat", "text_completion"])
def test_builders_are_registered(name):
    import tunesmith.data
    from tunesmith import get_registry

    record = get_registry().get("datasets", name)
    assert record.builder is getattr(tunesmith.data, name)
    assert record.description and "\n" not in record.description
    assert record.origin.distribution == "tunesmith"


def test_registered_builder_from_a_config_block(tokenizer):
    from tunesmith import get_registry

    block = {"source": "tunesmith:alpaca_sample", "split": "train[:10%]", "train_on_input": False}
    ds = get_registry().get("datasets", "alpaca").builder(tokenizer, **block)
    assert len(ds) == 18


def test_message_is_frozen_and_fake_tokenizer_conforms():
    from tunesmith.data import ModelTokenizer

    tok = FakeTokenizer()
    assert isinstance(tok, ModelTokenizer)
    assert tok.decode(tok.encode("héllo")) == "héllo"
    tokens, mask = tok.tokenize_messages(
        [Message("user", "q", masked=True)], add_generation_prompt=True
    )
    assert tokens == [BOS, USER, ord("q"), EOS, ASSISTANT] and mask == [True] * 5


def test_misspelt_option_is_caught_before_datasets(write, tokenizer):
    path = str(write("a.jsonl", ALPACA_ROWS))
    with pytest.raises(
        ConfigError,
        match=r"^'trian_on_input' is not an option of the alpaca dataset — did you mean 'train_on_input'\?$",
    ):
        alpaca(tokenizer, source=path, trian_on_input=True)
    with pytest.raises(
        DataError,
        match=r"'colour' is not an option of this dataset, nor of datasets\.load_dataset .*remove it from the dataset config",
    ):
        alpaca(tokenizer, source=path, colour="blue")


def test_fake_tokenizer_masks_and_truncation():
    tok = FakeTokenizer(max_seq_len=6)
    messages = [Message("user", "ab", masked=True), Message("assistant", "cd")]
    tokens, mask = FakeTokenizer().tokenize_messages(messages)
    assert tokens == [BOS, USER, *b("ab"), EOS, ASSISTANT, *b("cd"), EOS]
    assert mask == [True] * 6 + [False] * 3
    tokens, mask = tok.tokenize_messages(messages)
    assert tokens == [BOS, USER, *b("ab"), EOS, EOS] and mask == [True] * 5 + [False]


def test_packed_builders_split_samples_across_packs_when_asked(write):
    """split_across_pack lays samples end to end, a sample that does not fit going on
    in the next pack (torchtune's text default), so only the last pack has padding."""
    path = str(write("t.jsonl", [{"text": "x" * n} for n in (9, 14, 5, 20)]))
    split = text_completion(
        FakeTokenizer(max_seq_len=32), source=path, packed=True, split_across_pack=True
    )
    # bos + text + eos: 11, 16, 7, 22 tokens; the 7 goes on in the next pack; 8 padding
    assert [p["seq_lens"].tolist() for p in split] == [[11, 16, 5], [2, 22, 8]]
    whole = text_completion(FakeTokenizer(max_seq_len=32), source=path, packed=True)
    assert sorted(n for p in whole for n in p["seq_lens"].tolist()[:-1]) == [7, 11, 16, 22]
    rows = str(write("a.jsonl", ALPACA_ROWS))
    samples = alpaca(FakeTokenizer(), source=rows, max_seq_len=40)
    total = sum(len(samples[i]["tokens"]) for i in range(len(samples)))
    packs = alpaca(FakeTokenizer(), source=rows, packed=True, max_seq_len=40,
                   split_across_pack=True)  # fmt: skip
    assert len(packs) == -(-total // 40)  # every pack full but the last
