"""load_pretrained on the fake family: dtype/device handling, tokenizer call, errors."""

from __future__ import annotations

import pytest
import torch

import tunesmith
import tunesmith.tokenizers
from tunesmith import CheckpointError, TunesmithError

from .ckpt_fakes import write_fake_hf


@pytest.fixture
def tokenizer_calls(monkeypatch):
    calls = []

    def fake_auto_tokenizer(checkpoint_dir, *, family=None, max_seq_len=None):
        calls.append((checkpoint_dir, family, max_seq_len))
        return "tokenizer"

    monkeypatch.setattr(tunesmith.tokenizers, "auto_tokenizer", fake_auto_tokenizer)
    return calls


def test_loads_weights_in_eval_mode(tmp_path, fake_registry, tokenizer_calls):
    native = write_fake_hf(tmp_path, dtype=torch.bfloat16)
    model, tokenizer = tunesmith.load_pretrained(tmp_path, max_seq_len=64)
    assert tokenizer == "tokenizer"
    assert tokenizer_calls == [(tmp_path, "fake", 64)]
    assert not model.training
    # CPU default: fp32 even though the checkpoint (and config.json) say bf16.
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert torch.equal(
        model.layers[0].attn.q_proj.weight, native["layers.0.attn.q_proj.weight"].float()
    )


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("bf16", torch.bfloat16), ("float16", torch.float16), (torch.float64, torch.float64)],
)
def test_dtype_option(tmp_path, fake_registry, tokenizer_calls, dtype, expected):
    write_fake_hf(tmp_path)
    model, _ = tunesmith.load_pretrained(tmp_path, dtype=dtype, device="cpu")
    assert {p.dtype for p in model.parameters()} == {expected}


def test_unknown_dtype(tmp_path, fake_registry, tokenizer_calls):
    write_fake_hf(tmp_path)
    with pytest.raises(CheckpointError, match="unknown dtype 'bf17': use one of bf16, fp16, fp32"):
        tunesmith.load_pretrained(tmp_path, dtype="bf17")


def test_default_dtype_follows_the_checkpoint_on_gpus():
    from tunesmith._pretrained import _default_dtype

    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert _default_dtype(cpu, {"dtype": "bfloat16"}) == torch.float32
    assert _default_dtype(meta, {"torch_dtype": "float16"}) == torch.float16
    assert _default_dtype(meta, {"dtype": "float32"}) == torch.float32
    assert _default_dtype(meta, {}) == torch.bfloat16


def test_not_a_checkpoint(tmp_path, fake_registry):
    with pytest.raises(CheckpointError, match="is not a checkpoint directory"):
        tunesmith.load_pretrained(tmp_path)


def test_adapter_without_peft_plugin(tmp_path, fake_registry, tokenizer_calls):
    write_fake_hf(tmp_path / "base")
    (tmp_path / "adapter").mkdir()
    with pytest.raises(
        CheckpointError,
        match="no adapter_config.json in .*adapter: expected a PEFT adapter directory",
    ):
        tunesmith.load_pretrained(tmp_path / "base", adapter=tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(TunesmithError) as err:
        tunesmith.load_pretrained(tmp_path / "base", adapter=tmp_path / "adapter")
    assert str(err.value) == (
        f"the adapter_config.json of the adapter in {tmp_path / 'adapter'} names no peft_type: "
        "re-save the adapter with PEFT's save_pretrained or a tunesmith run"
    )
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(TunesmithError) as err:
        tunesmith.load_pretrained(tmp_path / "base", adapter=tmp_path / "adapter")
    assert str(err.value) == (
        f"no installed PEFT method loads the adapter in {tmp_path / 'adapter'}, of peft_type "
        "'LORA' (installed: none): install the plugin that wrote it, e.g. pip install "
        "tunesmith-lora for LoRA and DoRA adapters"
    )
