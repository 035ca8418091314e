"""The conformance kit on every generation: HF round trip, KV cache, packing, fp32
logits and bf16 error against transformers (sequences longer than the sliding
window), greedy ids against ``generate`` (one prompt and a left-padded batch, cached
and not), and a LoRA step whose adapter loads in ``peft.PeftModel`` with equal logits
and whose merged weights load in transformers."""

from __future__ import annotations

import pytest

from tunesmith.testing import check_family
from tunesmith_gemma import (
    tiny_gemma2_config,
    tiny_gemma3_config,
    tiny_gemma3_text_config,
    tiny_gemma_config,
)

pytest.importorskip("transformers")
pytest.importorskip("peft")

#: One config per generation through every check...
CONFIGS = {
    "gemma": tiny_gemma_config(),  # Gemma 2B's multi-query attention
    "gemma2": tiny_gemma2_config(),  # soft-caps that bend the tiny logits, window 8
    "gemma3_text": tiny_gemma3_text_config(),  # Gemma3ForCausalLM (1B)
    "gemma3": tiny_gemma3_config(),  # the language model of Gemma3ForConditionalGeneration
}
#: ... and variants through the numeric ones.
VARIANTS = {
    # Gemma 7B's multi-head attention, with biases.
    "gemma": [tiny_gemma_config(num_key_value_heads=4, attention_bias=True)],
    # A global layer first, no final cap, Gemma 2 27B's head_dim != query_pre_attn_scalar.
    "gemma2": [
        tiny_gemma2_config(
            layer_types=["full_attention", "sliding_attention"],
            final_logit_softcapping=None,
            head_dim=16,
            query_pre_attn_scalar=16,
        )
    ],
    # Two local layers sharing the short window, plain RoPE on the global ones.
    "gemma3_text": [
        tiny_gemma3_text_config(
            num_hidden_layers=3,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            },
        )
    ],
}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_family_conforms(family, tmp_path):
    ran = check_family(family, configs=[CONFIGS[family]], work_dir=tmp_path)
    assert not [name for name in ran if "skipped" in name], ran
    assert any(name.startswith("lora") for name in ran)


@pytest.mark.parametrize("family", sorted(VARIANTS))
def test_variants_match_transformers(family, tmp_path):
    checks = ("round_trip", "kv_cache", "logits")
    ran = check_family(family, configs=VARIANTS[family], checks=checks, work_dir=tmp_path)
    assert len(ran) == (1 + len(checks)) * len(VARIANTS[family]) and "skipped" not in str(ran)
