"""RoPE frequency tables and rotations, against formulas and against transformers."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.checkpoint import hf_rope_settings
from tunesmith.modules import RotaryPositionalEmbeddings, rope_frequencies, rope_inverse_frequencies

LLAMA3_1 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def test_default_frequencies():
    inv = rope_inverse_frequencies(8, base=10_000.0)
    torch.testing.assert_close(inv, torch.tensor([1.0, 0.1, 0.01, 0.001]))


def test_linear_scaling_divides_every_frequency():
    plain = rope_inverse_frequencies(64, 10_000.0)
    torch.testing.assert_close(
        rope_inverse_frequencies(64, 10_000.0, {"rope_type": "linear", "factor": 4.0}), plain / 4
    )
    # transformers-4 configs spell the variant "type"
    torch.testing.assert_close(
        rope_inverse_frequencies(64, 10_000.0, {"type": "linear", "factor": 4.0}), plain / 4
    )


def test_llama3_scaling_table():
    plain = rope_inverse_frequencies(128, 500_000.0)
    scaled = rope_inverse_frequencies(128, 500_000.0, LLAMA3_1)
    wavelen = 2 * math.pi / plain
    short, long = wavelen < 8192 / 4, wavelen > 8192 / 1
    medium = ~short & ~long
    assert short.sum() > 0 and long.sum() > 0 and medium.sum() > 0
    torch.testing.assert_close(scaled[short], plain[short])  # fast rotations kept
    torch.testing.assert_close(scaled[long], plain[long] / 8)  # slow ones stretched 8x
    # In between, interpolated: smooth = (8192 / wavelen - 1) / (4 - 1)
    smooth = (8192 / wavelen[medium] - 1) / 3
    torch.testing.assert_close(
        scaled[medium], (1 - smooth) * plain[medium] / 8 + smooth * plain[medium]
    )
    ratio = plain[medium] / scaled[medium]
    assert ((ratio > 1) & (ratio < 8)).all()


def test_unknown_rope_type():
    with pytest.raises(ValueError, match="unsupported rope_type .dynamic.*longrope, yarn"):
        rope_inverse_frequencies(8, 1e4, {"rope_type": "dynamic", "factor": 2.0})


def test_rotation_is_rotate_half_and_preserves_norm():
    rope = RotaryPositionalEmbeddings(4, base=10_000.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)  # (b, s, h, d)
    out = rope(x, torch.tensor([[1]]))
    # pairs (x0, x2) rotate by 1 rad, (x1, x3) by 0.01 rad
    c0, s0, c1, s1 = math.cos(1), math.sin(1), math.cos(0.01), math.sin(0.01)
    expected = torch.tensor([1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1])
    torch.testing.assert_close(out.flatten(), expected)
    torch.testing.assert_close(out.norm(), x.norm())


def test_relative_positions_only_matter():
    rope = RotaryPositionalEmbeddings(16, base=10_000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    dot = lambda i, j: (rope(q, torch.tensor([[i]])) * rope(k, torch.tensor([[j]]))).sum()  # noqa: E731
    torch.testing.assert_close(dot(7, 3), dot(104, 100))


# ---- parity with transformers: frequency tables, cos/sin, cast order --------

HEAD_DIM = 16
ROPE_VARIANTS = {
    "default": ("LlamaConfig", {"rope_type": "default", "rope_theta": 10_000.0}),
    "linear": ("LlamaConfig", {"rope_type": "linear", "rope_theta": 10_000.0, "factor": 4.0}),
    "llama3": (
        "LlamaConfig",
        {**LLAMA3_1, "rope_theta": 500_000.0, "original_max_position_embeddings": 16},
    ),
    "yarn": (
        "Qwen2Config",
        {
            "rope_type": "yarn",
            "rope_theta": 1e6,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "yarn_mscale_untruncated": (
        "Qwen2Config",
        {
            "rope_type": "yarn",
            "rope_theta": 1e6,
            "factor": 8.0,
            "original_max_position_embeddings": 16,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
            "beta_fast": 16,
            "truncate": False,
        },
    ),
    "longrope": (
        "Phi3Config",
        {
            "rope_type": "longrope",
            "rope_theta": 10_000.0,
            "short_factor": [1.0 + 0.1 * i for i in range(HEAD_DIM // 2)],
            "long_factor": [1.0 + 2.0 * i for i in range(HEAD_DIM // 2)],
        },
    ),
}


def _hf_config(variant, **extra):
    transformers = pytest.importorskip("transformers")
    cls, rope = ROPE_VARIANTS[variant]
    kwargs = dict(
        hidden_size=4 * HEAD_DIM,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters=dict(rope),
    )
    if cls == "Phi3Config":
        kwargs["original_max_position_embeddings"] = 16
    return getattr(transformers, cls)(**{**kwargs, **extra})


def _hf_rotary(config):
    transformers = pytest.importorskip("transformers")
    family = config.model_type
    module = getattr(transformers.models, family)
    cls = {"llama": "Llama", "qwen2": "Qwen2", "phi3": "Phi3", "olmo2": "Olmo2"}[family]
    return getattr(getattr(module, f"modeling_{family}"), f"{cls}RotaryEmbedding")(config)


def _ours(config, dim=HEAD_DIM, **kwargs):
    base, scaling = hf_rope_settings(config.to_dict())
    return RotaryPositionalEmbeddings(dim, base=base, scaling=scaling, **kwargs)


@pytest.mark.parametrize("variant", list(ROPE_VARIANTS))
def test_frequencies_match_rope_init_functions(variant):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = _hf_config(variant)
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        expected, factor = _hf_rotary(config).inv_freq, 1.0
    else:
        expected, factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
    base, scaling = hf_rope_settings(config.to_dict())
    inv_freq, attention_factor = rope_frequencies(HEAD_DIM, base, scaling)
    assert torch.equal(inv_freq, expected)
    assert attention_factor == factor
    if rope_type == "longrope":  # the long table, for sequences past the original length
        long, _ = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu", seq_len=17)
        assert torch.equal(rope_frequencies(HEAD_DIM, base, scaling, seq_len=17)[0], long)
        assert not torch.equal(long, expected)


@pytest.mark.parametrize("variant", list(ROPE_VARIANTS))
@pytest.mark.parametrize("seq_len", [12, 24], ids=["short", "long"])
def test_cos_sin_match_the_rotary_embedding_module(variant, seq_len):
    config = _hf_config(variant)
    theirs, ours = _hf_rotary(config), _ours(config)
    # Positions past original_max_position_embeddings (16) switch longrope to its long factors.
    pos = torch.arange(seq_len)[None].expand(2, seq_len)
    cos, sin = theirs(torch.zeros(1, dtype=torch.float32), pos)
    our_cos, our_sin = ours.cos_sin(pos)
    assert torch.equal(our_cos, cos) and torch.equal(our_sin, sin)
    if variant == "longrope":
        # transformers picks one table per call from the largest position: so do we.
        short_cos, _ = ours.cos_sin(pos[:, :12])
        assert torch.equal(short_cos, our_cos[:, :12]) is (seq_len == 12)


def _hf_apply(family):
    transformers = pytest.importorskip("transformers")
    module = getattr(getattr(transformers.models, family), f"modeling_{family}")
    return module.apply_rotary_pos_emb


@pytest.mark.parametrize(
    ("family", "rotate_in_fp32"), [("llama", False), ("olmo2", True)], ids=["llama", "olmo2"]
)
def test_bf16_rotation_bit_identical_with_the_matching_option(family, rotate_in_fp32):
    transformers = pytest.importorskip("transformers")
    cls = {"llama": "LlamaConfig", "olmo2": "Olmo2Config"}[family]
    config = getattr(transformers, cls)(
        hidden_size=4 * HEAD_DIM, num_attention_heads=4, rope_parameters={"rope_theta": 10_000.0}
    )
    q = (torch.randn(2, 4, 40, HEAD_DIM, generator=torch.Generator().manual_seed(0)) * 4).to(
        torch.bfloat16
    )  # (b, h, s, d) as transformers holds it
    pos = torch.arange(100, 140)[None].expand(2, 40)
    cos, sin = _hf_rotary(config)(q, pos)
    expected, _ = _hf_apply(family)(q, q, cos, sin)
    assert expected.dtype == torch.bfloat16

    def ours(fp32):
        rope = _ours(config, rotate_in_fp32=fp32)
        return rope(q.transpose(1, 2), pos).transpose(1, 2)  # ours is (b, s, h, d)

    assert ours(rotate_in_fp32).dtype == torch.bfloat16
    assert torch.equal(ours(rotate_in_fp32), expected)
    assert not torch.equal(ours(not rotate_in_fp32), expected)


def test_partial_rotary_matches_phi3():
    transformers = pytest.importorskip("transformers")
    config = transformers.Phi3Config(
        hidden_size=4 * HEAD_DIM,
        num_attention_heads=4,
        rope_parameters={"rope_theta": 10_000.0, "partial_rotary_factor": 0.5},
    )
    theirs = _hf_rotary(config)
    ours = _ours(config, dim=HEAD_DIM // 2)
    q = torch.randn(2, 4, 10, HEAD_DIM)
    pos = torch.arange(10)[None].expand(2, 10)
    cos, sin = theirs(q, pos)
    expected, _ = _hf_apply("phi3")(q, q, cos, sin)
    actual = ours(q.transpose(1, 2), pos).transpose(1, 2)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    assert torch.equal(actual[..., HEAD_DIM // 2 :], q[..., HEAD_DIM // 2 :])  # passed through


def test_longrope_without_factor_takes_the_length_ratio():
    # Phi-3 mini 128k: no factor; transformers uses max/original = 4 here.
    config = _hf_config("longrope").to_dict()
    _, scaling = hf_rope_settings(config)
    assert scaling["factor"] == 4.0
    assert RotaryPositionalEmbeddings(HEAD_DIM, scaling=scaling).attention_factor == pytest.approx(
        math.sqrt(1 + math.log(4) / math.log(16))
    )


@pytest.mark.parametrize("variant", ["default", "yarn", "longrope"])
def test_builds_on_meta_device_without_state(variant):
    _, scaling = ROPE_VARIANTS[variant]
    scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
    scaling.setdefault("original_max_position_embeddings", 16)
    scaling.setdefault("factor", 4.0)
    with torch.device("meta"):
        rope = RotaryPositionalEmbeddings(HEAD_DIM, base=10_000.0, scaling=scaling)
    assert rope.inv_freq.device.type == "cpu"  # usable after to_empty / load_state_dict
    assert rope.state_dict() == {}
    cos, _ = rope.cos_sin(torch.arange(20)[None])
    assert cos.device.type == "cpu" and torch.isfinite(cos).all()
