"""Rotary positional embeddings in the "rotate half" convention of Hugging Face.

Each head vector is split into two halves ``(x1, x2)`` rotated pairwise by the
angle ``position * inv_freq[i]``. Meta's original code rotates interleaved pairs
``(x0, x1), (x2, x3), ...``; checkpoint adapters permute Meta's q/k weights once
so every model here uses the same convention as HF.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["RotaryPositionalEmbeddings", "rope_inverse_frequencies"]

ROPE_TYPES = ("default", "llama3", "linear")


def rope_inverse_frequencies(
    dim: int, base: float = 10_000.0, scaling: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """The ``dim // 2`` rotation frequencies, float32 on CPU.

    Args:
        dim: Rotary dimension (the head dimension).
        base: ``rope_theta``.
        scaling: ``None`` or ``{"rope_type": "default"}``: plain RoPE.
            ``{"rope_type": "linear", "factor": f}``: positions divided by ``f``.
            ``{"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings"}``: Llama 3.1's scaling, which slows
            long wavelengths by ``factor``, keeps short ones and blends in between.

    Raises:
        ValueError: an unknown ``rope_type``.
    """
    # int64 arange, then float, on CPU: the exact recipe HF uses, so tables agree bit for bit.
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim
    inv_freq = 1.0 / (base**exponents)
    scaling = dict(scaling or {})
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return inv_freq / scaling["factor"]
    if rope_type == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        # Long wavelengths (> old_len / low) are slowed by `factor`, short ones
        # (< old_len / high) kept, and the band between interpolated smoothly.
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(is_medium, blended, scaled)
    raise ValueError(f"unsupported rope_type {rope_type!r}: expected one of {ROPE_TYPES}")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositionalEmbeddings(nn.Module):
    """Applies RoPE to queries or keys.

    The frequency table is computed once on CPU at construction, so the module has
    no state-dict entries and works unchanged after building on the meta device.

    Args:
        dim: Rotary dimension (the head dimension).
        base: ``rope_theta``.
        scaling: Frequency scaling, see :func:`rope_inverse_frequencies`.
    """

    def __init__(
        self, dim: int, *, base: float = 10_000.0, scaling: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.scaling = dict(scaling) if scaling else None
        self.inv_freq = rope_inverse_frequencies(dim, base, scaling)
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def _inv_freq(self, device: torch.device) -> torch.Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.inv_freq.to(device)
        return self._on_device[device]

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape ``(b, s, h, d)`` by positions ``input_pos`` of shape ``(b, s)``."""
        angles = input_pos[..., None].float() * self._inv_freq(x.device)  # (b, s, d/2)
        angles = torch.cat((angles, angles), dim=-1)[:, :, None, :]  # (b, s, 1, d)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        return x * cos + _rotate_half(x) * sin

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, scaling={self.scaling}"
