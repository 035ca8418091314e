"""Reading config.json files of transformers 4 and 5 with the shared helpers."""

from __future__ import annotations

import pytest
import torch

from tunesmith import CheckpointError
from tunesmith.checkpoint import HFDecoderConfig, hf_decoder_config, hf_rope_settings
from tunesmith.modules import ROPE_TYPES

transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def _transformers4(config: dict, *, spell_type: bool = False) -> dict:
    """The same config as transformers 4 wrote it: top-level rope keys, torch_dtype."""
    old = {k: v for k, v in config.items() if k not in ("rope_parameters", "dtype", "layer_types")}
    rope = dict(config["rope_parameters"])
    old["rope_theta"] = rope.pop("rope_theta")
    rope_type = rope.pop("rope_type")
    if "partial_rotary_factor" in rope:
        old["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    old["rope_scaling"] = (
        None
        if rope_type == "default"
        else {"type" if spell_type else "rope_type": rope_type, **rope}
    )
    old["torch_dtype"] = "bfloat16"
    return old


# ---- RoPE -------------------------------------------------------------------


@pytest.mark.parametrize("spell_type", [False, True], ids=["rope_type", "type"])
def test_rope_settings_read_both_layouts(spell_type):
    new = transformers.LlamaConfig(**TINY, rope_parameters=dict(LLAMA3)).to_dict()
    expected = (500_000.0, {k: v for k, v in LLAMA3.items() if k != "rope_theta"})
    assert hf_rope_settings(new) == expected
    assert hf_rope_settings(_transformers4(new, spell_type=spell_type)) == expected


def test_plain_rope_and_defaults():
    new = transformers.LlamaConfig(**TINY, rope_parameters={"rope_theta": 1e6}).to_dict()
    assert hf_rope_settings(new) == (1e6, None)
    assert hf_rope_settings(_transformers4(new)) == (1e6, None)
    assert hf_rope_settings({}) == (10_000.0, None)


def test_original_length_and_factor_completed_as_transformers_does():
    rope = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}
    # transformers 4 Qwen configs often leave original_max_position_embeddings out.
    old = {"max_position_embeddings": 64, "rope_theta": 1e6, "rope_scaling": rope}
    assert hf_rope_settings(old)[1] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    config = transformers.Qwen2Config(**TINY, rope_parameters=dict(rope)).to_dict()
    assert hf_rope_settings(config)[1] == hf_rope_settings(old)[1]


def test_phi3_longrope_config():
    rope = {
        "rope_type": "longrope",
        "rope_theta": 10_000.0,
        "partial_rotary_factor": 0.5,
        "short_factor": [1.0, 1.5],
        "long_factor": [2.0, 4.0],
    }
    new = transformers.Phi3Config(
        **TINY, original_max_position_embeddings=16, pad_token_id=0, rope_parameters=rope
    ).to_dict()
    theta, scaling = hf_rope_settings(new)
    # No factor in the file: max / original, as transformers computes it; the top-level
    # original length wins, and partial_rotary_factor is not a scaling setting.
    assert (theta, scaling) == (
        10_000.0,
        {
            "rope_type": "longrope",
            "short_factor": [1.0, 1.5],
            "long_factor": [2.0, 4.0],
            "original_max_position_embeddings": 16,
            "factor": 4.0,
        },
    )
    old = _transformers4(new)
    old["rope_scaling"]["original_max_position_embeddings"] = 4096  # stale; top level wins
    assert hf_rope_settings(old) == (theta, scaling)
    assert hf_decoder_config(old).partial_rotary_factor == 0.5  # read from the top level
    old["rope_scaling"]["rope_type"] = "su"  # Phi-3's old name
    with pytest.raises(CheckpointError, match="RoPE scaling 'su'"):
        hf_rope_settings(old)
    assert hf_rope_settings(old, aliases={"su": "longrope"}) == (theta, scaling)
    hf = hf_decoder_config(new)
    assert (hf.head_dim, hf.partial_rotary_factor, hf.rope_dim) == (8, 0.5, 4)


def test_rope_per_layer_type():
    config = transformers.Gemma3TextConfig(
        **TINY,
        head_dim=16,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0},
        },
    ).to_dict()
    with pytest.raises(CheckpointError, match="per layer type.*layer_type="):
        hf_rope_settings(config)
    assert hf_rope_settings(config, layer_type="sliding_attention") == (10_000.0, None)
    full = (1e6, {"rope_type": "linear", "factor": 8.0})
    assert hf_rope_settings(config, layer_type="full_attention") == full
    hf = hf_decoder_config(config)
    assert (hf.rope_base, hf.rope_scaling) == full  # the global layers' entry
    # A flat config serves every layer type.
    flat = {"rope_theta": 5.0, "rope_scaling": None}
    assert hf_rope_settings(flat, layer_type="sliding_attention") == (5.0, None)


def test_unknown_rope_type_names_the_supported_ones():
    config = {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}}
    with pytest.raises(CheckpointError, match="'dynamic'.*" + ", ".join(ROPE_TYPES)):
        hf_rope_settings(config)


# ---- the shared decoder fields ----------------------------------------------


def test_decoder_fields_of_a_llama_config_in_both_layouts():
    new = transformers.LlamaConfig(
        **TINY, rope_parameters=dict(LLAMA3), tie_word_embeddings=True, dtype="bfloat16"
    ).to_dict()
    hf = hf_decoder_config(new)
    assert hf == HFDecoderConfig(
        vocab_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        embed_dim=32,
        intermediate_dim=64,
        head_dim=8,
        max_seq_len=64,
        norm_eps=1e-6,
        rope_base=500_000.0,
        rope_scaling={k: v for k, v in LLAMA3.items() if k != "rope_theta"},
        partial_rotary_factor=1.0,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        sliding_window=None,
        layer_types=None,
        sliding_windows=(None,) * 4,
        dtype=torch.bfloat16,
    )
    assert hf_decoder_config(_transformers4(new)) == hf


def test_nulls_and_missing_optional_keys():
    config = dict(TINY, num_key_value_heads=None, head_dim=None)
    hf = hf_decoder_config(config)
    assert (hf.num_kv_heads, hf.head_dim, hf.dtype) == (4, 8, None)
    # transformers 4 left tie_word_embeddings out when it was true (its default)
    assert hf.tie_word_embeddings is True
    family = hf_decoder_config(config, defaults={"tie_word_embeddings": False, "head_dim": 16})
    assert family.tie_word_embeddings is False
    assert family.head_dim == 8  # an explicit null in the file beats the family default
    assert hf_decoder_config(dict(TINY, head_dim=12)).head_dim == 12  # independent of the width


@pytest.mark.parametrize("key", ["vocab_size", "hidden_size", "max_position_embeddings"])
def test_missing_required_key_names_it_and_the_fix(key):
    config = dict(TINY)
    del config[key]
    with pytest.raises(CheckpointError, match=f"no '{key}'.*checkpoint_dir"):
        hf_decoder_config(config)
    assert hf_decoder_config(config, defaults={key: 64}) is not None  # a family default fills it


def test_qwen2_sliding_window_only_when_enabled():
    off = transformers.Qwen2Config(**TINY, sliding_window=8, max_window_layers=2).to_dict()
    assert hf_decoder_config(off).sliding_windows == (None,) * 4  # use_sliding_window: false
    on = transformers.Qwen2Config(
        **TINY, use_sliding_window=True, sliding_window=8, max_window_layers=2
    ).to_dict()
    hf = hf_decoder_config(on)
    assert hf.layer_types == ("full_attention",) * 2 + ("sliding_attention",) * 2
    assert hf.sliding_windows == (None, None, 8, 8)
    # transformers 4 wrote no layer_types: max_window_layers decides the same way.
    assert hf_decoder_config(_transformers4(on)).sliding_windows == (None, None, 8, 8)


def test_mistral_window_covers_every_layer():
    config = transformers.MistralConfig(**TINY, sliding_window=8, head_dim=None).to_dict()
    hf = hf_decoder_config(config)
    assert (hf.sliding_window, hf.sliding_windows, hf.head_dim) == (8, (8,) * 4, 8)
    config["sliding_window"] = None  # Mistral v0.2+
    assert hf_decoder_config(config).sliding_windows == (None,) * 4


def test_gemma2_layer_types_and_a_family_default_for_old_files():
    new = transformers.Gemma2Config(**TINY, sliding_window=8).to_dict()
    hf = hf_decoder_config(new)
    assert hf.sliding_windows == (8, None, 8, None)
    old = _transformers4(new)  # transformers 4 wrote no layer_types: Gemma 2 alternates
    alternate = ["sliding_attention", "full_attention"] * 2
    assert hf_decoder_config(old, defaults={"layer_types": alternate}).sliding_windows == (
        hf.sliding_windows
    )


@pytest.mark.parametrize(
    ("layer_types", "match"),
    [
        (["full_attention", "chunked_attention"] * 2, "chunked_attention"),
        (["full_attention"] * 3, "3 layer_types for 4 layers"),
    ],
)
def test_bad_layer_types(layer_types, match):
    with pytest.raises(CheckpointError, match=match):
        hf_decoder_config(dict(TINY, layer_types=layer_types))
