"""sample_next_token and token_probabilities on fixed logits: the definitions, numerically."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tunesmith import ConfigError
from tunesmith.generation import sample_next_token, token_probabilities

# Probabilities 0.5, 0.25, 0.15, 0.07, 0.03 (logits = their logs).
PROBS = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
LOGITS = PROBS.log()[None]  # (1, 5)


def test_temperature_zero_is_argmax_first_of_ties():
    logits = torch.tensor([[0.1, 3.0, -1.0, 3.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next_token(logits, temperature=0).tolist() == [1, 0]
    # Greedy ignores top_k / top_p.
    assert sample_next_token(logits, temperature=0, top_k=3, top_p=0.1).tolist() == [1, 0]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_is_softmax_of_scaled_logits(temperature):
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.5]])
    want = torch.softmax(logits / temperature, dim=-1)
    assert torch.allclose(token_probabilities(logits, temperature=temperature), want, atol=1e-6)
    # By hand for T=2: p_i proportional to exp(l_i / 2).
    if temperature == 2.0:
        weights = [math.exp(v / 2) for v in (2.0, 1.0, 0.0, -1.5)]
        assert token_probabilities(logits, temperature=2.0)[0, 0].item() == pytest.approx(
            weights[0] / sum(weights), rel=1e-6
        )
    # Lower temperature sharpens, higher flattens.
    top = token_probabilities(logits, temperature=temperature)[0, 0].item()
    assert top > token_probabilities(logits, temperature=temperature * 2)[0, 0].item()


def test_top_k_keeps_the_k_most_likely_renormalised():
    probs = token_probabilities(LOGITS, top_k=2)[0]
    assert torch.allclose(probs, torch.tensor([0.5 / 0.75, 0.25 / 0.75, 0, 0, 0]), atol=1e-6)
    assert torch.allclose(token_probabilities(LOGITS, top_k=5)[0], PROBS, atol=1e-6)
    assert torch.allclose(token_probabilities(LOGITS, top_k=100)[0], PROBS, atol=1e-6)


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [(0.3, 1), (0.5, 1), (0.6, 2), (0.8, 3), (0.95, 4), (0.99, 5), (1.0, 5)],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    probs = token_probabilities(LOGITS, top_p=top_p)[0]
    want = torch.zeros(5)
    want[:kept] = PROBS[:kept] / PROBS[:kept].sum()
    assert torch.allclose(probs, want, atol=1e-6)


def test_top_p_in_vocabulary_order_and_per_row():
    # Same distribution, shuffled, in two rows with different orders.
    order = torch.tensor([[3, 0, 4, 1, 2], [1, 2, 0, 4, 3]])
    logits = LOGITS[0][order]  # (2, 5)
    probs = token_probabilities(logits, top_p=0.6)
    for row in range(2):
        kept = {int(order[row, i]) for i in range(5) if probs[row, i] > 0}
        assert kept == {0, 1}  # the two most likely tokens of PROBS, wherever they sit


def test_temperature_then_top_k_then_top_p():
    # After T=0.5 the probabilities are ~0.73, 0.18, 0.07, ...: top_p=0.8 keeps two.
    probs = token_probabilities(LOGITS, temperature=0.5, top_p=0.8)[0]
    assert (probs > 0).sum().item() == 2
    # top_k first: of the 3 kept (renormalised 0.556, 0.278, 0.167), top_p=0.8 keeps 2.
    probs = token_probabilities(LOGITS, top_k=3, top_p=0.8)[0]
    assert torch.allclose(probs, torch.tensor([2 / 3, 1 / 3, 0, 0, 0]), atol=1e-6)


def test_samples_follow_the_distribution():
    n = 20_000
    generator = torch.Generator().manual_seed(0)
    draws = sample_next_token(LOGITS.expand(n, -1), generator=generator)
    freq = torch.bincount(draws, minlength=5).float() / n
    assert torch.allclose(freq, PROBS, atol=0.015)
    draws = sample_next_token(LOGITS.expand(n, -1), top_p=0.6, generator=generator)
    freq = torch.bincount(draws, minlength=5).float() / n
    assert torch.allclose(freq, torch.tensor([2 / 3, 1 / 3, 0, 0, 0]), atol=0.015)
    assert freq[2:].sum() == 0


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [
            sample_next_token(logits, temperature=1.3, top_p=0.9, generator=generator)
            for _ in range(5)
        ]

    first, again, other = draw(7), draw(7), draw(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_top_k_one_is_greedy():
    logits = torch.randn(16, 100, generator=torch.Generator().manual_seed(2))
    greedy = sample_next_token(logits, temperature=0)
    for temperature in (0.7, 1.0, 5.0):
        sampled = sample_next_token(logits, temperature=temperature, top_k=1)
        assert torch.equal(sampled, greedy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, "temperature must be a number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a number >= 0"),
        ({"temperature": float("inf")}, "temperature must be a number >= 0"),
        ({"temperature": "0.5"}, "temperature must be a number >= 0 (0 means greedy), not '0.5'"),
        ({"top_k": -1}, "top_k must be a positive integer, 0 (off) or null"),
        ({"top_k": 2.5}, "top_k must be a positive integer, 0 (off) or null"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        sample_next_token(LOGITS, **kwargs)


def test_top_p_at_an_exact_boundary_keeps_what_transformers_keeps():
    # 0.5 + 0.4 + 0.1: the first token alone reaches top_p 0.5 (a cumsum minus the token
    # rounds 0.5 down and kept the 0.4 too).
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.tensor([[0.5, 0.4, 0.1]]).log()
    ours = token_probabilities(logits, top_p=0.5)
    theirs = torch.softmax(TopPLogitsWarper(0.5)(None, logits.clone()), dim=-1)
    assert torch.equal(ours, torch.tensor([[1.0, 0.0, 0.0]])) and torch.equal(ours, theirs)


def test_top_k_zero_is_off_and_a_tiny_temperature_is_greedy():
    assert torch.equal(token_probabilities(LOGITS, top_k=0), token_probabilities(LOGITS))
    logits = torch.randn(8, 100, generator=torch.Generator().manual_seed(3)) * 30
    for temperature in (1e-6, 1e-38, 1e-45):  # logits / t overflows fp32 below ~1e-37
        assert torch.equal(sample_next_token(logits, temperature=temperature), logits.argmax(-1))
