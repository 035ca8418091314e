"""RoPE frequency tables and rotations."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.modules import RotaryPositionalEmbeddings, rope_inverse_frequencies

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


def test_builds_on_meta_device_without_state():
    with torch.device("meta"):
        rope = RotaryPositionalEmbeddings(16, base=10_000.0)
    assert rope.inv_freq.device.type == "cpu"  # usable after to_empty / load_state_dict
    assert rope.state_dict() == {}
