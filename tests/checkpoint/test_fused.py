"""State-dict conversion through an adapter: fused tensors split and fuse exactly, key
tables rename, converters and passthrough tensors apply, bad sizes are one clear error."""

from __future__ import annotations

import pytest
import torch

from tunesmith import CheckpointAdapter, CheckpointError, FusedModule
from tunesmith.checkpoint import hf_to_native_state_dict, native_to_hf_state_dict

ADAPTER = CheckpointAdapter(
    family="toy",
    model_types=("toy",),
    hf_to_native={"model.layers.{}.o_proj.weight": "layers.{}.attn.output_proj.weight"},
    fused=(
        FusedModule(
            hf="model.layers.{}.qkv_proj",
            parts=("layers.{}.attn.q_proj", "layers.{}.attn.k_proj", "layers.{}.attn.v_proj"),
            sizes=lambda config: (config["q"], config["kv"], config["kv"]),
        ),
    ),
    passthrough=(r"^vision\.",),
    build_from_hf_config=dict,
)
CONFIG = {"q": 4, "kv": 2}


def _hf():
    g = torch.Generator().manual_seed(0)
    return {
        "model.layers.0.qkv_proj.weight": torch.randn(8, 3, generator=g),
        "model.layers.0.qkv_proj.bias": torch.randn(8, generator=g),
        "model.layers.0.o_proj.weight": torch.randn(3, 4, generator=g),
        "vision.patch.weight": torch.randn(2, 2, generator=g),
    }


def test_fused_tensors_split_and_fuse_back_exactly():
    hf = _hf()
    native = hf_to_native_state_dict(hf, ADAPTER, CONFIG)
    assert sorted(native) == [
        "layers.0.attn.k_proj.bias",
        "layers.0.attn.k_proj.weight",
        "layers.0.attn.output_proj.weight",
        "layers.0.attn.q_proj.bias",
        "layers.0.attn.q_proj.weight",
        "layers.0.attn.v_proj.bias",
        "layers.0.attn.v_proj.weight",
    ]  # fmt: skip  (the vision tensor is passed through, not loaded)
    assert torch.equal(
        native["layers.0.attn.k_proj.weight"], hf["model.layers.0.qkv_proj.weight"][4:6]
    )
    back = native_to_hf_state_dict(native, ADAPTER, CONFIG)
    assert sorted(back) == sorted(k for k in hf if not k.startswith("vision"))
    assert all(torch.equal(back[k], hf[k]) for k in back)


def test_module_paths_map_both_ways():
    assert ADAPTER.hf_module("layers.3.attn.k_proj") == ("model.layers.3.qkv_proj", 1)
    assert ADAPTER.hf_module("layers.3.attn.output_proj") == ("model.layers.3.o_proj", None)
    assert ADAPTER.native_modules("model.layers.3.qkv_proj") == (
        "layers.3.attn.q_proj", "layers.3.attn.k_proj", "layers.3.attn.v_proj",
    )  # fmt: skip
    assert ADAPTER.hf_module_name("v_proj") == "qkv_proj"
    with pytest.raises(KeyError):
        ADAPTER.hf_module("layers.0.mlp.w1")


def test_a_fused_tensor_that_does_not_match_the_config_is_one_error():
    with pytest.raises(
        CheckpointError,
        match=r"qkv_proj.weight has 8 rows but config.json "
        r"describes 4 \+ 3 \+ 3",
    ):
        hf_to_native_state_dict(_hf(), ADAPTER, {"q": 4, "kv": 3})


def test_a_missing_part_is_named_when_fusing():
    native = hf_to_native_state_dict(_hf(), ADAPTER, CONFIG)
    del native["layers.0.attn.v_proj.weight"]
    with pytest.raises(CheckpointError, match="layers.0.attn.v_proj.weight missing"):
        native_to_hf_state_dict(native, ADAPTER, CONFIG)


def test_converters_run_around_the_renames():
    import dataclasses

    def from_hf(sd, config):  # e.g. a checkpoint that stores o_proj transposed
        sd["model.layers.0.o_proj.weight"] = sd["model.layers.0.o_proj.weight"].T
        return sd

    def to_hf(sd, config):
        sd["model.layers.0.o_proj.weight"] = sd["model.layers.0.o_proj.weight"].T
        return sd

    adapter = dataclasses.replace(ADAPTER, convert_from_hf=from_hf, convert_to_hf=to_hf)
    hf = _hf()
    hf["model.layers.0.o_proj.weight"] = hf["model.layers.0.o_proj.weight"].T.contiguous()
    native = hf_to_native_state_dict(dict(hf), adapter, CONFIG)
    assert native["layers.0.attn.output_proj.weight"].shape == (3, 4)
    back = native_to_hf_state_dict(native, adapter, CONFIG)
    assert torch.equal(back["model.layers.0.o_proj.weight"], hf["model.layers.0.o_proj.weight"])
