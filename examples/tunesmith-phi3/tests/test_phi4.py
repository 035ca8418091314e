"""Phi-4 (HF ``model_type`` ``phi3``): the conformance kit on its layout against
transformers, the Hub's config.json building ``phi4_14b``, its chat format, and
torchtune 0.6.1's own phi4 configs (``fixtures/torchtune/phi4``, unchanged) translating
to this plugin's model and training the tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.checkpoint import find_adapter
from tunesmith.cli import cli
from tunesmith.config._load import _read
from tunesmith.config._torchtune import recipe_from_comments, translate_torchtune_config
from tunesmith.testing import check_chat_template, check_family, check_tokenizer
from tunesmith_phi3 import build_from_hf_config, phi4_14b, tiny_phi3_config

transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parent / "fixtures" / "torchtune" / "phi4"

# config.json of microsoft/phi-4 (transformers 4.47), less its dropout keys.
PHI4_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 100257,
    "eos_token_id": 100265,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "initializer_range": 0.02,
    "intermediate_size": 17920,
    "max_position_embeddings": 16384,
    "model_type": "phi3",
    "num_attention_heads": 40,
    "num_hidden_layers": 40,
    "num_key_value_heads": 10,
    "original_max_position_embeddings": 16384,
    "pad_token_id": 100349,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 250000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 100352,
}


def test_conformance_on_phi4s_layout(tmp_path):
    """Full attention, RoPE theta 250,000 and grouped-query attention (4 query heads per
    key/value head) through the fused qkv_proj split, against Phi3ForCausalLM."""
    ran = check_family("phi3", configs=[tiny_phi3_config("phi4")], work_dir=tmp_path)
    assert not [name for name in ran if "skipped" in name], ran
    checks = {name.partition(" [")[0] for name in ran}
    assert {"round_trip", "kv_cache", "logits", "generation", "lora"} <= checks


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


def _translate(name: str, **changes):
    path = CONFIGS / f"{name}.yaml"
    raw = {**_read(path, []), **changes}
    return translate_torchtune_config(raw, recipe=recipe_from_comments(path.read_text()))


@pytest.mark.parametrize(
    ("name", "recipe", "peft"),
    [
        ("14B_full", "full_finetune_distributed", None),
        ("14B_full_low_memory", "full_finetune_single_device", None),
        ("14B_lora", "lora_finetune_distributed", "lora"),
        ("14B_lora_single_device", "lora_finetune_single_device", "lora"),
        ("14B_qlora_single_device", "lora_finetune_single_device", "qlora"),
    ],
)
def test_torchtunes_phi4_configs_translate_to_phi4_14b(name, recipe, peft):
    assert recipe_from_comments((CONFIGS / f"{name}.yaml").read_text()) == recipe
    t = _translate(name)
    assert t.problems == []
    assert t.config["model"] == {"_component_": "phi4_14b"}
    assert t.config["checkpointer"]["model_type"] == "PHI4"
    # phi4_tokenizer's vocab.json + merges.txt: the download's tokenizer.json instead
    assert t.config["tokenizer"] == {"_component_": "auto", "max_seq_len": None}
    assert any(n.startswith("tokenizer.merges_path: dropped") for n in t.notes), t.notes
    if peft is None:
        assert "peft" not in t.config
    else:
        block = t.config["peft"]
        assert block["_component_"] == peft
        assert block["lora_attn_modules"] == ["q_proj", "v_proj", "output_proj"]
        assert (block["apply_lora_to_mlp"], block["lora_rank"]) == (True, 8)


def test_torchtunes_phi4_evaluation_config_translates():
    t = _translate("evaluation")
    assert t.problems == []
    assert "model" not in t.config  # eleuther_eval builds it from the checkpoint
    assert t.config["checkpointer"]["model_type"] == "PHI4"
    assert t.config["tasks"] == ["truthfulqa_mc2"]


@pytest.mark.slow
def test_torchtunes_lora_config_trains_the_tiny_phi4(phi4_dir, alpaca_file, tmp_path):
    """torchtune's phi4 LoRA config as it is, pointed at the tiny checkpoint (the builder
    swapped for the component builder, the architecture read from config.json): the
    tokenizer is the download's, and the adapter is PEFT's fused-module LoRA."""
    arch = json.loads((phi4_dir / "config.json").read_text())
    out = tmp_path / "run"
    overrides = [
        "model._component_=torchtune.models.phi3.lora_phi3",
        f"model.vocab_size={arch['vocab_size']}",
        f"checkpointer.checkpoint_dir={phi4_dir}",
        "checkpointer.checkpoint_files=[model.safetensors]",
        f"checkpointer.output_dir={out}",
        f"output_dir={out}",
        "tokenizer.max_seq_len=256",
        "dataset.source=json",
        f"dataset.data_files={alpaca_file}",
        "device=cpu",
        "dtype=fp32",
        "batch_size=2",
        "max_steps_per_epoch=2",
        "gradient_accumulation_steps=1",
        "enable_activation_checkpointing=False",
        "lr_scheduler.num_warmup_steps=0",
    ]
    config = CONFIGS / "14B_lora_single_device.yaml"
    result = CliRunner().invoke(
        cli, ["run", "lora_finetune_single_device", "--config", str(config), *overrides]
    )
    assert result.exit_code == 0, result.output
    assert "tokenizer.vocab_path: dropped" in result.output
    adapter_dir = out / "epoch_0" / "adapter"
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter["target_modules"] == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]
    # one key/value head: q's 64 rows, k's 16 and v's 16 in qkv_proj; q and v adapted
    from safetensors.torch import load_file

    weights = load_file(adapter_dir / "adapter_model.safetensors")
    b = weights["base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"]
    assert b.shape == (64 + 16 + 16, 16)
    assert b[64:80].abs().max() == 0  # k's rows: no LoRA of k
