"""A tiny fake model family, so checkpoint tests need no real family plugin.

Imported by the tests in this directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from tunesmith import CheckpointAdapter, hookimpl

HF_TO_NATIVE = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
META_TO_NATIVE = {
    "tok_embeddings.weight": "tok_embeddings.weight",
    "layers.{}.attention_norm.weight": "layers.{}.sa_norm.weight",
    "layers.{}.attention.wq.weight": "layers.{}.attn.q_proj.weight",
    "layers.{}.attention.wo.weight": "layers.{}.attn.output_proj.weight",
    "layers.{}.feed_forward.w3.weight": "layers.{}.mlp.w3.weight",
    "norm.weight": "norm.weight",
    "output.weight": "output.weight",
}


class Attn(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.output_proj = nn.Linear(dim, dim, bias=False)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w3 = nn.Linear(dim, hidden, bias=False)


class Layer(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.sa_norm = nn.RMSNorm(dim)
        self.attn = Attn(dim)
        self.mlp = Mlp(dim, hidden)
        # Recomputed buffer that checkpoints never hold (like a RoPE cache).
        self.register_buffer("cache", torch.zeros(2), persistent=True)


class TinyDecoder(nn.Module):
    """Native key layout of the team contract, small enough to build instantly."""

    def __init__(self, *, vocab: int, dim: int, hidden: int, layers: int, tied: bool) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Layer(dim, hidden) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.output = nn.Linear(dim, vocab, bias=False)
        if tied:
            self.output.weight = self.tok_embeddings.weight
        self.max_seq_len = 16

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = h + layer.attn.output_proj(layer.attn.q_proj(layer.sa_norm(h)))
        return self.output(self.norm(h))


def build_from_hf_config(config: dict, **overrides) -> TinyDecoder:
    args = {
        "vocab": config["vocab_size"],
        "dim": config["hidden_size"],
        "hidden": config["intermediate_size"],
        "layers": config["num_hidden_layers"],
        "tied": config.get("tie_word_embeddings", False),
    }
    return TinyDecoder(**{**args, **overrides})


def hf_config_from_meta_params(params: dict) -> dict:
    return {
        "model_type": "fakelm",
        "vocab_size": params["vocab_size"],
        "hidden_size": params["dim"],
        "intermediate_size": params["hidden_dim"],
        "num_hidden_layers": params["n_layers"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def meta_to_native(state_dict: dict, params: dict) -> dict:
    from tunesmith.checkpoint import remap_keys

    return remap_keys(
        state_dict, META_TO_NATIVE, ignore=(r"^rope\.freqs$",), source="Meta checkpoint"
    )


FAKE_ADAPTER = CheckpointAdapter(
    family="fake",
    model_types=("fakelm",),
    aliases=("FAKE_V2",),
    hf_to_native=HF_TO_NATIVE,
    build_from_hf_config=build_from_hf_config,
    meta_to_native=meta_to_native,
    hf_config_from_meta_params=hf_config_from_meta_params,
)


class FakePlugin:
    @hookimpl
    def register_checkpoint_adapters(self, register):
        register(FAKE_ADAPTER)


CONFIG = {
    "model_type": "fakelm",
    "architectures": ["FakeForCausalLM"],
    "vocab_size": 32,
    "hidden_size": 8,
    "intermediate_size": 12,
    "num_hidden_layers": 2,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def native_to_hf(native: dict) -> dict:
    from tunesmith.checkpoint import remap_keys

    return remap_keys(native, FAKE_ADAPTER.native_to_hf)


def write_fake_hf(
    directory: Path, *, tied: bool = False, dtype=torch.float32, seed: int = 0
) -> dict:
    """A fake HF model dir; returns the native state dict it holds."""
    torch.manual_seed(seed)
    config = {**CONFIG, "tie_word_embeddings": tied}
    model = build_from_hf_config(config)
    native = {
        k: v.detach().to(dtype).clone()
        for k, v in model.state_dict().items()
        if not k.endswith(".cache") and not (tied and k == "output.weight")
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_file(native_to_hf(native), str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text("{}")
    (directory / "generation_config.json").write_text("{}")
    return native


def write_fake_meta(directory: Path, seed: int = 0) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    params = {"dim": 8, "hidden_dim": 12, "n_layers": 2, "vocab_size": 32, "norm_eps": 1e-5}
    model = build_from_hf_config(hf_config_from_meta_params(params))
    native = {
        k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(".cache")
    }
    native_to_meta = {v: k for k, v in META_TO_NATIVE.items()}
    from tunesmith.checkpoint import remap_keys

    meta = remap_keys(native, native_to_meta)
    meta["rope.freqs"] = torch.ones(4)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(meta, directory / "consolidated.00.pth")
    (directory / "params.json").write_text(json.dumps(params))
    (directory / "tokenizer.model").write_bytes(b"fake-tokenizer")
    return native, params
