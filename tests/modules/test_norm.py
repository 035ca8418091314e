"""RMSNorm against its formula."""

from __future__ import annotations

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
