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

CONFIGS = {
    # Gemma 2B's multi-query attention; Gemma 7B's multi-head attention with biases.
    "gemma": [tiny_gemma_config(), tiny_gemma_config(num_key_value_heads=4, attention_bias=True)],
    # Soft-caps that bend the tiny logits; then global first, no final cap, and Gemma 2
    # 27B's head_dim != query_pre_attn_scalar.
    "gemma2": [
        tiny_gemma2_config(),
        tiny_gemma2_config(
            layer_types=["full_attention", "sliding_attention"],
            final_logit_softcapping=None,
            head_dim=16,
            query_pre_attn_scalar=16,
        ),
    ],
    # Gemma3ForCausalLM (1B) and the language model of Gemma3ForConditionalGeneration.
    "gemma3_text": [tiny_gemma3_text_config()],
    "gemma3": [tiny_gemma3_config()],
}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_family_conforms(family, tmp_path):
    ran = check_family(family, configs=CONFIGS[family], work_dir=tmp_path)
    assert not [name for name in ran if "skipped" in name], ran
    assert sum(name.startswith("lora") for name in ran) == len(CONFIGS[family])
