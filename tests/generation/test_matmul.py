"""Decoding's products on the CPU: ``weight_major_linear`` gives F.linear's values,
``decoding_products`` keeps whichever of the two its probe timed faster (the probe
mocked both ways), and generation gives the same tokens either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.generation import _matmul, generate_tokens
from tunesmith.generation._matmul import decoding_products, weight_major_linear


@pytest.fixture(autouse=True)
def _no_remembered_choices(monkeypatch):
    monkeypatch.setattr(_matmul, "_CHOICES", {})


def _probe_finds(monkeypatch, linear: float, weight_major: float) -> list:
    probes = []

    def probe(weights, rows):
        probes.append((len(weights), rows))
        return linear, weight_major

    monkeypatch.setattr(_matmul, "_probe_seconds", probe)
    return probes


def _is_mode_on() -> bool:
    return any(isinstance(m, _matmul._WeightMajorLinear) for m in _active_modes())


def _active_modes():
    from torch.overrides import _get_current_function_mode_stack

    return _get_current_function_mode_stack()


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


def test_weight_major_products_are_kept_only_where_the_probe_finds_them_faster(monkeypatch):
    model = nn.Sequential(nn.Embedding(16, 8), nn.Linear(8, 4))
    probes = _probe_finds(monkeypatch, linear=1.0, weight_major=0.5)
    with decoding_products(model, 1):
        assert _is_mode_on()
    with decoding_products(model, 1):  # remembered: no second probe
        assert _is_mode_on()
    assert probes == [(2, 1)]  # the embedding (a tied head's weight) and the linear's

    probes = _probe_finds(monkeypatch, linear=1.0, weight_major=0.95)  # within the margin
    with decoding_products(model, 8):
        assert not _is_mode_on()
    assert probes == [(2, 8)]


def test_the_mode_routes_f_linear_through_weight_major_linear(monkeypatch):
    _probe_finds(monkeypatch, linear=1.0, weight_major=0.5)
    calls = []
    monkeypatch.setattr(_matmul, "weight_major_linear", lambda *a, **k: calls.append(a) or 0)
    x, weight = torch.randn(1, 8), torch.randn(4, 8)
    with decoding_products(nn.Linear(8, 4), 1):
        assert F.linear(x, weight) == 0
        assert torch.nn.Linear(8, 4)(x) == 0  # nn.Linear calls F.linear
        assert torch.matmul(x, weight.t()).shape == (1, 4)  # other functions untouched
    assert len(calls) == 2


@pytest.mark.parametrize(
    "model, rows",
    [
        (nn.Linear(8, 4, device="meta"), 1),  # not the CPU
        (nn.Linear(8, 4, dtype=torch.bfloat16), 1),  # not fp32
        (nn.Linear(8, 4), 33),  # too many rows
    ],
    ids=["meta", "bf16", "33_rows"],
)
def test_no_probe_and_no_mode_where_weight_major_products_do_not_apply(monkeypatch, model, rows):
    probes = _probe_finds(monkeypatch, linear=1.0, weight_major=0.1)
    with decoding_products(model, rows):
        assert not _is_mode_on()
    assert probes == []


def test_the_probe_times_both_products_on_the_weights():
    weights = [torch.randn(64, 32), torch.randn(32, 64)]
    state = torch.get_rng_state()
    linear, weight_major = _matmul._probe_seconds(weights, 3)
    assert linear > 0 and weight_major > 0
    assert torch.equal(torch.get_rng_state(), state)  # a seeded run's samples stay its own


def test_generated_tokens_do_not_depend_on_the_product(loaded, monkeypatch):
    model, _ = loaded("llama3_2")
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (7, 12, 3)]
    calls = []  # rows of each product computed weight-major
    product = _matmul.weight_major_linear

    def counted(x, weight, bias=None):
        if x.shape[:-1].numel() <= _matmul.MAX_WEIGHT_MAJOR_ROWS:
            calls.append(x.shape[:-1].numel())
        return product(x, weight, bias)

    monkeypatch.setattr(_matmul, "weight_major_linear", counted)
    for batch in (prompts[:1], prompts):  # one row (doubled) and a batch of three
        monkeypatch.setattr(_matmul, "_CHOICES", {})
        _probe_finds(monkeypatch, linear=1.0, weight_major=0.5)
        weight_major = generate_tokens(model, batch, max_new_tokens=12)
        assert len(batch) in calls  # the one-token steps
        calls.clear()
        monkeypatch.setattr(_matmul, "_CHOICES", {})
        _probe_finds(monkeypatch, linear=0.5, weight_major=1.0)
        assert generate_tokens(model, batch, max_new_tokens=12) == weight_major
        assert calls == []
