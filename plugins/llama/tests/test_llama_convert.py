"""Reading config.json variants and Meta consolidated checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith import CheckpointError
from tunesmith.checkpoint import remap_keys
from tunesmith_llama import (
    build_from_hf_config,
    hf_config_from_meta_params,
    permute_meta_qk,
    tiny_llama_config,
    write_tiny_llama_checkpoint,
)
from tunesmith_llama._convert import (
    META_TO_NATIVE,
    llama_args_from_hf_config,
    llama_args_from_meta_params,
)


def _transformers4_style(config: dict) -> dict:
    """The same config as transformers 4 wrote it: top-level rope keys, torch_dtype."""
    old = {k: v for k, v in config.items() if k not in ("rope_parameters", "dtype")}
    rope = dict(config["rope_parameters"])
    old["rope_theta"] = rope.pop("rope_theta")
    old["rope_scaling"] = None if rope["rope_type"] == "default" else rope
    old["torch_dtype"] = "bfloat16"
    return old


@pytest.mark.parametrize("variant", ["llama2", "llama3_1", "llama3_2"])
def test_transformers4_and_5_configs_give_the_same_model(variant):
    new = tiny_llama_config(variant)
    assert llama_args_from_hf_config(_transformers4_style(new)) == llama_args_from_hf_config(new)


def test_config_values_are_read():
    args = llama_args_from_hf_config(_transformers4_style(tiny_llama_config("llama3_1")))
    assert args["rope_base"] == 500_000.0
    assert args["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    assert (args["num_kv_heads"], args["head_dim"], args["tie_word_embeddings"]) == (2, 16, False)


def test_legacy_rope_scaling_spelled_type():
    config = {k: v for k, v in tiny_llama_config("llama2").items() if k != "rope_parameters"}
    config.update(rope_theta=10_000.0, rope_scaling={"type": "linear", "factor": 4.0})
    assert llama_args_from_hf_config(config)["rope_scaling"] == {
        "rope_type": "linear",
        "factor": 4.0,
    }


def test_dtype_auto_reads_either_key():
    config = tiny_llama_config("llama2")
    assert (
        build_from_hf_config({**config, "dtype": "bfloat16"}, dtype="auto").norm.weight.dtype
        == torch.bfloat16
    )
    old = _transformers4_style(config)
    assert build_from_hf_config(old, dtype="auto").norm.weight.dtype == torch.bfloat16
    assert build_from_hf_config(old).norm.weight.dtype == torch.float32  # default: torch's


def test_overrides_replace_config_values():
    model = build_from_hf_config(tiny_llama_config("llama2"), max_seq_len=32, num_layers=1)
    assert (model.max_seq_len, len(model.layers)) == (32, 1)


def test_unsupported_rope_type_is_a_clear_error():
    config = tiny_llama_config(
        "llama2", rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 4.0}
    )
    with pytest.raises(CheckpointError, match="RoPE scaling 'dynamic'.*rope_scaling=null"):
        build_from_hf_config(config)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(CheckpointError, match="hidden_act='swish2'.*it knows silu"):
        build_from_hf_config(tiny_llama_config("llama2", hidden_act="swish2"))


def test_missing_key_is_a_clear_error():
    config = tiny_llama_config("llama2")
    del config["hidden_size"]
    with pytest.raises(CheckpointError, match="no 'hidden_size'.*checkpoint_dir"):
        build_from_hf_config(config)


# ------------------------------------------------------------------- Meta ---


def _unpermute(weight, num_heads):
    """HF rotate-half rows -> Meta interleaved rows (the inverse of permute_meta_qk)."""
    out_dim, in_dim = weight.shape
    return (
        weight.view(num_heads, 2, out_dim // num_heads // 2, in_dim)
        .transpose(1, 2)
        .reshape(out_dim, in_dim)
    )


def test_permutation_round_trips():
    weight = torch.randn(4 * 16, 8)
    assert torch.equal(permute_meta_qk(_unpermute(weight, 4), 4), weight)
    # Interleaved pair (0, 1) of head 0 becomes rotate-half pair (0, 8).
    assert torch.equal(permute_meta_qk(weight, 4)[[0, 8]], weight[[0, 1]])


@pytest.mark.parametrize("variant", ["llama2", "llama3_1", "llama3_2"])
def test_meta_checkpoint_gives_the_same_logits(tmp_path, load_native, llama_registry, variant):
    # A tiny config that a Meta params.json can describe: intermediate 192 is Meta's
    # rule for dim 64, and Meta's code fixes the original context of llama3 RoPE at 8192.
    rope = tiny_llama_config(variant)["rope_parameters"]
    if rope["rope_type"] == "llama3":
        rope["original_max_position_embeddings"] = 8192
    directory = write_tiny_llama_checkpoint(
        tmp_path, variant=variant, intermediate_size=192, rope_parameters=rope
    )
    config = json.loads((directory / "config.json").read_text())
    reference = load_native(directory)
    params = {
        "dim": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": config["num_key_value_heads"],
        "vocab_size": 512,
        "multiple_of": 64,
        "ffn_dim_multiplier": None,
        "norm_eps": 1e-5,
        "rope_theta": rope["rope_theta"],
        "max_seq_len": 256,
    }
    if rope["rope_type"] == "llama3":
        params.update(use_scaled_rope=True, rope_scaling_factor=rope["factor"])
    adapter = llama_registry.get("checkpoint_adapters", "llama")
    # Meta layout: Meta names, interleaved q/k rows, an output head even when tied.
    native = remap_keys(load_file(directory / "model.safetensors"), adapter.hf_to_native)
    native.setdefault("output.weight", native["tok_embeddings.weight"])
    for key in list(native):
        if key.endswith("q_proj.weight"):
            native[key] = _unpermute(native[key], 4)
        elif key.endswith("k_proj.weight"):
            native[key] = _unpermute(native[key], params["n_kv_heads"])
    meta = remap_keys(native, {v: k for k, v in META_TO_NATIVE.items()})
    meta["rope.freqs"] = torch.zeros(8)  # Llama 2 files carry this buffer

    # Real params.json files leave these to a guess from the width; a tiny model states them.
    params["tie_word_embeddings"] = config["tie_word_embeddings"]
    model = adapter.build_from_meta_params(params)
    model.load_state_dict(adapter.meta_to_native(meta, params), strict=True)
    assert (
        model.layers[0].attn.pos_embeddings.scaling
        == reference.layers[0].attn.pos_embeddings.scaling
    )
    tokens = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), reference(tokens), atol=1e-5, rtol=0)


def test_real_meta_params_json_values():
    llama3_1_8b = {
        "dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256,
        "multiple_of": 1024, "ffn_dim_multiplier": 1.3, "norm_eps": 1e-05, "rope_theta": 500000.0,
        "use_scaled_rope": True,
    }  # fmt: skip
    args = llama_args_from_meta_params(llama3_1_8b)
    assert (args["intermediate_dim"], args["max_seq_len"], args["tie_word_embeddings"]) == (
        14_336,
        131_072,
        False,
    )
    assert args["rope_scaling"]["factor"] == 8.0
    llama3_2_1b = {
        "dim": 2048, "n_layers": 16, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256,
        "multiple_of": 256, "ffn_dim_multiplier": 1.5, "norm_eps": 1e-05, "rope_theta": 500000.0,
        "use_scaled_rope": True,
    }  # fmt: skip
    args = llama_args_from_meta_params(llama3_2_1b)
    assert (
        args["intermediate_dim"],
        args["tie_word_embeddings"],
        args["rope_scaling"]["factor"],
    ) == (8192, True, 32.0)
    llama2_7b = {
        "dim": 4096,
        "multiple_of": 256,
        "n_heads": 32,
        "n_layers": 32,
        "norm_eps": 1e-05,
        "vocab_size": -1,
    }
    args = llama_args_from_meta_params(llama2_7b)
    assert (
        args["intermediate_dim"],
        args["vocab_size"],
        args["max_seq_len"],
        args["rope_scaling"],
    ) == (
        11_008,
        32_000,
        4096,
        None,
    )


def test_hf_config_from_meta_params_loads_in_transformers():
    transformers = pytest.importorskip("transformers")
    params = {
        "dim": 2048, "n_layers": 16, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256,
        "multiple_of": 256, "ffn_dim_multiplier": 1.5, "norm_eps": 1e-05, "rope_theta": 500000.0,
        "use_scaled_rope": True,
    }  # fmt: skip
    config = hf_config_from_meta_params(params)
    assert llama_args_from_hf_config(config) == llama_args_from_meta_params(params) | {
        "head_dim": 64,
        "attention_bias": False,
        "mlp_bias": False,
        "activation": "silu",
    }
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    # 1.24B, as published; lm_head shares the embedding.
    assert sum(p.numel() for p in hf.parameters()) == 1_235_814_400
