"""HFTokenizer: ids equal to the tokenizers library and to transformers' apply_chat_template."""

from __future__ import annotations

import json

import pytest

from tunesmith import CheckpointError, DataError
from tunesmith.data import Message, ModelTokenizer
from tunesmith.testing import write_hf_tokenizer, write_sentencepiece_model
from tunesmith.tokenizers import HFTokenizer, hf_tokenizer

TEXTS = [
    "Hello world!",
    "  leading and trailing spaces  ",
    "tabs\tand\n\nnewlines\r\n   runs      of   spaces",
    "ünïcödé — ✓ 漢字 🙂👍🏽",
    "it's 12345 numbers, don't",
    "text with <|eot_id|> inside",
    "",
]

CHAT = [
    Message("system", " Be brief. ", masked=True),
    Message("user", "Hello there, what is 2+2?", masked=True),
    Message("assistant", "It is 4."),
    Message("user", "Thanks! 🙂", masked=True),
    Message("assistant", "You're  welcome.\n"),
]

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)


def _dicts(messages):
    return [{"role": m.role, "content": m.content} for m in messages]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return write_hf_tokenizer(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def transformers_tok(hf_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_dir)


@pytest.fixture
def tok(hf_dir):
    return HFTokenizer(hf_dir)


def _unmasked_text(tok, tokens, mask):
    return tok.decode(
        [t for t, m in zip(tokens, mask, strict=True) if not m], skip_special_tokens=False
    )


def test_implements_the_protocol_and_reads_the_config(tok, hf_dir):
    assert isinstance(tok, ModelTokenizer)
    assert tok.vocab_size == 520  # 512 learned + 8 special
    assert tok.bos_id == tok.token_to_id("<|begin_of_text|>")
    assert tok.eos_id == tok.token_to_id("<|eot_id|>")
    assert tok.pad_id == tok.eos_id  # no pad_token: eos
    assert tok.stop_tokens == [tok.eos_id]
    assert tok.add_bos  # the post-processor prepends <|begin_of_text|>
    assert hf_tokenizer(hf_dir / "tokenizer.json", max_seq_len=7).max_seq_len == 7


@pytest.mark.parametrize("text", TEXTS)
def test_encode_equals_the_tokenizers_library_and_transformers(tok, hf_dir, transformers_tok, text):
    from tokenizers import Tokenizer

    raw = (
        Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        .encode(text, add_special_tokens=False)
        .ids
    )
    assert tok.encode(text, add_bos=False, add_eos=False) == raw
    assert tok.encode(text) == [tok.bos_id, *raw, tok.eos_id]
    assert tok.encode(text, add_eos=False) == transformers_tok.encode(text)
    assert tok.decode(tok.encode(text)) == transformers_tok.decode(
        tok.encode(text), skip_special_tokens=True
    )


@pytest.mark.parametrize("text", [t for t in TEXTS if "<|" not in t])
def test_decode_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text), skip_special_tokens=False) == (
        f"<|begin_of_text|>{text}<|eot_id|>"
    )


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize(
    "messages",
    [CHAT, CHAT[1:3], CHAT[1:2], [Message("user", "ünï 🙂  \n\n spaced  ", masked=True)]],
    ids=["multi-turn", "one-exchange", "one-user", "unicode"],
)
def test_tokenize_messages_equals_apply_chat_template(
    tok, transformers_tok, messages, add_generation_prompt
):
    expected = transformers_tok.apply_chat_template(
        _dicts(messages),
        tokenize=True,
        add_generation_prompt=add_generation_prompt,
        return_dict=False,
    )
    tokens, mask = tok.tokenize_messages(messages, add_generation_prompt=add_generation_prompt)
    assert tokens == expected
    assert len(mask) == len(tokens)


def test_masks_leave_only_assistant_content_and_its_eot_in_the_loss(tok):
    tokens, mask = tok.tokenize_messages(CHAT)
    assert _unmasked_text(tok, tokens, mask) == "It is 4.<|eot_id|>You're  welcome.<|eot_id|>"
    assert mask[0] is True and mask[-1] is False
    assert tokens[-1] == tok.eos_id


def test_unmasked_prompts_are_trained_on_but_assistant_headers_never_are(tok):
    messages = [Message("user", "Hi"), Message("assistant", "Yo")]
    tokens, mask = tok.tokenize_messages(messages)
    assert _unmasked_text(tok, tokens, mask) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>Yo<|eot_id|>"
    )
    assert tokens[0] == tok.bos_id and mask[0] is True


def test_masked_assistant_turns_stay_out_of_the_loss(tok):
    messages = [
        Message("user", "Hi", masked=True),
        Message("assistant", "old answer", masked=True),
        Message("user", "Again", masked=True),
        Message("assistant", "new"),
    ]
    tokens, mask = tok.tokenize_messages(messages)
    assert _unmasked_text(tok, tokens, mask) == "new<|eot_id|>"


def test_add_generation_prompt_ends_with_the_assistant_header_and_is_not_truncated(hf_dir):
    tok = HFTokenizer(hf_dir, max_seq_len=5)
    tokens, mask = tok.tokenize_messages(CHAT[:2], add_generation_prompt=True)
    assert len(tokens) > 5
    assert tok.decode(tokens, skip_special_tokens=False).endswith(
        "2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert all(mask)


def test_truncation_keeps_the_final_eot_untrained(hf_dir):
    """A cut answer does not end at the cut: the eot stays, masked (as torchtune's eos)."""
    full, full_mask = HFTokenizer(hf_dir).tokenize_messages(CHAT)
    tok = HFTokenizer(hf_dir, max_seq_len=20)
    tokens, mask = tok.tokenize_messages(CHAT)
    assert len(tokens) == 20
    assert tokens[:19] == full[:19] and mask[:19] == full_mask[:19]
    assert tokens[-1] == tok.eos_id and mask[-1] is True


def test_final_message_without_eot_is_cut_after_its_content(tok):
    messages = [Message("user", "Hi", masked=True), Message("assistant", "Sure, the", eot=False)]
    tokens, mask = tok.tokenize_messages(messages)
    assert tok.decode(tokens, skip_special_tokens=False).endswith("<|end_header_id|>\n\nSure, the")
    assert _unmasked_text(tok, tokens, mask) == "Sure, the"


def test_stop_tokens_read_generation_config(tmp_path):
    directory = write_hf_tokenizer(
        tmp_path, eos_token="<|end_of_text|>", pad_token="<|finetune_right_pad_id|>"
    )
    ids = {
        t: HFTokenizer(directory).token_to_id(t)
        for t in ("<|end_of_text|>", "<|eot_id|>", "<|eom_id|>")
    }
    (directory / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]]})
    )
    tok = HFTokenizer(directory)
    assert tok.eos_id == ids["<|end_of_text|>"]
    assert tok.stop_tokens == [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]]
    assert tok.pad_id == tok.token_to_id("<|finetune_right_pad_id|>")
    # truncation keeps any stop token at the end
    tokens, _ = HFTokenizer(directory, max_seq_len=10).tokenize_messages(CHAT)
    assert tokens[-1] == ids["<|eot_id|>"]


def test_special_tokens_as_added_token_dicts_and_add_bos_token_as_transformers_reads_it(
    tmp_path,
):
    """transformers 5 drops tokenizer_config.json's add_bos_token where tokenizer.json
    exists: its post-processor decides (here: bos first), and tunesmith follows it."""
    from transformers import AutoTokenizer

    directory = write_hf_tokenizer(tmp_path)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["bos_token"] = {"content": "<|begin_of_text|>", "special": True, "__type": "AddedToken"}
    config["add_bos_token"] = False
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tok = HFTokenizer(directory)
    assert tok.bos_id == tok.token_to_id("<|begin_of_text|>")
    assert (
        tok.encode("Hi", add_eos=False) == AutoTokenizer.from_pretrained(directory)("Hi").input_ids
    )
    assert tok.encode("Hi", add_eos=False)[0] == tok.bos_id
    assert HFTokenizer(directory, add_bos=False).encode("Hi", add_eos=False)[0] != tok.bos_id


def test_template_sources_in_order_of_preference(tmp_path):
    directory = write_hf_tokenizer(tmp_path, chat_template=None)
    messages = [Message("user", "Hi", masked=True), Message("assistant", "Yo")]
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["chat_template"] = [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "{% for m in messages %}[{{ m.content }}]{% endfor %}"},
    ]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tok = HFTokenizer(directory)
    assert tok.decode(tok.tokenize_messages(messages)[0]) == "[Hi][Yo]"
    (directory / "chat_template.jinja").write_text(
        "{% for m in messages %}<{{ m.content }}>{% endfor %}"
    )
    assert (
        HFTokenizer(directory).decode(HFTokenizer(directory).tokenize_messages(messages)[0])
        == "<Hi><Yo>"
    )
    override = HFTokenizer(directory, chat_template="{{ messages[-1].content }}!")
    assert override.decode(override.tokenize_messages(messages)[0]) == "Yo!"


def test_without_a_chat_template_messages_are_concatenated(tmp_path):
    tok = HFTokenizer(write_hf_tokenizer(tmp_path, chat_template=None))
    messages = [Message("user", "Question?", masked=True), Message("assistant", " Answer.")]
    tokens, mask = tok.tokenize_messages(messages)
    assert tokens == [
        tok.bos_id,
        *tok.encode("Question?", add_bos=False, add_eos=False),
        *tok.encode(" Answer.", add_bos=False, add_eos=False),
        tok.eos_id,
    ]
    assert _unmasked_text(tok, tokens, mask) == " Answer.<|eot_id|>"


# Like Qwen 3's template: the last assistant turn is written differently (there, with a
# <think> block), so a render that ends at an earlier assistant turn is not a prefix of
# the whole conversation's.
LAST_TURN_REWRITING_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
    "{% if m.role == 'assistant' and loop.last %}[final] {% endif %}"
    "{{ m.content }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}"
)


def test_masks_follow_templates_that_rewrite_earlier_turns(tmp_path):
    tok = HFTokenizer(write_hf_tokenizer(tmp_path, chat_template=LAST_TURN_REWRITING_TEMPLATE))
    messages = [
        Message("user", "One?", masked=True),
        Message("assistant", "Two.\nThree."),
        Message("user", "Four?", masked=True),
        Message("assistant", "Five."),
    ]
    tokens, mask = tok.tokenize_messages(messages)
    assert _unmasked_text(tok, tokens, mask) == "Two.\nThree.<|eot_id|>[final] Five.<|eot_id|>"
    # A template that ends the last turn differently: an earlier turn is never stretched
    # over the prompts after it to a later turn that ends the same way.
    ending = LAST_TURN_REWRITING_TEMPLATE.replace(
        "{{ m.content }}<|eot_id|>",
        "{{ m.content }}{% if m.role == 'assistant' and loop.last %}<|end_of_text|>"
        "{% else %}<|eot_id|>{% endif %}",
    )
    messages[3] = Message("assistant", "Three.")
    tok = HFTokenizer(tmp_path, chat_template=ending)
    tokens, mask = tok.tokenize_messages(messages)
    assert "Four?" not in _unmasked_text(tok, tokens, mask)
    assert _unmasked_text(tok, tokens, mask).endswith("[final] Three.<|end_of_text|>")


def test_template_errors_are_data_errors(tmp_path):
    tok = HFTokenizer(write_hf_tokenizer(tmp_path, chat_template=LLAMA2_CHAT_TEMPLATE))
    with pytest.raises(DataError, match="roles must alternate"):
        tok.tokenize_messages([Message("user", "a"), Message("user", "b")])


def test_llama2_style_sentencepiece_tokenizer_json(tmp_path):
    """A sentencepiece-converted tokenizer.json and a template without a generation
    prompt: the answer (with its leading space and </s>) is what the loss sees."""
    from transformers import AutoTokenizer

    source = tmp_path / "source"
    write_sentencepiece_model(source, vocab_size=512, byte_fallback=True)
    (source / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "legacy": True,
                "add_bos_token": True,
                "chat_template": LLAMA2_CHAT_TEMPLATE,
            }
        )
    )
    converted = tmp_path / "converted"
    AutoTokenizer.from_pretrained(source).save_pretrained(converted)
    # transformers 5's LlamaTokenizer class rebuilds the pipeline its own way; the
    # generic class runs tokenizer.json as written, which is what HFTokenizer does.
    config = json.loads((converted / "tokenizer_config.json").read_text())
    (converted / "tokenizer_config.json").write_text(
        json.dumps({**config, "tokenizer_class": "PreTrainedTokenizerFast"})
    )
    reference = AutoTokenizer.from_pretrained(converted)
    tok = HFTokenizer(tmp_path / "converted")
    assert tok.bos_id == 1 and tok.eos_id == 2
    messages = [CHAT[0], *CHAT[1:4], Message("assistant", "You're welcome.")]
    tokens, mask = tok.tokenize_messages(messages)
    assert tokens == reference.apply_chat_template(
        _dicts(messages), tokenize=True, return_dict=False
    )
    answers = [t for t, m in zip(tokens, mask, strict=True) if not m]
    assert answers.count(tok.eos_id) == 2 and answers[-1] == tok.eos_id
    first = answers[: answers.index(tok.eos_id) + 1]
    assert [tok.decode(first), tok.decode(answers[len(first) :])] == [
        "It is 4. ",
        "You're welcome. ",
    ]
    # everything up to and including each [/INST] is prompt
    text = tok.decode(tokens, skip_special_tokens=False)
    assert text.count("[/INST]") == 2
    prompt = tok.decode(
        [t for t, m in zip(tokens, mask, strict=True) if m], skip_special_tokens=False
    )
    assert prompt.count("[/INST]") == 2 and "It is" not in prompt and "welcome" not in prompt


def test_missing_files_and_missing_eos_explain_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"no tokenizer\.json at .*tokenizer: \{_component_"):
        HFTokenizer(tmp_path)
    directory = write_hf_tokenizer(tmp_path / "x")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    del config["eos_token"]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="defines no eos_token"):
        HFTokenizer(directory)
    config["eos_token"] = "<|not_a_token|>"
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not in tokenizer.json's vocabulary"):
        HFTokenizer(directory)


_UNTRIMMED_TEMPLATE = (  # keeps each message's whitespace, as ChatML templates do
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.mark.parametrize("template", [None, _UNTRIMMED_TEMPLATE], ids=["trimming", "untrimmed"])
@pytest.mark.parametrize("prefill", ["The answer is ", "The answer is", "  The answer\n"])
def test_a_final_assistant_message_is_continued_as_transformers_continues_it(
    hf_dir, transformers_tok, template, prefill
):
    """A conversation that ends in an assistant message without eot (lm_eval's
    gen_prefix, a prefilled answer) ends where continue_final_message ends it: after
    the message's trailing whitespace where the template kept it."""
    tok = HFTokenizer(hf_dir, chat_template=template)
    messages = [Message("user", "Hi"), Message("assistant", prefill, eot=False)]
    expected = transformers_tok.apply_chat_template(
        _dicts(messages),
        chat_template=template,
        tokenize=True,
        continue_final_message=True,
        return_dict=False,
    )
    assert tok.tokenize_messages(messages)[0] == expected


def test_without_generation_config_the_stop_tokens_are_config_jsons_eos(tmp_path):
    """transformers' generate stops on config.json's eos_token_id list when there is
    no generation_config.json (Llama 3.1: <|end_of_text|>, <|eom_id|>, <|eot_id|>)."""
    directory = write_hf_tokenizer(tmp_path)
    ids = [HFTokenizer(directory).token_to_id(t) for t in ("<|end_of_text|>", "<|eot_id|>")]
    (directory / "generation_config.json").unlink(missing_ok=True)
    (directory / "config.json").write_text(json.dumps({"eos_token_id": ids}))
    assert set(HFTokenizer(directory).stop_tokens) == set(ids)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": ids[1]}))
    assert HFTokenizer(directory).stop_tokens == [ids[1]]  # generation_config.json wins


def _unigram_tokenizer(directory, corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>"))  # fmt: skip
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))
    return directory


@pytest.mark.parametrize("model", ["unigram", "bpe"])
def test_decode_cleans_up_spaces_where_transformers_does(tmp_path, model):
    """clean_up_tokenization_spaces joins " ," and " 's" on decode, except for BPE
    models (transformers refuses there: it would corrupt their text)."""
    from transformers import AutoTokenizer

    text = "Hello , world ! It 's fine ."
    if model == "unigram":
        directory = _unigram_tokenizer(tmp_path / "t", [text, "more words , here ."] * 20)
    else:
        directory = write_hf_tokenizer(tmp_path / "t")
    config = {"eos_token": "</s>" if model == "unigram" else "<|eot_id|>",
              "clean_up_tokenization_spaces": True}  # fmt: skip
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    ours, theirs = HFTokenizer(directory), AutoTokenizer.from_pretrained(directory)
    ids = ours.encode(text, add_bos=False, add_eos=False)
    assert ids == theirs(text, add_special_tokens=False).input_ids
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert ("Hello, world! It's fine." in ours.decode(ids)) is (model == "unigram")
