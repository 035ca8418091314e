"""auto_tokenizer: the highest-priority registered tokenizer whose files a directory has."""

from __future__ import annotations

import json

import pytest

from tunesmith import CheckpointAdapter, CheckpointError, Tokenizer, hookimpl
from tunesmith.registry import load_registry, reset_registry
from tunesmith.testing import write_hf_tokenizer
from tunesmith.tokenizers import HFTokenizer, auto_tokenizer, find_tokenizer


class _Built:
    def __init__(self, name, path, **kwargs):
        self.name, self.path, self.kwargs = name, path, kwargs


def _builder(name):
    def build(path, *, max_seq_len=None, **kwargs):
        return _Built(name, path, max_seq_len=max_seq_len, **kwargs)

    return build


class _FamilyPlugin:
    """A throwaway family: a sentencepiece-like tokenizer (priority 5), a tiktoken-like
    one (priority 10), and another family's tokenizer that must never be picked."""

    @staticmethod
    @hookimpl
    def register_tokenizers(register):
        register(
            Tokenizer(
                "fam_v3",
                _builder("fam_v3"),
                files=("original/tok.model",),
                family="fam",
                priority=10,
            )
        )
        register(
            Tokenizer(
                "fam_v2",
                _builder("fam_v2"),
                files=("tok.model", "alt.model"),
                family="fam",
                priority=5,
            )
        )
        register(
            Tokenizer(
                "other_tok",
                _builder("other_tok"),
                files=("tok.model",),
                family="other",
                priority=99,
            )
        )

    @staticmethod
    @hookimpl
    def register_checkpoint_adapters(register):
        register(
            CheckpointAdapter(
                family="fam", model_types=("fam_model",), hf_to_native={}, build_from_hf_config=dict
            )
        )


@pytest.fixture(autouse=True)
def registry():
    registry = load_registry(builtins=True, entry_points=False, extra={"fam": _FamilyPlugin()})
    assert not registry.load_errors()
    reset_registry(registry)
    yield registry
    reset_registry()


def test_hf_tokenizer_is_the_builtin_generic_fallback(registry, tmp_path):
    record = registry.get("tokenizers", "hf_tokenizer")
    assert (record.files, record.family, record.priority) == (("tokenizer.json",), None, 0)
    assert record.origin.distribution == "tunesmith"
    tok = auto_tokenizer(write_hf_tokenizer(tmp_path), max_seq_len=64)
    assert isinstance(tok, HFTokenizer)
    assert tok.max_seq_len == 64


def test_the_family_tokenizer_wins_over_tokenizer_json(tmp_path):
    write_hf_tokenizer(tmp_path)
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "tok.model").write_text("x")
    (tmp_path / "tok.model").write_text("x")
    tok = auto_tokenizer(tmp_path, family="fam", max_seq_len=8, extra=1)
    assert (tok.name, tok.path, tok.kwargs) == (
        "fam_v3",
        tmp_path / "original" / "tok.model",
        {"max_seq_len": 8, "extra": 1},
    )
    (tmp_path / "original" / "tok.model").unlink()
    assert auto_tokenizer(tmp_path, family="fam").name == "fam_v2"


def test_a_records_files_are_tried_in_order(tmp_path):
    (tmp_path / "alt.model").write_text("x")
    record, path = find_tokenizer(tmp_path, family="fam")
    assert (record.name, path) == ("fam_v2", tmp_path / "alt.model")
    (tmp_path / "tok.model").write_text("x")
    assert find_tokenizer(tmp_path, family="fam")[1] == tmp_path / "tok.model"


def test_family_comes_from_config_json(tmp_path):
    (tmp_path / "tok.model").write_text("x")
    write_hf_tokenizer(tmp_path)
    # without a family, only generic tokenizers are candidates
    assert isinstance(auto_tokenizer(tmp_path), HFTokenizer)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "fam_model"}))
    assert auto_tokenizer(tmp_path).name == "fam_v2"


def test_other_families_are_never_candidates(tmp_path):
    (tmp_path / "tok.model").write_text("x")
    with pytest.raises(CheckpointError) as info:
        auto_tokenizer(tmp_path, family="third")
    assert "other_tok" not in str(info.value)


def test_nothing_matching_names_the_directory_the_files_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError) as info:
        auto_tokenizer(tmp_path, family="fam")
    message = str(info.value)
    assert str(tmp_path) in message
    assert "model family 'fam'" in message
    for expected in (
        "original/tok.model (fam_v3)",
        "tok.model, alt.model (fam_v2)",
        "tokenizer.json (hf_tokenizer)",
        "tokenizer.model (sentencepiece_tokenizer)",
    ):
        assert expected in message
    assert (
        "tokenizer: {_component_: fam_v3 | fam_v2 | hf_tokenizer | sentencepiece_tokenizer, "
        "path: <tokenizer file>}"
        in message
    )


def test_a_missing_directory_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist: point tokenizer.path"):
        auto_tokenizer(tmp_path / "nope")


def test_chat_template_kwargs_reach_the_template_and_auto_refuses_them_where_none_is(tmp_path):
    from tunesmith import ConfigError
    from tunesmith.builtins.tokenizers import auto
    from tunesmith.data import Message

    directory = write_hf_tokenizer(tmp_path / "hf")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **json.loads((directory / "tokenizer_config.json").read_text()),
                "chat_template": "{{ greeting | default('Hi') }}:"
                "{% for m in messages %}{{ m.content }}{% endfor %}",
            }
        )
    )
    said = Message("user", "ab")
    plain, tuned = auto(directory), auto(directory, chat_template_kwargs={"greeting": "Yo"})
    assert tuned.chat_template_kwargs == {"greeting": "Yo"} and plain.chat_template_kwargs == {}
    for tokenizer, text in ((plain, "Hi:ab"), (tuned, "Yo:ab")):
        tokens, _ = tokenizer.tokenize_messages([said], add_generation_prompt=True)
        assert tokenizer.decode(tokens, skip_special_tokens=False).endswith(text)
    with pytest.raises(ConfigError, match=r"sets add_generation_prompt, which tunesmith passes"):
        HFTokenizer(directory, chat_template_kwargs={"add_generation_prompt": True})
    with pytest.raises(ConfigError, match=r"chat_template_kwargs must map template variable"):
        HFTokenizer(directory, chat_template_kwargs=["enable_thinking"])
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "tok.model").write_text("x")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "fam_model"}))
    with pytest.raises(ConfigError) as err:
        auto(tmp_path, chat_template_kwargs={"enable_thinking": False})
    assert str(err.value) == (
        f"tokenizer.chat_template_kwargs: _Built, the tokenizer of {tmp_path}, lays "
        "conversations out itself, not through a chat template: remove chat_template_kwargs, "
        "or set tokenizer._component_=hf_tokenizer, which renders the chat template of "
        "tokenizer_config.json"
    )
