"""Every model builder gives the published architecture (checked on the meta device)."""

from __future__ import annotations

import pytest
import torch

import tunesmith_llama
from tunesmith.modules import TiedLinear

# Published parameter counts (the safetensors totals on the Hugging Face Hub).
PARAMS = {
    "llama2_7b": 6.74e9,
    "llama2_13b": 13.02e9,
    "llama2_70b": 68.98e9,
    "code_llama2_7b": 6.74e9,
    "code_llama2_13b": 13.02e9,
    "code_llama2_70b": 68.98e9,
    "llama3_8b": 8.03e9,
    "llama3_70b": 70.55e9,
    "llama3_1_8b": 8.03e9,
    "llama3_1_70b": 70.55e9,
    "llama3_1_405b": 405.85e9,
    "llama3_2_1b": 1.24e9,
    "llama3_2_3b": 3.21e9,
    "llama3_3_70b": 70.55e9,
}


def _build(name):
    with torch.device("meta"):
        return getattr(tunesmith_llama, name)()


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count(name):
    model = _build(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(PARAMS[name], rel=0.01)


def test_every_builder_is_registered_with_its_repo(llama_registry):
    assert set(llama_registry.names("models")) >= set(PARAMS)
    record = llama_registry.get("models", "llama3_2_1b")
    assert record.family == "llama"
    assert record.hf_repo == "meta-llama/Llama-3.2-1B"
    assert record.origin.distribution == "tunesmith-llama"
    assert record.builder is tunesmith_llama.llama3_2_1b


def test_family_specific_settings():
    rope = lambda m: m.layers[0].attn.pos_embeddings  # noqa: E731
    llama2, code, llama3_1, llama3_2 = (
        _build(n) for n in ("llama2_7b", "code_llama2_7b", "llama3_1_8b", "llama3_2_1b")
    )
    assert (llama2.tok_embeddings.num_embeddings, rope(llama2).base, rope(llama2).scaling) == (
        32_000,
        10_000.0,
        None,
    )
    assert (code.tok_embeddings.num_embeddings, rope(code).base, code.max_seq_len) == (
        32_016,
        1e6,
        16_384,
    )
    assert rope(llama3_1).scaling["factor"] == 8.0 and llama3_1.max_seq_len == 131_072
    assert rope(llama3_2).scaling["factor"] == 32.0
    assert isinstance(llama3_2.output, TiedLinear) and "output.weight" not in llama3_2.state_dict()
    assert llama3_1.layers[0].attn.num_kv_heads == 8 and llama3_1.layers[0].attn.head_dim == 128
