"""The decoding loop: stop tokens, max_new_tokens, streaming callbacks, seeded
sampling, prompt errors, and leaving the model as it was."""

from __future__ import annotations

import pytest
import torch

from tunesmith import ConfigError, DataError, TunesmithError
from tunesmith.generation import generate_tokens


@pytest.mark.parametrize("enable_kv_cache", [True, False])
def test_counter_model_rows_stop_independently(counter, enable_kv_cache):
    # The counter predicts t + 1 after t: row 0 reaches the stop token 9 after 4
    # tokens, row 1 never does and runs to max_new_tokens.
    seen = []
    out = generate_tokens(
        counter,
        [[3, 5], [20]],
        max_new_tokens=6,
        stop_tokens=[9],
        pad_id=0,
        enable_kv_cache=enable_kv_cache,
        on_token=lambda row, tok: seen.append((row, tok)),
    )
    assert out == [[6, 7, 8, 9], [21, 22, 23, 24, 25, 26]]
    assert [t for r, t in seen if r == 0] == [6, 7, 8, 9]
    assert [t for r, t in seen if r == 1] == [21, 22, 23, 24, 25, 26]
    # Tokens arrive step by step, interleaved across rows.
    assert seen[:4] == [(0, 6), (1, 21), (0, 7), (1, 22)]


def test_counter_model_shapes_with_and_without_cache(counter):
    generate_tokens(counter, [[1, 2, 3], [4]], max_new_tokens=3, enable_kv_cache=True)
    # Prefill of the padded prompts, then one token per step; masks span the cache.
    assert counter.calls == [((2, 3), (2, 3, 6)), ((2, 1), (2, 1, 6)), ((2, 1), (2, 1, 6))]
    counter.calls.clear()
    generate_tokens(counter, [[1, 2, 3], [4]], max_new_tokens=3, enable_kv_cache=False)
    assert counter.calls == [((2, 3), (2, 3, 3)), ((2, 4), (2, 4, 4)), ((2, 5), (2, 5, 5))]


def test_all_rows_stopped_ends_early(counter):
    out = generate_tokens(counter, [[7], [8]], max_new_tokens=50, stop_tokens=[9, 10])
    assert out == [[8, 9], [9]]
    assert len(counter.calls) == 2


def test_stops_at_end_of_turn_on_a_real_model(loaded):
    model, tokenizer = loaded("llama3_2")
    prompt = [17, 250, 3, 99, 42]
    free = generate_tokens(model, [prompt], max_new_tokens=12)[0]
    assert len(free) == 12  # max_new_tokens honoured when nothing stops it
    stop = free[4]
    first = free.index(stop)
    for enable_kv_cache in (True, False):
        [out] = generate_tokens(
            model, [prompt], max_new_tokens=12, stop_tokens=[stop], enable_kv_cache=enable_kv_cache
        )
        assert out == free[: first + 1]


def test_max_new_tokens_honoured(loaded):
    model, _ = loaded("llama3_2")
    out = generate_tokens(model, [[5, 6, 7], [8]], max_new_tokens=3, temperature=1.0, seed=0)
    assert [len(row) for row in out] == [3, 3]


@pytest.mark.parametrize("enable_kv_cache", [True, False])
def test_seeded_sampling_reproducible_and_top_k_one_is_greedy(loaded, enable_kv_cache):
    model, _ = loaded("llama3_1")
    prompts = [[17, 250, 3, 99], [64, 11]]
    kwargs = dict(max_new_tokens=8, enable_kv_cache=enable_kv_cache)
    a = generate_tokens(model, prompts, temperature=1.0, top_p=0.95, seed=123, **kwargs)
    b = generate_tokens(model, prompts, temperature=1.0, top_p=0.95, seed=123, **kwargs)
    c = generate_tokens(model, prompts, temperature=1.0, top_p=0.95, seed=124, **kwargs)
    assert a == b
    assert a != c
    greedy = generate_tokens(model, prompts, temperature=0, **kwargs)
    assert generate_tokens(model, prompts, temperature=0.8, top_k=1, seed=5, **kwargs) == greedy


def test_model_is_left_as_it_was(loaded):
    model, _ = loaded("llama3_2")
    tokens = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        before = model(tokens)
    model.train()
    try:
        generate_tokens(model, [[3, 4, 5]], max_new_tokens=4)
        assert model.training
        assert not model.caches_are_enabled()
        # Stale caches the caller left behind are dropped, not reused.
        model.setup_caches(1, torch.float32, max_seq_len=16)
        generate_tokens(model, [[3, 4, 5]], max_new_tokens=2, enable_kv_cache=False)
        assert not model.caches_are_enabled()
    finally:
        model.eval()
    # Usable for a full-sequence forward (and training) again.
    with torch.no_grad():
        assert torch.equal(model(tokens), before)
    loss = model(tokens).sum()
    loss.backward()
    assert model.tok_embeddings.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_empty_prompts_are_clear_errors(counter):
    with pytest.raises(DataError, match="the prompt is empty"):
        generate_tokens(counter, [[]], max_new_tokens=3)
    with pytest.raises(DataError, match="prompt 1 is empty"):
        generate_tokens(counter, [[1], []], max_new_tokens=3)
    with pytest.raises(DataError, match="no prompt"):
        generate_tokens(counter, [], max_new_tokens=3)


def test_too_long_prompt_names_the_lengths_and_the_fix(counter):
    # counter.max_seq_len is 64.
    with pytest.raises(DataError) as info:
        generate_tokens(counter, [[1] * 60], max_new_tokens=10)
    message = str(info.value)
    assert (
        "60 tokens" in message and "max_new_tokens=10" in message and "max_seq_len of 64" in message
    )
    assert "at most 54 tokens" in message and "max_new_tokens to at most 4" in message
    assert isinstance(info.value, TunesmithError)
    # Exactly filling the context is fine.
    assert len(generate_tokens(counter, [[1] * 60], max_new_tokens=4)[0]) == 4


def test_invalid_max_new_tokens(counter):
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="max_new_tokens must be a positive integer"):
            generate_tokens(counter, [[1]], max_new_tokens=bad)


def test_model_without_cache_needs_enable_kv_cache_false():
    class NoCache(torch.nn.Module):
        max_seq_len = 32

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, tokens, *, mask=None, input_pos=None):
            return torch.zeros(*tokens.shape, 8) + self.w

    with pytest.raises(ConfigError, match="enable_kv_cache=False"):
        generate_tokens(NoCache(), [[1]], max_new_tokens=2)
    assert generate_tokens(NoCache(), [[1]], max_new_tokens=2, enable_kv_cache=False) == [[0, 0]]
