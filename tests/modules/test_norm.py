"""RMSNorm against its formula and against the transformers norms it mirrors."""

from __future__ import annotations

import pytest
import torch

from tunesmith.modules import RMSNorm


def test_matches_formula():
    norm = RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 8))
    x = torch.randn(3, 5, 8)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert list(dict(norm.state_dict())) == ["weight"]


def test_low_precision_input_normalised_in_float32_then_cast_back():
    norm = RMSNorm(16).to(torch.bfloat16)
    x = (torch.randn(4, 16) * 1e3).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    x32 = x.float()
    expected = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    assert torch.equal(out, expected)  # weight is ones: exactly the cast of the fp32 result


# ---- cast order against the transformers modules, in bf16 -------------------


def _hf_norm(family):
    transformers = pytest.importorskip("transformers")
    module = getattr(transformers.models, family)
    cls = {
        "llama": "LlamaRMSNorm",
        "olmo2": "Olmo2RMSNorm",
        "gemma": "GemmaRMSNorm",
        "gemma2": "Gemma2RMSNorm",
        "gemma3": "Gemma3RMSNorm",
    }[family]
    return getattr(getattr(module, f"modeling_{family}"), cls)(64, eps=1e-6)


# family -> the options that reproduce its norm
MATCHING = {
    "llama": {},
    "olmo2": {"scale_in_fp32": True},
    "gemma": {"weight_offset": 1.0, "scale_in_fp32": True},
    "gemma2": {"weight_offset": 1.0, "scale_in_fp32": True},
    "gemma3": {"weight_offset": 1.0, "scale_in_fp32": True},
}
WRONG = {
    "llama": {"scale_in_fp32": True},
    "olmo2": {},
    "gemma": {"weight_offset": 1.0},
    "gemma2": {"weight_offset": 1.0},
    "gemma3": {"weight_offset": 1.0},
}


@pytest.mark.parametrize("family", list(MATCHING))
def test_bf16_bit_identical_to_transformers_with_the_matching_option(family):
    torch.manual_seed(0)
    theirs = _hf_norm(family)
    with torch.no_grad():
        theirs.weight.uniform_(-0.5, 1.5)
    theirs = theirs.to(torch.bfloat16)
    x = (torch.randn(8, 64) * 3).to(torch.bfloat16)
    expected = theirs(x)

    def ours(options):
        norm = RMSNorm(64, eps=1e-6, **options).to(torch.bfloat16)
        norm.load_state_dict(theirs.state_dict())
        return norm(x)

    assert ours(MATCHING[family]).dtype == expected.dtype
    assert torch.equal(ours(MATCHING[family]), expected)
    assert not torch.equal(ours(WRONG[family]), expected)


def test_weight_offset_starts_at_identity_scale():
    norm = RMSNorm(8, weight_offset=1.0, scale_in_fp32=True)
    assert torch.equal(norm.weight, torch.zeros(8))  # Gemma stores offsets, initialised to 0
    x = torch.randn(2, 8)
    torch.testing.assert_close(norm(x), RMSNorm(8)(x))
