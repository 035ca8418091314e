"""The tiny-checkpoint fixture other packages' tests build on."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from tunesmith_llama import tiny_llama_config, write_tiny_llama_checkpoint


def test_files_and_overrides(tmp_path):
    directory = write_tiny_llama_checkpoint(
        tmp_path / "ckpt", variant="llama2", dtype=torch.bfloat16, vocab_size=300
    )
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    config = json.loads((directory / "config.json").read_text())
    assert (config["vocab_size"], config["dtype"], config["model_type"]) == (
        300,
        "bfloat16",
        "llama",
    )
    assert json.loads((directory / "generation_config.json").read_text()) == {
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    with safe_open(directory / "model.safetensors", "pt") as f:
        embed = f.get_tensor("model.embed_tokens.weight")
        norm = f.get_tensor("model.norm.weight")
        assert "lm_head.weight" in f.keys()
    assert embed.dtype == torch.bfloat16 and embed.shape == (300, 64)
    assert 0.015 < embed.float().std() < 0.025
    assert 0.05 < (norm.float() - 1).std() < 0.15  # random around 1, not ones


def test_same_seed_same_weights(tmp_path):
    a = write_tiny_llama_checkpoint(tmp_path / "a", seed=5)
    b = write_tiny_llama_checkpoint(tmp_path / "b", seed=5)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_tied_variant_writes_no_lm_head(tmp_path):
    with safe_open(write_tiny_llama_checkpoint(tmp_path) / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys()


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown tiny Llama variant 'llama4'"):
        tiny_llama_config("llama4")
