"""Helpers: a tiny hand-made model whose linear leaves follow the native names, and a
checkpoint adapter that maps it to Hugging Face-style names."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

from tunesmith import CheckpointAdapter  # noqa: E402

DIM, HIDDEN, VOCAB, LAYERS = 64, 128, 96, 2


class Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(DIM, DIM, bias=False)
        self.k_proj = nn.Linear(DIM, DIM, bias=False)
        self.v_proj = nn.Linear(DIM, DIM, bias=True)
        self.output_proj = nn.Linear(DIM, DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not attention, just a mix that routes gradients through every projection
        return self.output_proj(self.q_proj(x) * torch.sigmoid(self.k_proj(x)) + self.v_proj(x))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Linear(DIM, HIDDEN, bias=False)
        self.w2 = nn.Linear(HIDDEN, DIM, bias=False)
        self.w3 = nn.Linear(DIM, HIDDEN, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sa_norm = nn.RMSNorm(DIM)
        self.attn = Attn()
        self.mlp_norm = nn.RMSNorm(DIM)
        self.mlp = MLP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.sa_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TiedLinear(nn.Module):
    """The output projection sharing the embedding matrix (not an nn.Linear)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = [embedding]  # a list, so the weight is not registered twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.embedding[0].weight)


class Toy(nn.Module):
    def __init__(self, *, tied: bool = False) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.norm = nn.RMSNorm(DIM)
        self.output = TiedLinear(self.tok_embeddings) if tied else nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_embeddings(tokens)  # (b, s, d)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.norm(x))  # (b, s, vocab)


def make_toy(seed: int = 0, *, tied: bool = False) -> Toy:
    torch.manual_seed(seed)
    model = Toy(tied=tied)
    with torch.no_grad():  # non-trivial norms, so mistakes in them show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


TOY_HF_TO_NATIVE = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attn.k_proj.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attn.v_proj.weight",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attn.v_proj.bias",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}


def randomize_adapters(model: nn.Module, seed: int = 3) -> None:
    """Give every adapter non-zero values (B starts at zero, which would hide bugs)."""
    from tunesmith_lora import lora_modules

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lora_modules(model).values():
            module.lora_b.weight.copy_(torch.randn(module.lora_b.weight.shape, generator=g) * 0.1)
            if module.use_dora:
                module.magnitude.mul_(1 + 0.2 * torch.rand(module.magnitude.shape, generator=g))


def toy_adapter() -> CheckpointAdapter:
    return CheckpointAdapter(
        family="toy",
        model_types=("toy",),
        hf_to_native=TOY_HF_TO_NATIVE,
        build_from_hf_config=lambda config, **kw: Toy(),
    )
