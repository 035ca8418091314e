"""PEFT fine-tuning end to end: LoRA and DoRA train only their adapters, and what a
run writes loads in peft and transformers with our logits; adapter-only saving;
QLoRA on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from .helpers import (
    hf_logits,
    leftovers,
    losses,
    our_logits,
    read_weights,
    run_ok,
    sample_tokens,
)

RANK, ALPHA = 4, 8.0
PEFT = {
    "lora_attn_modules": ["q_proj", "v_proj"],
    "apply_lora_to_mlp": True,
    "lora_rank": RANK,
    "lora_alpha": ALPHA,
}
# Adapters start as a no-op (B = 0), so they get a higher learning rate and two epochs.
TRAIN = {"epochs": 2, "optimizer": {"lr": 3.0e-2}}
PREFIX = "base_model.model."
ADAPTED = ("self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _adapted_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(out, in) of each adapted HF module of one layer."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = config["head_dim"]
    return {
        "self_attn.q_proj": (config["num_attention_heads"] * head_dim, hidden),
        "self_attn.v_proj": (config["num_key_value_heads"] * head_dim, hidden),
        "mlp.gate_proj": (inter, hidden),
        "mlp.up_proj": (inter, hidden),
        "mlp.down_proj": (hidden, inter),
    }


def _expected_counts(base_dir, *, dora: bool) -> tuple[int, int]:
    config = json.loads((base_dir / "config.json").read_text())
    per_layer = sum(
        RANK * (out + inp) + (out if dora else 0) for out, inp in _adapted_shapes(config).values()
    )
    trainable = config["num_hidden_layers"] * per_layer
    base = sum(t.numel() for t in read_weights(base_dir).values())
    return trainable, base + trainable


def _training_line(trainable: int, total: int) -> str:
    return (
        f"Training {trainable:,} of {total:,} parameters "
        f"({100 * trainable / total:.2f}%) on cpu in float32"
    )


def _expected_merge(base: dict, adapter: dict, *, dora: bool) -> dict[str, torch.Tensor]:
    """The merged HF weights the base and the saved adapter imply."""
    merged = dict(base)
    for key, weight in base.items():
        module = key.removesuffix(".weight")
        if f"{PREFIX}{module}.lora_A.weight" not in adapter:
            continue
        a = adapter[f"{PREFIX}{module}.lora_A.weight"].double()
        b = adapter[f"{PREFIX}{module}.lora_B.weight"].double()
        new = weight.double() + (ALPHA / RANK) * b @ a
        if dora:
            magnitude = adapter[f"{PREFIX}{module}.lora_magnitude_vector"].double()
            new = new * (magnitude / new.norm(dim=1)).unsqueeze(1)
        merged[key] = new.float()
    return merged


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_adapters_train_and_load_in_peft_and_transformers(make_config, base_dir, dora):
    config, out = make_config(peft={"_component_": "lora", **PEFT, "use_dora": dora}, **TRAIN)
    result = run_ok("lora_finetune_single_device", config)
    trainable, total = _expected_counts(base_dir, dora=dora)
    assert _training_line(trainable, total) in result.stdout

    curve = losses(out)
    assert sorted(curve) == list(range(1, 9))
    assert curve[8] < curve[1] - 0.3, curve  # prompts trained: slower than EOS alone

    epoch = out / "epoch_0"
    adapter_dir = epoch / "adapter"
    assert sorted(p.name for p in adapter_dir.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert not (epoch / "adapter_config.json").exists()  # transformers would apply it again
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["use_dora"] is dora
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (RANK, ALPHA)
    assert sorted(adapter_config["target_modules"]) == sorted(m.rpartition(".")[2] for m in ADAPTED)
    adapter = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert sum(t.numel() for t in adapter.values()) == trainable
    assert all(adapter[k].abs().max() > 0 for k in adapter if k.endswith("lora_B.weight")), (
        "the adapters did not train"
    )

    # Only adapters trained: everything else in the merged weights is the base, bit for
    # bit, and the adapted weights are exactly base + scale * B A (DoRA: row-rescaled).
    base, merged = read_weights(base_dir), read_weights(epoch)
    assert sorted(merged) == sorted(base)
    want = _expected_merge(base, adapter, dora=dora)
    for key in base:
        if key.removesuffix(".weight").endswith(ADAPTED):
            torch.testing.assert_close(merged[key], want[key], atol=1e-6, rtol=0)
            assert not torch.equal(merged[key], base[key]), key
        else:
            assert torch.equal(merged[key], base[key]), key

    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    ours = our_logits(base_dir, tokens, adapter=epoch)
    torch.testing.assert_close(
        hf_logits(base_dir, tokens, adapter=adapter_dir), ours, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(hf_logits(epoch, tokens), ours, atol=1e-5, rtol=0)
    assert (ours - our_logits(base_dir, tokens)).abs().max() > 1e-2  # the adapter matters


def test_save_adapter_weights_only(make_config, base_dir):
    config, out = make_config(peft={"_component_": "lora", **PEFT}, save_adapter_weights_only=True)
    run_ok("lora_finetune_single_device", config)
    epoch = out / "epoch_0"
    assert not list(epoch.glob("model*.safetensors")), sorted(p.name for p in epoch.iterdir())
    assert not (epoch / "model.safetensors.index.json").exists()
    assert (epoch / "adapter" / "adapter_model.safetensors").is_file()
    assert (epoch / "adapter" / "adapter_config.json").is_file()
    assert leftovers(out) == []

    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    torch.testing.assert_close(
        hf_logits(base_dir, tokens, adapter=epoch / "adapter"),
        our_logits(base_dir, tokens, adapter=epoch),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("dora", [False, True], ids=["qlora", "qdora"])
def test_qlora_trains_on_cpu(make_config, base_dir, dora):
    config, out = make_config(
        peft={"_component_": "qlora", "lora_attn_modules": ["q_proj", "v_proj"],
              "lora_rank": RANK, "lora_alpha": ALPHA, "use_dora": dora},
        **TRAIN,
    )  # fmt: skip
    result = run_ok("qlora_finetune_single_device", config)
    config_json = json.loads((base_dir / "config.json").read_text())
    shapes = _adapted_shapes(config_json)
    trainable = config_json["num_hidden_layers"] * sum(
        RANK * sum(shapes[m]) + (shapes[m][0] if dora else 0)
        for m in ("self_attn.q_proj", "self_attn.v_proj")
    )
    total = sum(t.numel() for t in read_weights(base_dir).values()) + trainable
    assert _training_line(trainable, total) in result.stdout
    curve = losses(out)
    assert sorted(curve) == list(range(1, 9))
    assert curve[8] < curve[1] - 0.1, curve  # q and v only, 8 steps

    epoch = out / "epoch_0"
    adapter = load_file(str(epoch / "adapter" / "adapter_model.safetensors"))
    assert sum(t.numel() for t in adapter.values()) == trainable
    base, merged = read_weights(base_dir), read_weights(epoch)
    assert sorted(merged) == sorted(base)
    adapter_config = json.loads((epoch / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is dora
    assert any(k.endswith("lora_magnitude_vector") for k in adapter) is dora
    # Merged = dequantized NF4 base + scale * B A (DoRA: row-rescaled): off the
    # full-precision merge by the NF4 rounding of the base (16 levels per block of 64).
    full_precision = _expected_merge(base, adapter, dora=dora)
    for key in base:
        if key.endswith(("q_proj.weight", "v_proj.weight")):
            error = (merged[key] - full_precision[key]).abs()
            assert 1e-4 < error.mean() < 0.15 * base[key].abs().mean(), (key, error.mean())
            assert error.max() < 0.25 * base[key].abs().max(), (key, error.max())
            assert not torch.equal(merged[key], base[key]), key
        else:
            assert torch.equal(merged[key], base[key]), key
    # The merged weights are plain fp32 that transformers runs as we do.
    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    torch.testing.assert_close(
        hf_logits(epoch, tokens), our_logits(epoch, tokens), atol=1e-5, rtol=0
    )
