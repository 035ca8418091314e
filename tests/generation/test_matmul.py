"""Decoding's products on the CPU (``weight_major_linear``, inside ``generate_tokens``)
give F.linear's values, and generation the same tokens, for any number of rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunesmith.generation import _matmul, generate_tokens
from tunesmith.generation._matmul import cpu_decoding_matmuls, weight_major_linear


@pytest.mark.parametrize("shape", [(), (0,), (1, 1), (1,), (2, 1), (8, 1), (4, 8), (32,), (33,), (8, 16)])
@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
def test_weight_major_linear_equals_f_linear(shape, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, 48, generator=g)
    weight = torch.randn(200, 48, generator=g)
    b = torch.randn(200, generator=g) if bias else None
    out = weight_major_linear(x, weight, b)
    assert out.shape == (*shape, 200) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, weight, b), rtol=0, atol=1e-5)  # summation order


def test_the_mode_routes_f_linear_on_the_cpu_only(monkeypatch):
    calls = []
    monkeypatch.setattr(_matmul, "weight_major_linear", lambda *a, **k: calls.append(a) or 0)
    x, weight = torch.randn(1, 8), torch.randn(4, 8)
    with cpu_decoding_matmuls(torch.device("cpu")):
        assert F.linear(x, weight) == 0  # through the mode
        assert torch.nn.Linear(8, 4)(x) == 0  # nn.Linear calls F.linear
        assert torch.matmul(x, weight.t()).shape == (1, 4)  # other functions untouched
    assert len(calls) == 2
    with cpu_decoding_matmuls(torch.device("meta")):  # not the CPU: no mode
        F.linear(x, weight)
    assert len(calls) == 2


def test_generated_tokens_do_not_depend_on_the_product(loaded, monkeypatch):
    model, _ = loaded("llama3_2")
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (7, 12, 3)]
    for batch in (prompts[:1], prompts):  # one row (doubled) and a batch of three
        weight_major = generate_tokens(model, batch, max_new_tokens=12)
        monkeypatch.setattr(_matmul, "MAX_WEIGHT_MAJOR_ROWS", 0)  # F.linear everywhere
        assert generate_tokens(model, batch, max_new_tokens=12) == weight_major
        monkeypatch.undo()
