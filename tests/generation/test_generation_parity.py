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
