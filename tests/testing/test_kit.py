"""The conformance kit passes real components and fails broken ones, naming what differed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tunesmith import Config, Dataset, PeftMethod, Quantizer, hookimpl
from tunesmith.registry import load_registry, reset_registry
from tunesmith.testing import (
    LLAMA3_CHAT_TEMPLATE,
    ConformanceError,
    check_chat_template,
    check_configs,
    check_dataset,
    check_family,
    check_peft_method,
    check_plugin,
    check_quantizer,
    check_tokenizer,
    write_hf_tokenizer,
)

tunesmith_llama = pytest.importorskip("tunesmith_llama")
pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


def _registry_with(monkeypatch, **plugins):
    """Built-ins + the given plugin objects (+ the repo's llama and lora when named)."""
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", ",".join(plugins.pop("entry_points", [])))
    registry = load_registry(extra=plugins)
    reset_registry(registry)
    return registry


def _llama_adapter(monkeypatch):
    registry = _registry_with(monkeypatch, entry_points=["llama"])
    return registry.get("checkpoint_adapters", "llama")


class _FamilyPlugin:
    def __init__(self, adapter):
        self.adapter = adapter

    @hookimpl
    def register_checkpoint_adapters(self, register):
        register(self.adapter)


def _broken_family(monkeypatch, build):
    adapter = dataclasses.replace(
        _llama_adapter(monkeypatch), family="broken", build_from_hf_config=build, origin=None
    )
    return _registry_with(monkeypatch, broken=_FamilyPlugin(adapter))


def test_a_real_family_passes(tmp_path, monkeypatch):
    _registry_with(monkeypatch, entry_points=["llama", "lora"])
    ran = check_family("llama", work_dir=tmp_path)
    assert ran == [
        f"{name} [llama #0]"
        for name in (
            "load",
            "round_trip",
            "kv_cache",
            "packing",
            "logits",
            "bf16",
            "generation",
            "lora",
        )  # fmt: skip
    ]


def test_a_wrong_cast_order_fails_the_bf16_check(tmp_path, monkeypatch):
    def build(config, **overrides):
        model = tunesmith_llama.build_from_hf_config(config, **overrides)
        for layer in model.layers:  # Llama's reference rotates in the input dtype
            layer.attn.pos_embeddings.rotate_in_fp32 = True
        return model

    registry = _broken_family(monkeypatch, build)
    config = tunesmith_llama.tiny_llama_config("llama3_2")
    check_family(
        "broken", configs=[config], checks=["logits"], work_dir=tmp_path / "a", registry=registry
    )  # fmt: skip  (fp32 cannot tell)
    with pytest.raises(ConformanceError, match="bf16 .* another order than the reference"):
        check_family("broken", configs=[config], checks=["bf16"], work_dir=tmp_path / "b",
                     registry=registry)  # fmt: skip


def test_wrong_rope_fails_the_logits_check(tmp_path, monkeypatch):
    def build(config, **overrides):
        return tunesmith_llama.build_from_hf_config(config, rope_base=1234.0, **overrides)

    registry = _broken_family(monkeypatch, build)
    config = tunesmith_llama.tiny_llama_config("llama2")
    with pytest.raises(ConformanceError) as err:
        check_family("broken", configs=[config], checks=["logits"], work_dir=tmp_path,
                     registry=registry)  # fmt: skip
    assert "family 'broken': logits [llama #0]: logits and transformers' differ by" in str(
        err.value
    )


def test_untied_head_where_the_reference_ties_fails_to_load(tmp_path, monkeypatch):
    def build(config, **overrides):
        return tunesmith_llama.build_from_hf_config(config, tie_word_embeddings=False, **overrides)

    registry = _broken_family(monkeypatch, build)
    config = tunesmith_llama.tiny_llama_config("llama3_2")  # ties embeddings
    with pytest.raises(ConformanceError, match=r"load \[llama #0\]: .*output\.weight"):
        check_family("broken", configs=[config], work_dir=tmp_path, registry=registry)


def test_a_broken_kv_cache_fails(tmp_path, monkeypatch):
    def build(config, **overrides):
        model = tunesmith_llama.build_from_hf_config(config, **overrides)
        for layer in model.layers:  # forgets the cache: every step attends to itself only
            layer.attn.setup_cache = lambda *args, **kwargs: None
        model.caches_are_enabled = lambda: True
        return model

    registry = _broken_family(monkeypatch, build)
    config = tunesmith_llama.tiny_llama_config("llama3_1")
    with pytest.raises(ConformanceError, match="kv_cache"):
        check_family("broken", configs=[config], checks=["kv_cache"], work_dir=tmp_path,
                     registry=registry)  # fmt: skip


@pytest.fixture
def hf_tokenizer_dir(tmp_path):
    return write_hf_tokenizer(tmp_path / "tok", chat_template=LLAMA3_CHAT_TEMPLATE)


def test_tokenizer_and_chat_template_checks_pass(hf_tokenizer_dir):
    from tunesmith.tokenizers import hf_tokenizer

    tokenizer = hf_tokenizer(hf_tokenizer_dir)
    assert "protocol" in check_tokenizer(tokenizer)
    assert "conversation 1" in check_chat_template(tokenizer, hf_tokenizer_dir)


class _MasksEndOfTurn:
    """A tokenizer that never trains its end-of-turn token."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def tokenize_messages(self, messages, *, add_generation_prompt=False):
        tokens, mask = self._inner.tokenize_messages(
            messages, add_generation_prompt=add_generation_prompt
        )
        stops = set(self._inner.stop_tokens)
        return tokens, [m or t in stops for t, m in zip(tokens, mask, strict=True)]


def test_a_masked_end_of_turn_fails(hf_tokenizer_dir):
    from tunesmith.tokenizers import hf_tokenizer

    broken = _MasksEndOfTurn(hf_tokenizer(hf_tokenizer_dir))
    with pytest.raises(ConformanceError, match="trained end-of-turn token"):
        check_chat_template(broken, hf_tokenizer_dir)


def test_a_tokenizer_missing_a_member_fails_the_protocol(hf_tokenizer_dir):
    class NoDecode:
        vocab_size, bos_id, eos_id, pad_id, stop_tokens, max_seq_len = 10, None, 1, 0, [1], None

        def encode(self, text, *, add_bos=True, add_eos=True):
            return [1]

        def tokenize_messages(self, messages):  # no add_generation_prompt
            return [1], [False]

    with pytest.raises(ConformanceError, match="has no decode"):
        check_tokenizer(NoDecode())


class _LyingTransform:
    """LoRA that reports no trainable parameters."""

    def __init__(self, **block):
        from tunesmith_lora import LoRATransform

        self._inner = LoRATransform(**block)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def trainable_params(self, model):
        return {}


class _PeftPlugin:
    @hookimpl
    def register_peft_methods(self, register):
        register(PeftMethod(name="lying", builder=_LyingTransform))


def test_a_peft_method_whose_trainable_params_lie_fails(tmp_path, monkeypatch):
    pytest.importorskip("tunesmith_lora")
    registry = _registry_with(monkeypatch, entry_points=["llama", "lora"], lying=_PeftPlugin())
    assert "merge" in check_peft_method("lora", work_dir=tmp_path / "ok", registry=registry)
    with pytest.raises(ConformanceError, match="PEFT method 'lying': trainable_params"):
        check_peft_method("lying", work_dir=tmp_path / "bad", registry=registry)


class _NoOpQuantizer:
    def quantize(self, model, device):
        return model


class _Datasets:
    @hookimpl
    def register_quantizers(self, register):
        register(Quantizer(name="noop", builder=_NoOpQuantizer))

    @hookimpl
    def register_datasets(self, register):
        def uneven(tokenizer):
            return [{"tokens": [1, 2, 3], "labels": [1, 2]}]

        register(Dataset(name="uneven", builder=uneven))

    @hookimpl
    def register_recipes(self, register):
        register(Config(name="x/no_comment", recipe="generate", path=self.path))


def test_quantizer_dataset_and_config_checks_catch_breakage(
    tmp_path, monkeypatch, hf_tokenizer_dir
):
    from tunesmith.tokenizers import hf_tokenizer

    plugin = _Datasets()
    plugin.path = tmp_path / "no_comment.yaml"
    plugin.path.write_text("checkpointer: {checkpoint_dir: /x}\n")
    registry = _registry_with(monkeypatch, entry_points=["llama"], bad=plugin)
    with pytest.raises(ConformanceError, match="quantizer 'noop': quantize: quantize.. left every"):
        check_quantizer("noop", work_dir=tmp_path, registry=registry)
    tokenizer = hf_tokenizer(hf_tokenizer_dir)
    with pytest.raises(ConformanceError, match="sample 0: 3 tokens, 2 labels"):
        check_dataset("uneven", tokenizer, registry=registry)
    assert "samples" in check_dataset(
        "alpaca", tokenizer, registry=registry, source="tunesmith:alpaca_sample", split="train[:4]"
    )
    with pytest.raises(ConformanceError, match="x/no_comment: does not open with a comment"):
        check_configs("bad", registry=registry)
    with pytest.raises(ConformanceError, match="noop"):
        check_plugin("bad", work_dir=tmp_path / "plugin", registry=registry)


def test_plugins_check_command(monkeypatch):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "lora,llama")
    result = CliRunner().invoke(cli, ["plugins", "check", "lora"])
    assert result.exit_code == 0, result.output
    assert "ok peft dora: protocol, trainable_params" in result.output
    assert result.output.strip().endswith("checks")
    result = CliRunner().invoke(cli, ["plugins", "check", "lroa"])
    assert result.exit_code != 0
    assert "no plugin named 'lroa' — did you mean 'lora'?" in result.output


def test_reference_logits_are_not_trivial():
    torch.manual_seed(0)  # the kit refuses a degenerate config instead of passing it
    from tunesmith.testing._kit import _Report

    report = _Report("x")
    with report.check("a"):
        raise AssertionError("boom")
    with pytest.raises(ConformanceError, match="x: a: boom"):
        report.finish()


def _adapter_with(monkeypatch, **changes):
    adapter = dataclasses.replace(
        _llama_adapter(monkeypatch), family="broken", origin=None, **changes
    )
    return _registry_with(monkeypatch, entry_points=["lora"], broken=_FamilyPlugin(adapter))


def test_a_lossy_round_trip_fails(tmp_path, monkeypatch):
    def drops_a_norm(state_dict, config):  # writes one tensor fewer than it read
        state_dict.pop("model.norm.weight")
        return state_dict

    registry = _adapter_with(monkeypatch, convert_to_hf=drops_a_norm)
    with pytest.raises(
        ConformanceError, match=r"round_trip .*changes the key set .lost: \['model.norm"
    ):
        check_family("broken", configs=[tunesmith_llama.tiny_llama_config("llama2")],
                     checks=["round_trip"], work_dir=tmp_path, registry=registry)  # fmt: skip


def test_a_model_that_ignores_the_mask_fails_the_packing_check(tmp_path, monkeypatch):
    def build(config, **overrides):
        model = tunesmith_llama.build_from_hf_config(config, **overrides)
        forward = model.forward
        model.forward = lambda tokens, *, mask=None, input_pos=None: forward(
            tokens, input_pos=input_pos
        )  # every document sees the ones before it
        return model

    registry = _broken_family(monkeypatch, build)
    with pytest.raises(ConformanceError, match="packing .*second document"):
        check_family("broken", configs=[tunesmith_llama.tiny_llama_config("llama2")],
                     checks=["packing"], work_dir=tmp_path, registry=registry)  # fmt: skip


def test_a_model_that_attends_to_padding_fails_the_generation_check(tmp_path, monkeypatch):
    def build(config, **overrides):
        model = tunesmith_llama.build_from_hf_config(config, **overrides)
        forward = model.forward
        # Ignores the padding mask: a left-padded row attends to its pad tokens.
        model.forward = lambda tokens, *, mask=None, input_pos=None: forward(
            tokens, input_pos=input_pos
        )
        return model

    registry = _broken_family(monkeypatch, build)
    config = tunesmith_llama.tiny_llama_config("llama3_1")
    check_family(
        "broken", configs=[config], checks=["logits"], work_dir=tmp_path / "a", registry=registry
    )  # fmt: skip  (an unpadded sequence cannot tell)
    with pytest.raises(ConformanceError, match="greedy ids for a left-padded batch"):
        check_family("broken", configs=[config], checks=["generation"], work_dir=tmp_path / "b",
                     registry=registry)  # fmt: skip


def test_an_adapter_file_peft_reads_differently_fails_the_lora_check(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from tunesmith_lora import LoRATransform

    save = LoRATransform.save_adapter

    def save_doubled(self, model, directory, **kwargs):  # a wrong scale in the file
        out = save(self, model, directory, **kwargs)
        tensors = load_file(str(out / "adapter_model.safetensors"))
        tensors = {k: v * 2 if "lora_B" in k else v for k, v in tensors.items()}
        save_file(tensors, str(out / "adapter_model.safetensors"))
        return out

    monkeypatch.setattr(LoRATransform, "save_adapter", save_doubled)
    _registry_with(monkeypatch, entry_points=["llama", "lora"])
    with pytest.raises(ConformanceError, match="lora .*logits with the adapter in PEFT and ours"):
        check_family("llama", configs=[tunesmith_llama.tiny_llama_config("llama2")],
                     checks=["lora"], work_dir=tmp_path)  # fmt: skip


def test_an_evaluator_that_returns_no_dict_fails(monkeypatch):
    from tunesmith import Evaluator
    from tunesmith.testing import check_evaluator

    class NoResults:
        def __init__(self, **block):
            pass

        def evaluate(self, model, tokenizer):
            return [0.5]

    class Plugin:
        @hookimpl
        def register_evaluators(self, register):
            register(Evaluator(name="listy", builder=NoResults))

    registry = _registry_with(monkeypatch, listy=Plugin())
    with pytest.raises(
        ConformanceError, match="evaluator 'listy': evaluate: evaluate.. returned list"
    ):
        check_evaluator("listy", model=None, tokenizer=None, registry=registry)
