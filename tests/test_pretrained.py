"""Checkpointer, load_pretrained, convert and merge on real tiny Llama checkpoints,
checked against Hugging Face transformers (and PEFT for adapters)."""

from __future__ import annotations

import json
import os

import pytest
import torch

import tunesmith
from tunesmith import TunesmithError
from tunesmith.checkpoint import (
    Checkpointer,
    convert_checkpoint,
    load_hf_state_dict,
    load_model_weights,
    remap_keys,
)
from tunesmith.registry import reset_registry
from tunesmith.testing import write_hf_tokenizer
from tunesmith_llama import write_tiny_llama_checkpoint

pytest.importorskip("tunesmith_llama")
transformers = pytest.importorskip("transformers")

TOKENS = torch.tensor([[1, 17, 250, 3, 99, 42, 7, 300]])
VOCAB = 640  # covers write_hf_tokenizer's 512 learned tokens + specials


def _checkpoint(directory, variant="llama3_2", **overrides):
    write_tiny_llama_checkpoint(directory, variant=variant, vocab_size=VOCAB, **overrides)
    write_hf_tokenizer(directory)
    return directory


def _hf_logits(directory):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(TOKENS).logits


def _logits(model):
    with torch.no_grad():
        return model(TOKENS)


def _same_tensors(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_load_pretrained_matches_transformers(tmp_path):
    directory = _checkpoint(tmp_path)
    model, tokenizer = tunesmith.load_pretrained(directory, max_seq_len=128)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer.max_seq_len == 128
    ids = tokenizer.encode("hello world", add_eos=False)
    assert ids[0] == tokenizer.bos_id and max(ids) < VOCAB
    torch.testing.assert_close(_logits(model), _hf_logits(directory), atol=1e-5, rtol=1e-4)


def test_load_pretrained_bf16(tmp_path):
    model, _ = tunesmith.load_pretrained(_checkpoint(tmp_path), dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("variant", ["llama2", "llama3_2"])  # untied and tied embeddings
def test_hf_round_trip_and_transformers_loads_our_output(tmp_path, variant):
    source = _checkpoint(tmp_path / "src", variant=variant)
    ckpt = Checkpointer(source, tmp_path / "out")
    model = ckpt.build_model()
    load_model_weights(model, ckpt.load_state_dict())
    epoch_dir = ckpt.save_epoch(0, model.state_dict(), max_shard_size="40KB")

    assert len(list(epoch_dir.glob("model-*-of-*.safetensors"))) > 2
    index = json.loads((epoch_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(load_hf_state_dict(source))
    _same_tensors(load_hf_state_dict(epoch_dir), load_hf_state_dict(source))
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (epoch_dir / name).read_bytes() == (source / name).read_bytes()
    if variant == "llama3_2":
        assert "lm_head.weight" not in index["weight_map"]

    ours = _logits(model.eval())
    torch.testing.assert_close(_hf_logits(epoch_dir), ours, atol=1e-5, rtol=1e-4)
    reloaded, _ = tunesmith.load_pretrained(epoch_dir)
    assert torch.equal(_logits(reloaded), ours)


def test_wrong_builder_is_one_clear_error(tmp_path):
    source = _checkpoint(tmp_path)
    ckpt = Checkpointer(source)
    model = ckpt.adapter.build_from_hf_config(
        ckpt.hf_config, num_layers=1, embed_dim=32, num_heads=2
    )
    with pytest.raises(tunesmith.CheckpointError) as err:
        load_model_weights(model, ckpt.load_state_dict())
    message = str(err.value)
    assert "layers.0.attn.q_proj.weight: checkpoint [64, 64] vs model [32, 32]" in message
    assert "unexpected key(s) in the checkpoint (layers.1." in message
    assert "model: {_component_: auto}" in message


def _meta_checkpoint(directory, source):
    """Write ``source`` (a tiny llama2 HF dir) in Meta's layout: Meta names,
    interleaved q/k rows, params.json."""
    from tunesmith_llama._convert import META_TO_NATIVE

    adapter = tunesmith.get_registry().get("checkpoint_adapters", "llama")
    native = remap_keys(load_hf_state_dict(source), adapter.hf_to_native)

    def interleave(weight, heads):  # inverse of the adapter's rotate-half permutation
        out, inp = weight.shape
        return weight.view(heads, 2, out // heads // 2, inp).transpose(1, 2).reshape(out, inp)

    for key in list(native):
        if key.endswith("attn.q_proj.weight") or key.endswith("attn.k_proj.weight"):
            native[key] = interleave(native[key], 4)
    meta = remap_keys(native, {v: k for k, v in META_TO_NATIVE.items()})
    directory.mkdir()
    torch.save(meta, directory / "consolidated.00.pth")
    params = {
        "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "vocab_size": VOCAB,
        "multiple_of": 64, "ffn_dim_multiplier": None, "norm_eps": 1e-5,
        "rope_theta": 10_000.0, "max_seq_len": 256,
    }  # fmt: skip
    (directory / "params.json").write_text(json.dumps(params))
    (directory / "tokenizer.model").write_bytes(b"not read here")


def test_convert_meta_checkpoint_for_transformers(tmp_path):
    # intermediate 192 is what Meta's rule derives for dim 64 / multiple_of 64.
    source = _checkpoint(tmp_path / "hf", variant="llama2", intermediate_size=192)
    _meta_checkpoint(tmp_path / "meta", source)
    ckpt = Checkpointer(tmp_path / "meta")
    assert ckpt.format == "meta" and ckpt.adapter.family == "llama"

    converted = convert_checkpoint(
        tmp_path / "meta", tmp_path / "converted", max_shard_size="100KB"
    )
    assert (converted / "model.safetensors.index.json").is_file()
    assert (converted / "tokenizer.model").is_file() and not (converted / "params.json").exists()
    _same_tensors(load_hf_state_dict(converted), load_hf_state_dict(source))
    torch.testing.assert_close(_hf_logits(converted), _hf_logits(source), atol=1e-5, rtol=1e-4)


# ---- PEFT adapters ---------------------------------------------------------------


def _trained_adapter(source, directory):
    """Apply LoRA with non-zero B, save it in PEFT format; returns the adapted logits."""
    lora = tunesmith.get_registry().get("peft_methods", "lora")
    ckpt = Checkpointer(source)
    model = ckpt.build_model()
    load_model_weights(model, ckpt.load_state_dict())
    transform = lora.builder(
        lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8
    )
    transform.apply(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in transform.trainable_params(model).values():
            param.normal_(0, 0.05)
    transform.save_adapter(
        model, directory, adapter=ckpt.adapter, base_model_name_or_path=str(source)
    )
    return _logits(model.eval())


def test_load_pretrained_with_adapter_and_merge(tmp_path):
    pytest.importorskip("tunesmith_lora")
    source = _checkpoint(tmp_path / "base")
    expected = _trained_adapter(source, tmp_path / "adapter")
    base, _ = tunesmith.load_pretrained(source)
    assert not torch.allclose(_logits(base), expected, atol=1e-3)

    adapted, _ = tunesmith.load_pretrained(source, adapter=tmp_path / "adapter")
    torch.testing.assert_close(_logits(adapted), expected, atol=1e-5, rtol=1e-4)

    from tunesmith._pretrained import merge_adapter

    merged = merge_adapter(
        source, tmp_path / "adapter", tmp_path / "merged", max_shard_size="100KB"
    )
    assert sorted(p.name for p in merged.iterdir() if not p.name.startswith("model")) == [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    merged_model, _ = tunesmith.load_pretrained(merged)
    torch.testing.assert_close(_logits(merged_model), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(_hf_logits(merged), expected, atol=1e-5, rtol=1e-4)


def test_adapter_needs_the_lora_plugin(tmp_path, monkeypatch):
    source = _checkpoint(tmp_path / "base")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama")
    reset_registry()
    with pytest.raises(
        TunesmithError,
        match="no installed PEFT method loads the adapter in .*, of peft_type 'LORA' "
        ".installed: none.: install the plugin that wrote it, e.g. pip install tunesmith-lora",
    ):
        tunesmith.load_pretrained(source, adapter=tmp_path / "adapter")
    assert set(os.listdir(tmp_path)) == {"base", "adapter"}


def _declared_and_stored(directory) -> tuple[str, set]:
    config = json.loads((directory / "config.json").read_text())
    return config["dtype"], {t.dtype for t in load_hf_state_dict(directory).values()}


def test_written_weights_are_the_dtype_config_json_declares(tmp_path):
    """A cast (convert --dtype, merge-adapter --dtype) and a Meta checkpoint's own dtype
    are what config.json declares, so transformers' dtype="auto" loads them as written
    (config.json said float32 over bf16 tensors, and always bfloat16 for Meta files)."""
    from tunesmith._pretrained import merge_adapter

    source = _checkpoint(tmp_path / "hf", variant="llama2", intermediate_size=192)
    _meta_checkpoint(tmp_path / "meta", source)
    meta = convert_checkpoint(tmp_path / "meta", tmp_path / "from_meta")
    assert _declared_and_stored(meta) == ("float32", {torch.float32})
    assert json.loads((meta / "config.json").read_text())["torch_dtype"] == "float32"
    cast = convert_checkpoint(source, tmp_path / "bf16", dtype="bf16")
    assert _declared_and_stored(cast) == ("bfloat16", {torch.bfloat16})
    auto = transformers.AutoModelForCausalLM.from_pretrained(cast, dtype="auto")
    assert auto.dtype == torch.bfloat16
    _trained_adapter(source, tmp_path / "adapter")
    merged = merge_adapter(source, tmp_path / "adapter", tmp_path / "merged", dtype="fp16")
    assert _declared_and_stored(merged) == ("float16", {torch.float16})


def test_force_never_replaces_a_directory_that_holds_an_input(tmp_path):
    """merge-adapter W/base W/adapter W --force would have deleted the base and the
    adapter (replacing W); it is refused, and they stay."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    source = _checkpoint(tmp_path / "work" / "base")
    _trained_adapter(source, tmp_path / "work" / "adapter")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args in (
        ["merge-adapter", str(source), str(tmp_path / "work" / "adapter"), str(tmp_path)],
        ["convert", str(source), str(tmp_path / "work")],
    ):
        result = CliRunner().invoke(cli, [*args, "--force"])
        assert result.exit_code == 1
        assert "which replacing it would delete: choose a new output directory" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
