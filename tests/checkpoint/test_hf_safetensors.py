"""HF safetensors: finding, reading and (sharded, streaming, atomic) writing."""

from __future__ import annotations

import json
import re
import weakref

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tunesmith import CheckpointError
from tunesmith.checkpoint import (
    _hf,
    find_hf_weight_files,
    load_hf_state_dict,
    parse_size,
    read_hf_config,
    save_hf_state_dict,
)


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(16, 8),  # 512 bytes
        "model.layers.0.self_attn.q_proj.weight": torch.randn(8, 8).bfloat16(),  # 128
        "model.layers.0.self_attn.k_proj.weight": torch.randn(8, 8).half(),  # 128
        "model.layers.0.mlp.up_proj.weight": torch.randn(12, 8),  # 384
        "model.layers.1.self_attn.q_proj.weight": torch.randn(8, 8).bfloat16(),  # 128
        "model.norm.weight": torch.ones(8),  # 32
        "model.position_ids": torch.arange(6),  # 48, int64
        "lm_head.weight": torch.randn(16, 8),  # 512
    }


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def test_sharded_round_trip(tmp_path):
    state = _state_dict()
    files = save_hf_state_dict(state, tmp_path, max_shard_size=600)
    names = [f.name for f in files]
    n = len(names)
    assert n == 4  # 512 | 128+128 | 384+128+32 (=544) +48 (=592) | 512
    assert names == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in state.values()
    )
    assert set(index["weight_map"]) == set(state)
    assert set(index["weight_map"].values()) == set(names)
    for name in names:
        with safe_open(tmp_path / name, "pt") as f:
            assert f.metadata() == {"format": "pt"}
            assert {k for k, v in index["weight_map"].items() if v == name} == set(f.keys())
            assert sum(f.get_tensor(k).nbytes for k in f.keys()) <= 600
    assert not (tmp_path / "model.safetensors").exists()
    assert find_hf_weight_files(tmp_path) == files
    _assert_same(load_hf_state_dict(tmp_path), state)


def test_single_file_needs_no_index(tmp_path):
    state = _state_dict()
    files = save_hf_state_dict(state, tmp_path)  # default 5GB
    assert [f.name for f in files] == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    _assert_same(load_file(tmp_path / "model.safetensors"), state)


def test_oversized_tensor_gets_its_own_shard(tmp_path):
    state = {"a": torch.zeros(4), "big": torch.zeros(100), "b": torch.zeros(4)}
    save_hf_state_dict(state, tmp_path, max_shard_size="100B")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {
        "a": "model-00001-of-00003.safetensors",
        "big": "model-00002-of-00003.safetensors",
        "b": "model-00003-of-00003.safetensors",
    }


def test_dtype_casts_floats_only(tmp_path):
    state = _state_dict()
    save_hf_state_dict(state, tmp_path, dtype="bf16", metadata={"written_by": "test"})
    loaded = load_hf_state_dict(tmp_path)
    assert loaded["model.position_ids"].dtype == torch.int64
    assert {v.dtype for k, v in loaded.items() if k != "model.position_ids"} == {torch.bfloat16}
    assert torch.equal(loaded["lm_head.weight"], state["lm_head.weight"].bfloat16())
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt", "written_by": "test"}
    # The caller's tensors are untouched.
    assert state["lm_head.weight"].dtype == torch.float32


def test_tensors_sharing_memory_are_saved(tmp_path):
    fused = torch.randn(6, 4)
    embedding = torch.randn(5, 4)
    state = {"q": fused[:3], "k": fused[3:], "embed": embedding, "lm_head": embedding}
    save_hf_state_dict(state, tmp_path)
    _assert_same(load_hf_state_dict(tmp_path), state)


def test_a_new_save_removes_the_previous_weights(tmp_path):
    save_hf_state_dict(_state_dict(), tmp_path, max_shard_size=600)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    save_hf_state_dict({"x": torch.ones(2)}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_model.safetensors",
        "config.json",
        "model.safetensors",
    ]


def test_save_streams_one_shard_at_a_time(tmp_path, monkeypatch):
    """Only one shard's converted tensors are alive while it is written."""
    state = {f"w{i}": torch.randn(64, 64) for i in range(6)}  # 16 KiB each in fp32
    calls: list[dict] = []
    real_save = _hf.save_file

    def spy(tensors, filename, metadata=None):
        alive_from_earlier = [
            key for call in calls for key, ref in call["refs"].items() if ref() is not None
        ]
        calls.append(
            {
                "keys": list(tensors),
                "refs": {k: weakref.ref(t) for k, t in tensors.items()},
                "earlier_alive": alive_from_earlier,
                "filename": filename,
            }
        )
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(_hf, "save_file", spy)
    # bf16 cast: every written tensor is a fresh copy, so copies that outlive their
    # shard would show up as live weak references.
    save_hf_state_dict(state, tmp_path, max_shard_size=2 * 64 * 64 * 2, dtype=torch.bfloat16)
    assert [c["keys"] for c in calls] == [["w0", "w1"], ["w2", "w3"], ["w4", "w5"]]
    assert all(c["earlier_alive"] == [] for c in calls)
    for i, call in enumerate(calls, start=1):
        # Written under a hidden temporary name in the same directory, then renamed.
        path = tmp_path / call["filename"]
        assert path.parent == tmp_path
        assert path.name.startswith(f".model-{i:05d}-of-00003.safetensors.tmp-")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(_hf, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_hf_state_dict(_state_dict(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_rejects_non_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="'step' is a int, not a tensor"):
        save_hf_state_dict({"step": 3}, tmp_path)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1024, 1024),
        ("5GB", 5 * 10**9),
        ("500MB", 5 * 10**8),
        ("2GiB", 2 * 2**30),
        ("10kb", 10_000),
        ("1.5GB", 1_500_000_000),
        ("77", 77),
    ],
)
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["5 gigs", "-1", 0, "GB"])
def test_parse_size_rejects(size):
    with pytest.raises(CheckpointError, match="max_shard_size"):
        parse_size(size)


def test_transformers_loads_what_we_shard(tmp_path):
    """A transformers model saved by save_hf_state_dict (several shards) loads back."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    config.save_pretrained(tmp_path)
    save_hf_state_dict(model.state_dict(), tmp_path, max_shard_size="4KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    tokens = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)


# ---- finding files --------------------------------------------------------


def test_find_uses_the_index(tmp_path):
    for name in ("model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"):
        save_file({name[:11]: torch.zeros(1)}, str(tmp_path / name))
    save_file({"stray": torch.zeros(1)}, str(tmp_path / "consolidated.safetensors"))
    index = {
        "weight_map": {
            "b": "model-00002-of-00002.safetensors",
            "a": "model-00001-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [p.name for p in find_hf_weight_files(tmp_path)] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]


def test_find_globs_sorted_without_peft_adapter(tmp_path):
    for name in ("b.safetensors", "a.safetensors", "adapter_model.safetensors"):
        save_file({name: torch.zeros(1)}, str(tmp_path / name))
    assert [p.name for p in find_hf_weight_files(tmp_path)] == ["a.safetensors", "b.safetensors"]


def test_find_index_naming_missing_shard(tmp_path):
    save_file({"a": torch.zeros(1)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as err:
        find_hf_weight_files(tmp_path)
    message = str(err.value)
    assert "1 weight file(s) named by model.safetensors.index.json are missing" in message
    assert "model-00002-of-00002.safetensors" in message
    assert "download again" in message


def test_find_explicit_files(tmp_path):
    save_file({"a": torch.zeros(1)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(1)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    save_file({"c": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    explicit = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert [p.name for p in find_hf_weight_files(tmp_path, explicit)] == explicit
    torchtune_style = {"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00002"}
    assert [p.name for p in find_hf_weight_files(tmp_path, torchtune_style)] == explicit
    assert set(load_hf_state_dict(tmp_path, explicit)) == {"a", "b"}
    with pytest.raises(
        CheckpointError,
        match=r"named by checkpointer.checkpoint_files are missing .*\(nope.safetensors\)",
    ):
        find_hf_weight_files(tmp_path, ["nope.safetensors"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(
        CheckpointError,
        match="notes.txt in checkpointer.checkpoint_files is not a Hugging Face weight file",
    ):
        find_hf_weight_files(tmp_path, ["notes.txt"])


def test_find_no_weights_lists_the_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("")
    with pytest.raises(CheckpointError) as err:
        find_hf_weight_files(tmp_path)
    message = str(err.value)
    assert message.startswith(f"no weights in {tmp_path}: expected model.safetensors")
    assert "README.md, config.json" in message


def test_adapter_only_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"a": torch.zeros(1)}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        find_hf_weight_files(tmp_path)
    message = str(err.value)
    assert f"{tmp_path} holds only a PEFT adapter (adapter_model.safetensors)" in message
    assert f"pass it as adapter={tmp_path} with its base as checkpointer.checkpoint_dir=" in message
    assert "tunesmith merge-adapter" in message


def test_missing_directory(tmp_path):
    with pytest.raises(
        CheckpointError,
        match=rf"checkpoint directory {re.escape(str(tmp_path / 'nope'))} does not exist: point checkpointer.checkpoint_dir",
    ):
        load_hf_state_dict(tmp_path / "nope")


def test_pytorch_bin_fallback(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "training_args.bin").write_bytes(b"junk")
    assert torch.equal(load_hf_state_dict(tmp_path)["w"], torch.arange(3.0))


def test_duplicate_key_across_files(tmp_path):
    save_file({"w": torch.zeros(1)}, str(tmp_path / "a.safetensors"))
    save_file({"w": torch.ones(1)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(
        CheckpointError, match="w is stored in both a.safetensors and b.safetensors"
    ):
        load_hf_state_dict(tmp_path)


def test_damaged_weight_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(
        CheckpointError, match=r"cannot read .*model.safetensors .*download the checkpoint again"
    ):
        load_hf_state_dict(tmp_path)


# ---- config.json ----------------------------------------------------------


def test_read_hf_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "vocab_size": 10}')
    assert read_hf_config(tmp_path) == {"model_type": "llama", "vocab_size": 10}


def test_read_hf_config_missing(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        read_hf_config(tmp_path)
    assert str(err.value) == (
        f"no config.json in {tmp_path} (it holds model.safetensors): point "
        "checkpointer.checkpoint_dir at a Hugging Face model directory, which has "
        "config.json beside its *.safetensors"
    )


def test_read_hf_config_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama",\n  oops}')
    with pytest.raises(CheckpointError) as err:
        read_hf_config(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'config.json'} is not valid JSON (")
    assert "line 2" in message and "download the checkpoint again" in message
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a JSON list, not an object"):
        read_hf_config(tmp_path)
