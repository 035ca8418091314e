"""Llama 2 (sentencepiece) and Llama 3 (tiktoken) tokenizers: ids equal to the raw
libraries, chat formats token-for-token equal to Meta's and to transformers'."""

from __future__ import annotations

import base64
import json

import pytest

from tunesmith import CheckpointError, DataError
from tunesmith.data import Message, ModelTokenizer
from tunesmith.testing import (
    LLAMA3_CHAT_TEMPLATE,
    write_hf_tokenizer,
    write_sentencepiece_model,
    write_tiktoken_ranks,
)
from tunesmith.tokenizers import HFTokenizer, auto_tokenizer
from tunesmith_llama import (
    Llama2Tokenizer,
    Llama3Tokenizer,
    llama2_tokenizer,
    llama3_special_tokens,
    llama3_tokenizer,
)
from tunesmith_llama._tokenizer import LLAMA3_PATTERN

TEXTS = [
    "Hello world!",
    "  leading and trailing spaces  ",
    "tabs\tand\n\nnewlines\r\n   runs      of   spaces",
    "ünïcödé — ✓ 漢字 🙂👍🏽",
    "it's 12345 numbers, DON'T",
    "",
]

CHAT = [
    Message("system", "Be brief.", masked=True),
    Message("user", " Hello there, what is 2+2? ", masked=True),
    Message("assistant", "It is 4."),
    Message("user", "Thanks! 🙂", masked=True),
    Message("assistant", "You're  welcome.\n"),
]

LLAMA2_HF_CHAT_TEMPLATE = (
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


def _unmasked(tokens, mask):
    return [t for t, m in zip(tokens, mask, strict=True) if not m]


# ----------------------------------------------------------------- Llama 3 ---


@pytest.fixture(scope="module")
def ranks_file(tmp_path_factory):
    return write_tiktoken_ranks(tmp_path_factory.mktemp("llama3") / "original" / "tokenizer.model")


@pytest.fixture(scope="module")
def raw_tiktoken(ranks_file):
    import tiktoken

    ranks = {}
    for line in ranks_file.read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name="raw",
        pat_str=LLAMA3_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=llama3_special_tokens(len(ranks)),
    )


@pytest.fixture
def llama3(ranks_file):
    return llama3_tokenizer(ranks_file)


def _llama3_format(messages, add_generation_prompt=False):
    """The published Llama 3 chat format as a string."""
    text = "<|begin_of_text|>"
    for m in messages:
        end = "<|eot_id|>" if m.eot else "<|eom_id|>"
        text += f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content.strip()}{end}"
    if add_generation_prompt:
        text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return text


def test_llama3_special_tokens_match_meta_ids():
    special = llama3_special_tokens(128000)
    assert len(special) == 256
    assert {
        name: special[name]
        for name in (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|reserved_special_token_0|>",
            "<|finetune_right_pad_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eom_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
            "<|reserved_special_token_3|>",
            "<|reserved_special_token_247|>",
        )
    } == {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|reserved_special_token_0|>": 128002,
        "<|finetune_right_pad_id|>": 128004,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
        "<|reserved_special_token_3|>": 128011,
        "<|reserved_special_token_247|>": 128255,
    }
    assert sorted(special.values()) == list(range(128000, 128256))


def test_llama3_ids_follow_a_small_ranks_file(llama3):
    assert isinstance(llama3, ModelTokenizer)
    assert llama3.base_vocab_size == 512
    assert llama3.vocab_size == 768
    assert (llama3.bos_id, llama3.eos_id, llama3.pad_id) == (512, 513, 516)
    assert (llama3.eot_id, llama3.eom_id) == (521, 520)
    assert llama3.stop_tokens == [521, 520, 513]


@pytest.mark.parametrize("text", TEXTS)
def test_llama3_encode_equals_tiktoken(llama3, raw_tiktoken, text):
    raw = raw_tiktoken.encode(text)
    assert llama3.encode(text, add_bos=False, add_eos=False) == raw
    assert llama3.encode(text) == [llama3.bos_id, *raw, llama3.eos_id]
    assert llama3.decode(llama3.encode(text)) == text
    assert llama3.decode(llama3.encode(text), skip_special_tokens=False) == (
        f"<|begin_of_text|>{text}<|end_of_text|>"
    )


def test_llama3_encode_treats_special_token_text_as_text(llama3, raw_tiktoken):
    ids = llama3.encode("a<|eot_id|>b", add_bos=False, add_eos=False)
    assert llama3.eot_id not in ids
    assert ids == raw_tiktoken.encode("a<|eot_id|>b", disallowed_special=())
    assert llama3.decode(ids) == "a<|eot_id|>b"


def test_llama3_encode_survives_huge_whitespace_runs(llama3):
    text = "start" + " " * 30_000 + "x" * 30_000 + "\n end"
    assert llama3.decode(llama3.encode(text)) == text


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize(
    "messages",
    [CHAT, CHAT[1:3], CHAT[1:2], [Message("ipython", '{"x": 1}', eot=False)]],
    ids=["multi-turn", "one-exchange", "one-user", "ipython-eom"],
)
def test_llama3_chat_format_equals_the_published_string(
    llama3, raw_tiktoken, messages, add_generation_prompt
):
    tokens, mask = llama3.tokenize_messages(messages, add_generation_prompt=add_generation_prompt)
    assert tokens == raw_tiktoken.encode(
        _llama3_format(messages, add_generation_prompt), allowed_special="all"
    )
    assert len(mask) == len(tokens)


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_llama3_chat_format_equals_transformers(ranks_file, llama3, add_generation_prompt):
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(
        vocab_file=str(ranks_file), extra_special_tokens=list(llama3.special_tokens)
    ).converted()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )
    hf.chat_template = LLAMA3_CHAT_TEMPLATE
    assert hf.convert_tokens_to_ids("<|eot_id|>") == llama3.eot_id
    expected = hf.apply_chat_template(
        _dicts(CHAT), tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    assert (
        llama3.tokenize_messages(CHAT, add_generation_prompt=add_generation_prompt)[0] == expected
    )
    for text in TEXTS:
        assert llama3.encode(text, add_bos=False, add_eos=False) == hf.encode(
            text, add_special_tokens=False
        )


def test_llama3_masks(llama3):
    tokens, mask = llama3.tokenize_messages(CHAT)
    assert llama3.decode(_unmasked(tokens, mask), skip_special_tokens=False) == (
        "It is 4.<|eot_id|>You're  welcome.<|eot_id|>"
    )
    tokens, mask = llama3.tokenize_messages([Message("user", "Hi"), Message("assistant", "Yo")])
    assert llama3.decode(_unmasked(tokens, mask), skip_special_tokens=False) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>Yo<|eot_id|>"
    )
    assert mask[0] is True


def test_llama3_tool_role_is_written_as_ipython(llama3):
    tokens, _ = llama3.tokenize_messages([Message("tool", "42")])
    assert llama3.decode(tokens, skip_special_tokens=False) == (
        "<|begin_of_text|><|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
    )


def test_llama3_truncation_and_generation_prompt(ranks_file):
    tok = Llama3Tokenizer(ranks_file, max_seq_len=12)
    full, full_mask = Llama3Tokenizer(ranks_file).tokenize_messages(CHAT)
    tokens, mask = tok.tokenize_messages(CHAT)
    assert len(tokens) == 12
    assert tokens[:11] == full[:11] and mask[:11] == full_mask[:11]
    assert tokens[-1] == tok.eot_id
    prompt, prompt_mask = tok.tokenize_messages(CHAT[:2], add_generation_prompt=True)
    assert len(prompt) > 12 and all(prompt_mask)
    assert prompt[-len(tok.header("assistant")) :] == tok.header("assistant")


def test_llama3_rejects_a_sentencepiece_file(tmp_path):
    path = write_sentencepiece_model(tmp_path)
    with pytest.raises(CheckpointError, match="not a tiktoken ranks file.*llama2_tokenizer"):
        Llama3Tokenizer(path)
    with pytest.raises(CheckpointError, match="original/tokenizer.model"):
        Llama3Tokenizer(tmp_path / "missing.model")


# ----------------------------------------------------------------- Llama 2 ---


@pytest.fixture(scope="module")
def sp_file(tmp_path_factory):
    return write_sentencepiece_model(
        tmp_path_factory.mktemp("llama2"), vocab_size=512, byte_fallback=True
    )


@pytest.fixture(scope="module")
def raw_sp(sp_file):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(sp_file))


@pytest.fixture
def llama2(sp_file):
    return llama2_tokenizer(sp_file)


def _meta_llama2_dialog(sp, messages):
    """Meta's llama/generation.py chat_completion, verbatim in logic: one encode per
    exchange with bos/eos, the system prompt folded into the first user message."""
    dialog = _dicts(messages)
    if dialog[0]["role"] == "system":
        dialog = [
            {
                "role": dialog[1]["role"],
                "content": "<<SYS>>\n"
                + dialog[0]["content"]
                + "\n<</SYS>>\n\n"
                + dialog[1]["content"],
            }
        ] + dialog[2:]
    tokens = []
    for prompt, answer in zip(dialog[::2], dialog[1::2], strict=False):
        text = f"[INST] {prompt['content'].strip()} [/INST] {answer['content'].strip()} "
        tokens += [sp.bos_id(), *sp.encode(text), sp.eos_id()]
    if len(dialog) % 2:
        tokens += [sp.bos_id(), *sp.encode(f"[INST] {dialog[-1]['content'].strip()} [/INST]")]
    return tokens


def test_llama2_ids(llama2):
    assert isinstance(llama2, ModelTokenizer)
    assert (llama2.vocab_size, llama2.bos_id, llama2.eos_id, llama2.pad_id) == (512, 1, 2, 0)
    assert llama2.stop_tokens == [2]


@pytest.mark.parametrize("text", TEXTS)
def test_llama2_encode_equals_sentencepiece(llama2, raw_sp, text):
    assert llama2.encode(text, add_bos=False, add_eos=False) == raw_sp.encode(text)
    assert llama2.encode(text) == [1, *raw_sp.encode(text), 2]
    assert llama2.decode(llama2.encode(text)) == raw_sp.decode(raw_sp.encode(text))
    if not text.startswith(" "):  # sentencepiece drops the dummy-prefix space
        assert llama2.decode(llama2.encode(text)) == text


def test_llama2_decode_can_show_special_tokens(llama2):
    assert llama2.decode(llama2.encode("Hi there"), skip_special_tokens=False) == "<s>Hi there</s>"


@pytest.mark.parametrize(
    "messages",
    [CHAT, CHAT[1:3], CHAT[1:2], CHAT[:2], CHAT[:4]],
    ids=["multi-turn", "one-exchange", "one-user", "system-user", "trailing-user"],
)
def test_llama2_chat_format_equals_meta(llama2, raw_sp, messages):
    for add_generation_prompt in (False, True):
        tokens, mask = llama2.tokenize_messages(
            messages, add_generation_prompt=add_generation_prompt
        )
        assert tokens == _meta_llama2_dialog(raw_sp, messages)
        assert len(mask) == len(tokens)


def test_llama2_chat_format_equals_transformers(sp_file, llama2, tmp_path):
    from transformers import AutoTokenizer

    (tmp_path / "tokenizer.model").write_bytes(sp_file.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "legacy": True,
                "add_bos_token": True,
                "chat_template": LLAMA2_HF_CHAT_TEMPLATE,
            }
        )
    )
    hf = AutoTokenizer.from_pretrained(tmp_path)
    for messages in (CHAT, CHAT[1:3]):
        expected = hf.apply_chat_template(_dicts(messages), tokenize=True, return_dict=False)
        assert llama2.tokenize_messages(messages)[0] == expected


def test_llama2_masks(llama2):
    tokens, mask = llama2.tokenize_messages(CHAT)
    answers = _unmasked(tokens, mask)
    assert answers.count(2) == 2 and answers[-1] == 2
    split = answers.index(2) + 1
    assert [llama2.decode(answers[:split]), llama2.decode(answers[split:])] == [
        "It is 4. ",
        "You're  welcome. ",
    ]
    prompt = llama2.decode(
        [t for t, m in zip(tokens, mask, strict=True) if m], skip_special_tokens=False
    )
    assert prompt.count("[/INST]") == 2 and "It is" not in prompt
    tokens, mask = llama2.tokenize_messages([Message("user", "Hi"), Message("assistant", "Yo")])
    assert not any(mask)


def test_llama2_answer_without_eot_ends_after_its_content(llama2, raw_sp):
    tokens, _ = llama2.tokenize_messages(
        [Message("user", "Hi"), Message("assistant", "Sure, the", eot=False)]
    )
    assert tokens == [1, *raw_sp.encode("[INST] Hi [/INST] Sure, the")]


def test_llama2_truncation_keeps_eos(sp_file):
    full, _ = Llama2Tokenizer(sp_file).tokenize_messages(CHAT)
    tokens, mask = Llama2Tokenizer(sp_file, max_seq_len=30).tokenize_messages(CHAT)
    assert tokens == [*full[:29], 2] and len(mask) == 30 and mask[-1] is True  # untrained


def test_llama2_rejects_conversations_it_cannot_lay_out(llama2):
    with pytest.raises(DataError, match=r"roles \[user, user\].*message 1 is 'user'"):
        llama2.tokenize_messages([Message("user", "a"), Message("user", "b")])
    with pytest.raises(DataError, match="message 0 is 'assistant'"):
        llama2.tokenize_messages([Message("assistant", "a")])
    with pytest.raises(DataError, match="system message needs a user message"):
        llama2.tokenize_messages([Message("system", "a")])


def test_llama2_rejects_a_tiktoken_file(ranks_file):
    with pytest.raises(CheckpointError, match="not a sentencepiece model.*llama3_tokenizer"):
        Llama2Tokenizer(ranks_file)


# -------------------------------------------------------------------- auto ---


def test_registered_tokenizers(llama_registry):
    llama3_record = llama_registry.get("tokenizers", "llama3_tokenizer")
    llama2_record = llama_registry.get("tokenizers", "llama2_tokenizer")
    assert (llama3_record.files, llama3_record.family, llama3_record.priority) == (
        ("original/tokenizer.model",),
        "llama",
        10,
    )
    assert (llama2_record.files, llama2_record.family, llama2_record.priority) == (
        ("tokenizer.model",),
        "llama",
        5,
    )
    assert llama3_record.origin.distribution == "tunesmith-llama"


def _llama_dir(path, *files):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if "tokenizer.json" in files:
        write_hf_tokenizer(path)
    if "original/tokenizer.model" in files:
        write_tiktoken_ranks(path / "original" / "tokenizer.model")
    if "tokenizer.model" in files:
        write_sentencepiece_model(path)
    return path


def test_auto_picks_tiktoken_over_tokenizer_json_in_a_llama3_repo(tmp_path):
    directory = _llama_dir(tmp_path, "tokenizer.json", "original/tokenizer.model")
    tok = auto_tokenizer(directory, max_seq_len=32)
    assert isinstance(tok, Llama3Tokenizer) and tok.max_seq_len == 32
    assert tok.path == directory / "original" / "tokenizer.model"
    assert isinstance(auto_tokenizer(directory, family="llama"), Llama3Tokenizer)


def test_auto_picks_sentencepiece_in_a_llama2_repo(tmp_path):
    directory = _llama_dir(tmp_path, "tokenizer.json", "tokenizer.model")
    assert isinstance(auto_tokenizer(directory), Llama2Tokenizer)


def test_auto_falls_back_to_tokenizer_json(tmp_path):
    directory = _llama_dir(tmp_path, "tokenizer.json")
    assert isinstance(auto_tokenizer(directory), HFTokenizer)


def test_auto_explains_an_empty_llama_directory(tmp_path):
    directory = _llama_dir(tmp_path)
    with pytest.raises(CheckpointError) as info:
        auto_tokenizer(directory)
    message = str(info.value)
    assert "model family 'llama'" in message
    assert (
        "original/tokenizer.model (llama3_tokenizer); tokenizer.model (llama2_tokenizer); "
        in message
    )
    assert "tokenizer: {_component_: llama3_tokenizer | llama2_tokenizer | hf_tokenizer" in message
