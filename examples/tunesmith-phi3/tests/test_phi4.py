"""Phi-4 (HF ``model_type`` ``phi3``): the conformance kit on its layout against
transformers, the Hub's config.json building ``phi4_14b``, and its chat format
(torchtune's phi4 configs: ``test_phi3_torchtune.py``)."""

from __future__ import annotations

import pytest
import torch

import tunesmith
from tunesmith.checkpoint import find_adapter
from tunesmith.testing import check_chat_template, check_family, check_tokenizer
from tunesmith_phi3 import build_from_hf_config, phi4_14b, tiny_phi3_config

transformers = pytest.importorskip("transformers")

# The architecture keys of microsoft/phi-4's config.json (written by transformers 4.47).
PHI4_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "intermediate_size": 17920,
    "max_position_embeddings": 16384,
    "model_type": "phi3",
    "num_attention_heads": 40,
    "num_hidden_layers": 40,
    "num_key_value_heads": 10,
    "original_max_position_embeddings": 16384,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 250000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 100352,
}


def test_conformance_on_phi4s_and_phi4_minis_layouts(tmp_path):
    """Against Phi3ForCausalLM: Phi-4's full attention, RoPE theta 250,000 and
    grouped-query attention (4 query heads per key/value head) through the fused
    qkv_proj split; Phi-4-mini's RoPE on 12 of 16 features per head with LongRoPE, and
    its tied embedding (``model: auto`` builds it)."""
    configs = [tiny_phi3_config("phi4"), tiny_phi3_config("phi4_mini")]
    ran = check_family("phi3", configs=configs, work_dir=tmp_path)
    assert not [name for name in ran if "skipped" in name], ran
    checks = {name.partition(" [")[0] for name in ran}
    assert {"round_trip", "kv_cache", "logits", "generation", "lora"} <= checks
    assert len(ran) == 2 * len(checks)  # every check on both layouts


def test_the_hubs_config_builds_phi4_14b():
    with torch.device("meta"):
        from_file, built = build_from_hf_config(PHI4_CONFIG), phi4_14b()
    assert [(n, p.shape) for n, p in from_file.named_parameters()] == [
        (n, p.shape) for n, p in built.named_parameters()
    ]
    assert sum(p.numel() for p in built.parameters()) == 14_659_507_200
    attention = built.layers[0].attn
    assert (attention.num_heads, attention.num_kv_heads, attention.head_dim) == (40, 10, 128)
    assert attention.sliding_window is None
    # the checkpoint's theta, not the 10,000 torchtune's phi4_14b leaves in place
    from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

    hf = transformers.Phi3Config(**PHI4_CONFIG)
    theirs, _ = Phi3RotaryEmbedding.compute_default_rope_parameters(hf)
    for model in (from_file, built):
        rope = model.layers[0].attn.pos_embeddings
        assert rope.scaling is None
        torch.testing.assert_close(rope.inv_freq, theirs, atol=0, rtol=1e-6)


def test_phi4_is_registered_under_torchtunes_names():
    model = tunesmith.get_registry().get("models", "phi4_14b")
    assert model.builder is phi4_14b
    assert (model.family, model.hf_repo) == ("phi3", "microsoft/phi-4")
    assert find_adapter("PHI4").family == "phi3"  # torchtune's checkpointer model_type


def test_tokenizer_and_chat_format(phi4_dir):
    """``tokenizer: auto`` on a Phi-4 download: conversations laid out as Phi-4's template
    does in transformers (no newlines, ``<|im_sep|>``), ``<|im_end|>`` trained and a stop."""
    from tunesmith.tokenizers import auto_tokenizer

    tokenizer = auto_tokenizer(phi4_dir)
    assert type(tokenizer).__name__ == "HFTokenizer"
    assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>")
    assert tokenizer.eos_id in tokenizer.stop_tokens
    check_tokenizer(tokenizer)
    ran = check_chat_template(tokenizer, phi4_dir)
    assert ran and not [name for name in ran if "skipped" in name], ran


def test_user_workflow_on_a_phi4_download(phi4_dir, tmp_path):
    """The CLI workflow on the tiny Phi-4: full and LoRA fine-tuning, generation and the
    chat (Phi-4's template, stopping at ``<|im_end|>``), int8 quantization,
    merge-adapter and convert."""
    from tunesmith.testing import check_workflow

    steps = ("full", "lora", "generate", "quantize", "merge", "convert")
    assert check_workflow(phi4_dir, work_dir=tmp_path, steps=steps) == list(steps)
