"""Root-mean-square layer norm, with the cast orders of the reference implementations."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RMSNorm"]


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x**2) + eps) * (weight_offset + weight)``.

    Always normalises in float32. Where the scale is applied decides whether bf16/fp16
    results agree bit for bit with a reference, so it is an option:

    - default (``scale_in_fp32=False``): cast the normalised input back to its dtype,
      then multiply by ``weight`` — Hugging Face's ``LlamaRMSNorm`` (Llama, Mistral,
      Qwen 2/2.5/3, Phi-3).
    - ``scale_in_fp32=True``: multiply by the weight in float32, then cast back —
      ``Olmo2RMSNorm`` and, with ``weight_offset=1.0``, ``GemmaRMSNorm``,
      ``Gemma2RMSNorm``, ``Gemma3RMSNorm``.

    Args:
        dim: Size of the last dimension.
        eps: Added to the mean square for numerical stability.
        weight_offset: Added to ``weight`` before scaling. Gemma 1/2/3 store offsets
            (``x * (1 + weight)``): use ``1.0``. The weight is initialised to
            ``1 - weight_offset``, so a fresh norm scales by one either way.
        scale_in_fp32: Multiply by the weight in float32 before casting back.
    """

    def __init__(
        self,
        dim: int,
        eps: float = 1e-6,
        *,
        weight_offset: float = 0.0,
        scale_in_fp32: bool = False,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight_offset = weight_offset
        self.scale_in_fp32 = scale_in_fp32
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - weight_offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.scale_in_fp32:
            scale = self.weight.float()
            if self.weight_offset:
                scale = self.weight_offset + scale
            return (normed * scale).to(x.dtype)
        scale = self.weight + self.weight_offset if self.weight_offset else self.weight
        return scale * normed.to(x.dtype)

    def extra_repr(self) -> str:
        extra = f", weight_offset={self.weight_offset}" if self.weight_offset else ""
        extra += ", scale_in_fp32=True" if self.scale_in_fp32 else ""
        return f"{self.weight.shape[0]}, eps={self.eps}{extra}"
