"""Greedy decoding equals transformers' generate(do_sample=False), token for token,
on tiny random Llama checkpoints: with and without the KV cache, single prompts and
left-padded batches of different lengths."""

from __future__ import annotations

import pytest
import torch

from tunesmith.generation import generate_tokens

PROMPTS = [
    [17, 250, 3, 99, 42, 7, 120, 5, 33],
    [64, 11],
    [200, 1, 150, 77, 9],
]
NEW = 10


def _hf_generate(hf, prompts, pad_id, eos_id):
    """transformers' greedy output per row, cut after the first eos (it pads after)."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf.generate(
            ids,
            attention_mask=attention,
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )[:, width:].tolist()
    return [row[: row.index(eos_id) + 1] if eos_id in row else row for row in out]


@pytest.mark.parametrize("variant", ["llama2", "llama3_1", "llama3_2"])
def test_greedy_matches_transformers(variant, loaded, hf_loaded):
    model, tokenizer = loaded(variant)
    hf = hf_loaded(variant)
    eos, pad = tokenizer.eos_id, tokenizer.pad_id
    want_single = [_hf_generate(hf, [p], pad, eos)[0] for p in PROMPTS]
    want_batch = _hf_generate(hf, PROMPTS, pad, eos)

    for enable_kv_cache in (True, False):

        def run(prompts, enable_kv_cache=enable_kv_cache):
            return generate_tokens(
                model,
                prompts,
                max_new_tokens=NEW,
                stop_tokens=[eos],
                pad_id=pad,
                enable_kv_cache=enable_kv_cache,
            )

        # One prompt at a time.
        singles = [run([p])[0] for p in PROMPTS]
        assert singles == want_single, f"enable_kv_cache={enable_kv_cache}"
        assert all(len(row) == NEW or row[-1] == eos for row in singles)
        # The three together, left-padded: each row as in transformers' padded batch,
        # and as the same prompt alone.
        batched = run(PROMPTS)
        assert batched == want_batch, f"enable_kv_cache={enable_kv_cache}"
        assert batched == singles
        assert not model.caches_are_enabled()


def test_padding_token_value_does_not_matter(loaded):
    model, _ = loaded("llama3_1")
    outs = [generate_tokens(model, PROMPTS, max_new_tokens=6, pad_id=pad) for pad in (0, 5, 299)]
    assert outs[0] == outs[1] == outs[2]


def test_repetition_penalty_decodes_as_transformers_greedy_and_sampled(loaded, hf_loaded):
    """transformers applies repetition_penalty to greedy decoding too; tunesmith does the
    same, token for token, and its min_p / penalty maths equal transformers' processors."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
    )

    from tunesmith.generation import penalize_repeats, token_probabilities

    model, tokenizer = loaded("llama3_2")
    hf = hf_loaded("llama3_2")
    eos = tokenizer.eos_id
    changed = 0
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            want = hf.generate(ids, max_new_tokens=NEW, do_sample=False, repetition_penalty=8.0,
                               pad_token_id=eos, eos_token_id=eos)[0, len(prompt):].tolist()  # fmt: skip
        plain = generate_tokens(model, [prompt], max_new_tokens=NEW, stop_tokens=[eos])[0]
        got = generate_tokens(
            model, [prompt], max_new_tokens=NEW, stop_tokens=[eos], repetition_penalty=8.0
        )[0]
        assert got == (want[: want.index(eos) + 1] if eos in want else want)
        changed += got != plain
    assert changed  # the penalty changes what is chosen

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, generator=generator) * 3
    seen = torch.randint(0, 40, (3, 9), generator=generator)
    real = torch.ones_like(seen, dtype=torch.bool)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    torch.testing.assert_close(penalize_repeats(logits, seen, real, 1.3), theirs, rtol=0, atol=0)
    real[:, :4] = False  # padding is no token: only the rest is penalized
    only_rest = RepetitionPenaltyLogitsProcessor(1.3)(seen[:, 4:], logits.clone())
    torch.testing.assert_close(penalize_repeats(logits, seen, real, 1.3), only_rest, rtol=0, atol=0)
    warped = MinPLogitsWarper(0.2)(None, TemperatureLogitsWarper(0.7)(None, logits.clone()))
    torch.testing.assert_close(
        token_probabilities(logits, temperature=0.7, min_p=0.2), torch.softmax(warped, dim=-1)
    )
