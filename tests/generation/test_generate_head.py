"""generate_tokens applies the head to the last position only (the core decoder's
return_hidden + project): the same tokens as projecting every position."""

from __future__ import annotations

import torch

from tunesmith.generation import _decode, generate_tokens
from tunesmith.modules import build_decoder


def test_last_position_head_gives_the_same_tokens(monkeypatch):
    torch.manual_seed(0)
    model = build_decoder(
        vocab_size=97, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32,
        intermediate_dim=64, max_seq_len=64, final_softcap=5.0,
    )  # fmt: skip
    assert _decode._projects_hidden(model)
    prompts = [[5, 6, 7, 8, 9], [11, 12]]
    calls = []
    project = model.project
    monkeypatch.setattr(model, "project", lambda h: calls.append(h.shape) or project(h))
    fast = generate_tokens(model, prompts, max_new_tokens=6)
    assert calls and all(shape[1] == 1 for shape in calls)  # one position per row
    monkeypatch.setattr(_decode, "_projects_hidden", lambda m: False)
    for cache in (True, False):
        assert generate_tokens(model, prompts, max_new_tokens=6, enable_kv_cache=cache) == fast
