"""The gated MLP of Llama-style decoders."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeedForward"]


class FeedForward(nn.Module):
    """``w2(activation(w1(x)) * w3(x))``: SwiGLU with SiLU, GeGLU with GELU.

    Biases come with the injected projections (``nn.Linear(..., bias=True)`` for
    Llama's ``mlp_bias``). A family that fuses gate and up (Phi-3's ``gate_up_proj``)
    splits the fused weight in its checkpoint adapter.

    Args:
        gate_proj: ``w1``, ``embed_dim -> hidden_dim`` (HF ``gate_proj``).
        down_proj: ``w2``, ``hidden_dim -> embed_dim`` (HF ``down_proj``).
        up_proj: ``w3``, ``embed_dim -> hidden_dim`` (HF ``up_proj``).
        activation: Applied to the gate; default SiLU.
    """

    def __init__(
        self,
        *,
        gate_proj: nn.Module,
        down_proj: nn.Module,
        up_proj: nn.Module,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.w1, self.w2, self.w3 = gate_proj, down_proj, up_proj
        self.activation = activation if activation is not None else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.activation(self.w1(x)) * self.w3(x))
