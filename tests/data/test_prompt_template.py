"""Prompt templates: named, torchtune's {role: [prefix, suffix]} form, or a {prompt}
string; instruct datasets apply and record them; applying twice changes nothing."""

from __future__ import annotations

import json

import pytest

from tunesmith.data import Message, PromptTemplate, alpaca_prompt, instruct, prompt_template
from tunesmith.errors import ConfigError
from tunesmith.testing import write_hf_tokenizer
from tunesmith.tokenizers import HFTokenizer, write_prompt_format


def test_forms():
    assert prompt_template("alpaca").wrap("user", "Hi") == alpaca_prompt("Hi")
    assert prompt_template("torchtune.data.AlpacaInstructTemplate").name == "alpaca"
    qa = prompt_template("Question: {prompt}\nAnswer: ")
    assert qa.wrap("user", "Why?") == "Question: Why?\nAnswer: "
    assert prompt_template({"user": ["<", ">"]}).wrap("user", "x") == "<x>"
    with pytest.raises(ConfigError, match="did you mean 'alpaca'"):
        prompt_template("alpacca")
    with pytest.raises(ConfigError, match="two strings"):
        prompt_template({"user": ["only one"]})


def test_applying_twice_changes_nothing():
    template = prompt_template("alpaca")
    once = template.apply([Message("user", "Hi"), Message("assistant", "Hello")])
    assert template.apply(once) == once
    assert template.wrap("user", alpaca_prompt("Hi", "with input")) == alpaca_prompt(
        "Hi", "with input"
    )
    assert PromptTemplate.from_dict(template.to_dict()) == template


def test_instruct_records_a_users_own_template(tmp_path):
    write_hf_tokenizer(tmp_path / "tok", vocab_size=300)
    tokenizer = HFTokenizer(tmp_path / "tok")
    data = tmp_path / "qa.jsonl"
    data.write_text(
        json.dumps({"input": "Why is the sky blue?", "output": "Rayleigh scattering."}) + "\n"
    )
    dataset = instruct(tokenizer, source=str(data), prompt_template="Question: {prompt}\nAnswer: ")
    assert dataset.prompt_template.wrap("user", "q") == "Question: q\nAnswer: "
    text = tokenizer.decode(dataset[0]["tokens"], skip_special_tokens=False)
    assert "Question: Why is the sky blue?\nAnswer:" in text
    # written into a checkpoint, transformers renders it
    write_prompt_format(tmp_path / "tok", dataset.prompt_template)
    from transformers import AutoTokenizer

    rendered = AutoTokenizer.from_pretrained(str(tmp_path / "tok")).apply_chat_template(
        [{"role": "user", "content": "Why?"}], add_generation_prompt=True, tokenize=False
    )
    assert "Question: Why?\nAnswer:" in rendered
