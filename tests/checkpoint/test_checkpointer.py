"""Checkpointer: format detection, adapter lookup, the output layout, training state."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tunesmith import CheckpointError
from tunesmith.checkpoint import (
    Checkpointer,
    convert_checkpoint,
    load_hf_state_dict,
    load_model_weights,
    save_hf_state_dict,
)

from .ckpt_fakes import CONFIG, write_fake_hf, write_fake_meta


def _equal(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


# ---- detection --------------------------------------------------------------


def test_missing_dir(tmp_path, fake_registry):
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint directory .*nope does not exist: point checkpointer.checkpoint_dir",
    ):
        Checkpointer(tmp_path / "nope", tmp_path / "out")


def test_empty_dir(tmp_path, fake_registry):
    with pytest.raises(CheckpointError) as err:
        Checkpointer(tmp_path)
    assert str(err.value).startswith(
        f"{tmp_path} is not a checkpoint directory: it holds nothing (it is empty); expected "
        "a Hugging Face model (config.json + model*.safetensors) or a Meta checkpoint "
        "(consolidated.00.pth + params.json)"
    )


def test_neither_format_lists_contents(tmp_path, fake_registry):
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    with pytest.raises(CheckpointError, match=r"it holds sub/, weights.npz; expected"):
        Checkpointer(tmp_path)


def test_points_at_original(tmp_path, fake_registry):
    write_fake_meta(tmp_path / "original")
    with pytest.raises(
        CheckpointError, match=r"its original/ holds a Meta checkpoint: use .*original\)"
    ):
        Checkpointer(tmp_path)


def test_config_without_weights(tmp_path, fake_registry):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(CheckpointError, match=rf"^no weights in {tmp_path}"):
        Checkpointer(tmp_path)


def test_unknown_model_type(tmp_path, fake_registry):
    write_fake_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, "model_type": "qwen2"}))
    with pytest.raises(CheckpointError) as err:
        Checkpointer(tmp_path)
    assert str(err.value) == (
        f"no installed plugin reads model_type 'qwen2' (config.json in {tmp_path}); installed "
        "checkpoint families: fake — install the family's plugin (`pip install tunesmith-qwen`), "
        "or set checkpointer.model_type to one of the installed families if the architecture "
        "is the same"
    )


def test_model_type_override(tmp_path, fake_registry):
    write_fake_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, "model_type": "fake_v2"}))
    assert Checkpointer(tmp_path, model_type="FAKE_V2").adapter.family == "fake"  # an alias
    assert Checkpointer(tmp_path, model_type="fakelm").adapter.family == "fake"
    assert Checkpointer(tmp_path, model_type="Fake").adapter.family == "fake"


def test_model_types_match_exactly_never_by_prefix(tmp_path, fake_registry):
    write_fake_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, "model_type": "fake2"}))
    with pytest.raises(CheckpointError, match="no installed plugin reads model_type 'fake2'"):
        Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="model_type 'FAKE_V3'"):
        Checkpointer(tmp_path, model_type="FAKE_V3")


def test_config_without_model_type(tmp_path, fake_registry):
    write_fake_hf(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="names no model_type: set checkpointer.model_type"):
        Checkpointer(tmp_path)


# ---- HF ---------------------------------------------------------------------


def test_hf_load(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path / "ckpt")
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    assert ckpt.format == "hf"
    assert ckpt.adapter.family == "fake"
    assert ckpt.hf_config["hidden_size"] == 8
    state = ckpt.load_state_dict()
    _equal(state, native)
    model = ckpt.build_model()
    load_model_weights(model, state)
    assert torch.equal(model.layers[1].attn.q_proj.weight, native["layers.1.attn.q_proj.weight"])
    assert ckpt.build_model(layers=3).layers.__len__() == 3


def test_hf_rotary_buffers_are_ignored(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path)
    hf = load_hf_state_dict(tmp_path)
    hf["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(2)
    hf["model.rotary_emb_local.inv_freq"] = torch.ones(2)  # Gemma 3's local layers
    hf["model.rotary_emb.original_inv_freq"] = torch.ones(2)
    save_hf_state_dict(hf, tmp_path)
    _equal(Checkpointer(tmp_path).load_state_dict(), native)


def test_hf_unknown_keys(tmp_path, fake_registry):
    write_fake_hf(tmp_path)
    hf = load_hf_state_dict(tmp_path)
    hf["model.vision_tower.weight"] = torch.ones(2)
    save_hf_state_dict(hf, tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"1 key\(s\) in the checkpoint in .* have no known mapping \(model.vision_tower.weight\)",
    ):
        Checkpointer(tmp_path).load_state_dict()


def test_save_epoch_round_trip(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "original").mkdir()
    (tmp_path / "ckpt" / "original" / "tokenizer.model").write_bytes(b"tok")
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")

    def extra(directory):
        (directory / "adapter_config.json").write_text("{}")

    epoch_dir = ckpt.save_epoch(0, native, extra=extra, max_shard_size=1000)
    assert epoch_dir == tmp_path / "out" / "epoch_0"
    files = sorted(p.name for p in epoch_dir.iterdir())
    shards = [f for f in files if f.startswith("model-")]
    assert len(shards) > 1 and shards[-1].endswith(f"-of-{len(shards):05d}.safetensors")
    assert set(files) - set(shards) == {
        "adapter_config.json",
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "original",
        "tokenizer.json",
    }
    assert (epoch_dir / "original" / "tokenizer.model").read_bytes() == b"tok"
    # The source's config, declaring the dtype written (its weights are fp32, it says bf16).
    declared = {**CONFIG, "torch_dtype": "float32", "dtype": "float32"}
    assert json.loads((epoch_dir / "config.json").read_text()) == declared
    # HF names on disk, same tensors back through a new checkpointer.
    assert "model.layers.0.self_attn.q_proj.weight" in load_hf_state_dict(epoch_dir)
    _equal(Checkpointer(epoch_dir).load_state_dict(), native)
    assert os.listdir(tmp_path / "out") == ["epoch_0"]


def test_save_epoch_declares_the_dtype_it_writes_so_transformers_loads_that(
    tmp_path, fake_registry
):
    native = write_fake_hf(tmp_path / "ckpt")  # fp32 weights under "torch_dtype": "bfloat16"
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    for dtype, name in ((None, "float32"), ("bf16", "bfloat16")):
        config = json.loads((ckpt.save_epoch(0, native, dtype=dtype) / "config.json").read_text())
        assert (config["dtype"], config["torch_dtype"]) == (name, name)
    assert {t.dtype for t in load_hf_state_dict(tmp_path / "out" / "epoch_0").values()} == {
        torch.bfloat16
    }
    # An adapter-only save leaves the base's config as it was.
    config = json.loads((ckpt.save_epoch(1, None) / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16" and "dtype" not in config


def test_save_epoch_replaces_and_failure_keeps_old(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path / "ckpt")
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    ckpt.save_epoch(1, native)
    changed = {k: v + 1 for k, v in native.items()}
    ckpt.save_epoch(1, changed)
    _equal(Checkpointer(tmp_path / "out" / "epoch_1").load_state_dict(), changed)

    def crash(directory):
        raise RuntimeError("killed while writing the adapter")

    with pytest.raises(RuntimeError):
        ckpt.save_epoch(1, native, extra=crash)
    with pytest.raises(RuntimeError):
        ckpt.save_epoch(2, native, extra=crash)
    assert os.listdir(tmp_path / "out") == ["epoch_1"]
    _equal(Checkpointer(tmp_path / "out" / "epoch_1").load_state_dict(), changed)


def test_save_epoch_with_output_dir_inside_checkpoint_dir(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path)
    ckpt = Checkpointer(tmp_path, tmp_path / "out")
    ckpt.save_epoch(0, native)
    ckpt.save_epoch(1, native)
    assert not (tmp_path / "out" / "epoch_1" / "out").exists()


def test_save_epoch_tied_writes_no_lm_head(tmp_path, fake_registry):
    write_fake_hf(tmp_path / "ckpt", tied=True)
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    model = ckpt.build_model()
    load_model_weights(model, ckpt.load_state_dict())
    state = model.state_dict()  # holds output.weight as an alias of the embedding
    assert "output.weight" in state
    epoch_dir = ckpt.save_epoch(0, {k: v for k, v in state.items() if not k.endswith(".cache")})
    assert "lm_head.weight" not in load_hf_state_dict(epoch_dir)


def test_save_epoch_refuses_unmergeable_keys(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path / "ckpt")
    native["layers.0.attn.q_proj.lora_a.weight"] = torch.zeros(2, 8)
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    with pytest.raises(
        CheckpointError, match="merge PEFT adapters into the base weights before saving"
    ):
        ckpt.save_epoch(0, native)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_save_without_output_dir(tmp_path, fake_registry):
    native = write_fake_hf(tmp_path)
    with pytest.raises(CheckpointError, match="no output_dir: set checkpointer.output_dir"):
        Checkpointer(tmp_path).save_epoch(0, native)


# ---- Meta -------------------------------------------------------------------


def test_meta_source(tmp_path, fake_registry):
    native, params = write_fake_meta(tmp_path / "meta")
    ckpt = Checkpointer(tmp_path / "meta", tmp_path / "out")
    assert ckpt.format == "meta"
    assert ckpt.meta_params == params
    assert ckpt.hf_config["hidden_size"] == 8
    _equal(ckpt.load_state_dict(), native)
    epoch_dir = ckpt.save_epoch(0, native)
    assert sorted(os.listdir(epoch_dir)) == ["config.json", "model.safetensors", "tokenizer.model"]
    assert json.loads((epoch_dir / "config.json").read_text())["model_type"] == "fakelm"
    _equal(Checkpointer(epoch_dir).load_state_dict(), native)


def test_meta_with_explicit_files(tmp_path, fake_registry):
    write_fake_meta(tmp_path)
    assert Checkpointer(tmp_path, checkpoint_files=["consolidated.00.pth"]).format == "meta"


def test_meta_needs_model_type_when_ambiguous(tmp_path):
    from tunesmith import hookimpl
    from tunesmith.registry import load_registry, reset_registry

    from .ckpt_fakes import FAKE_ADAPTER, FakePlugin

    class Other:
        @hookimpl
        def register_checkpoint_adapters(self, register):
            register(
                type(FAKE_ADAPTER)(
                    **{**FAKE_ADAPTER.__dict__, "family": "other", "model_types": ("o",)}
                )
            )

    write_fake_meta(tmp_path)
    reset_registry(
        load_registry(
            builtins=False, entry_points=False, extra={"fake": FakePlugin(), "other": Other()}
        )
    )
    try:
        with pytest.raises(
            CheckpointError,
            match=r"read Meta checkpoints are: fake, other — set checkpointer.model_type",
        ):
            Checkpointer(tmp_path)
        assert Checkpointer(tmp_path, model_type="other").adapter.family == "other"
    finally:
        reset_registry(None)


# ---- convert ------------------------------------------------------------------


def test_convert_meta_to_hf(tmp_path, fake_registry):
    native, _ = write_fake_meta(tmp_path / "meta")
    dst = convert_checkpoint(tmp_path / "meta", tmp_path / "hf", max_shard_size=600)
    assert (dst / "model.safetensors.index.json").is_file()
    assert (dst / "tokenizer.model").is_file() and not (dst / "params.json").exists()
    _equal(Checkpointer(dst).load_state_dict(), native)


def test_convert_hf_reshards_and_casts(tmp_path, fake_registry):
    write_fake_hf(tmp_path / "a")
    dst = convert_checkpoint(tmp_path / "a", tmp_path / "b", max_shard_size="1KB", dtype="bf16")
    assert len(list(dst.glob("model-*.safetensors"))) > 1
    assert {"config.json", "tokenizer.json", "generation_config.json"} <= set(os.listdir(dst))
    source = load_hf_state_dict(tmp_path / "a")
    converted = load_hf_state_dict(dst)
    _equal(converted, {k: v.bfloat16() for k, v in source.items()})


# ---- training state -------------------------------------------------------------


def test_training_state_round_trip(tmp_path, fake_registry):
    write_fake_hf(tmp_path / "ckpt")
    ckpt = Checkpointer(tmp_path / "ckpt", tmp_path / "out")
    with pytest.raises(CheckpointError) as err:
        ckpt.load_training_state()
    assert str(err.value) == (
        f"no training state in {tmp_path / 'out'} (expected "
        f"{tmp_path / 'out' / 'recipe_state' / 'recipe_state.pt'}): run without "
        "resume_from_checkpoint or point output_dir at the interrupted run"
    )
    import random

    state = {
        "epoch": 1,
        "step": 7,
        "optimizer": {"state": {0: {"exp_avg": torch.randn(3)}}, "param_groups": [{"lr": 1e-3}]},
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    path = ckpt.save_training_state(state)
    assert path == tmp_path / "out" / "recipe_state" / "recipe_state.pt"
    loaded = ckpt.load_training_state()
    assert loaded["step"] == 7 and loaded["rng"]["python"] == state["rng"]["python"]
    assert torch.equal(
        loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"]
    )
    ckpt.save_training_state({"step": 8})
    assert ckpt.load_training_state() == {"step": 8}
    assert os.listdir(path.parent) == ["recipe_state.pt"]
