"""Rotary positional embeddings in the "rotate half" convention of Hugging Face.

Each head vector is split into two halves ``(x1, x2)`` rotated pairwise by the
angle ``position * inv_freq[i]``. Meta's original code rotates interleaved pairs
``(x0, x1), (x2, x3), ...``; checkpoint adapters permute Meta's q/k weights once
so every model here uses the same convention as HF.

The frequency tables follow ``transformers.modeling_rope_utils`` (transformers 5)
operation for operation, so they agree with ``ROPE_INIT_FUNCTIONS`` bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "ROPE_TYPES",
    "RotaryPositionalEmbeddings",
    "rope_frequencies",
    "rope_inverse_frequencies",
]

#: The ``rope_type`` values :func:`rope_frequencies` implements.
ROPE_TYPES = ("default", "linear", "llama3", "longrope", "yarn")


def _get(scaling: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = scaling.get(key)
    return default if value is None else value


def _require(scaling: Mapping[str, Any], rope_type: str, *keys: str) -> list[Any]:
    missing = [key for key in keys if scaling.get(key) is None]
    if missing:
        raise ValueError(f"rope_type {rope_type!r} needs {', '.join(missing)} in its scaling dict")
    return [scaling[key] for key in keys]


def _exponents(dim: int) -> torch.Tensor:
    # int64 arange, then float, on CPU: the exact recipe HF uses, so tables agree bit for bit.
    return torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim


def _llama3(inv_freq: torch.Tensor, scaling: Mapping[str, Any]) -> torch.Tensor:
    factor, low, high, old_len = _require(
        scaling,
        "llama3",
        "factor",
        "low_freq_factor",
        "high_freq_factor",
        "original_max_position_embeddings",
    )
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths (> old_len / low) are slowed by `factor`, short ones
    # (< old_len / high) kept, and the band between interpolated smoothly.
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, blended, scaled)


def _yarn(dim: int, base: float, scaling: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    factor, old_len = _require(scaling, "yarn", "factor", "original_max_position_embeddings")

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = (
            float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)
        )
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = torch.clamp(
        (torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low), 0, 1
    )

    # Dimensions that turn fast keep their frequency (extrapolation), slow ones are
    # divided by `factor` (interpolation), and the band between blends linearly.
    pos_freqs = base ** _exponents(dim)
    extrapolate = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolate) + (1.0 / pos_freqs) * extrapolate
    return inv_freq, attention_factor


def _longrope(
    dim: int, base: float, scaling: Mapping[str, Any], seq_len: int | None
) -> tuple[torch.Tensor, float]:
    short, long, old_len = _require(
        scaling, "longrope", "short_factor", "long_factor", "original_max_position_embeddings"
    )
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        (factor,) = _require(scaling, "longrope", "factor")
        attention_factor = (
            1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(old_len))
        )
    factors = long if seq_len and seq_len > old_len else short
    ext = torch.tensor(factors, dtype=torch.float32, device="cpu")
    return 1.0 / (ext * base ** _exponents(dim)), attention_factor


def rope_frequencies(
    dim: int,
    base: float = 10_000.0,
    scaling: Mapping[str, Any] | None = None,
    *,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, float]:
    """The ``dim // 2`` rotation frequencies (float32, CPU) and the factor cos/sin are scaled by.

    The same ``(inv_freq, attention_factor)`` pair transformers'
    ``ROPE_INIT_FUNCTIONS[rope_type](config, seq_len=seq_len)`` returns.

    Args:
        dim: Rotary dimension (the head dimension, or a fraction of it for partial RoPE).
        base: ``rope_theta``.
        scaling: ``None`` or ``{"rope_type": "default"}``: plain RoPE. Otherwise a
            transformers ``rope_parameters``/``rope_scaling`` dict (``type`` is accepted
            for ``rope_type``; ``None`` values mean "use the default"):

            - ``linear``: ``factor``; positions divided by it.
            - ``llama3``: ``factor``, ``low_freq_factor``, ``high_freq_factor``,
              ``original_max_position_embeddings`` (Llama 3.1+): long wavelengths slowed
              by ``factor``, short ones kept, the band between blended.
            - ``yarn``: ``factor``, ``original_max_position_embeddings``, optional
              ``attention_factor``, ``beta_fast`` (32), ``beta_slow`` (1), ``mscale``,
              ``mscale_all_dim``, ``truncate`` (True) (Qwen 2.5/3 long context).
            - ``longrope``: ``short_factor``, ``long_factor`` (one per frequency),
              ``original_max_position_embeddings``, and ``attention_factor`` or ``factor``
              (transformers uses ``max_position_embeddings / original_max_position_embeddings``
              when a config gives no factor) (Phi-3 128k).
        seq_len: Only for ``longrope``: above ``original_max_position_embeddings`` the
            long factors apply, otherwise the short ones.

    Raises:
        ValueError: an unknown ``rope_type`` (the message lists :data:`ROPE_TYPES`), or a
            required key missing.
    """
    scaling = dict(scaling or {})
    rope_type = _get(scaling, "rope_type", _get(scaling, "type", "default"))
    if rope_type == "longrope":
        return _longrope(dim, base, scaling, seq_len)
    if rope_type == "yarn":
        return _yarn(dim, base, scaling)
    inv_freq = 1.0 / (base ** _exponents(dim))
    if rope_type == "default":
        return inv_freq, 1.0
    if rope_type == "linear":
        (factor,) = _require(scaling, "linear", "factor")
        return inv_freq / factor, 1.0
    if rope_type == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    raise ValueError(
        f"unsupported rope_type {rope_type!r}: expected one of {', '.join(ROPE_TYPES)}"
    )


def rope_inverse_frequencies(
    dim: int, base: float = 10_000.0, scaling: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """The ``dim // 2`` rotation frequencies, float32 on CPU: :func:`rope_frequencies` without
    the attention factor (and, for ``longrope``, the short factors).

    Raises:
        ValueError: an unknown ``rope_type``.
    """
    return rope_frequencies(dim, base, scaling)[0]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositionalEmbeddings(nn.Module):
    """Applies RoPE to queries or keys.

    The frequency tables are computed once on CPU at construction, so the module has
    no state-dict entries and works unchanged after building on the meta device. One
    instance may serve every layer; a model whose layers differ (Gemma 3: local layers
    with base 10k, global ones with 1M and linear scaling) gives each attention its own.

    Scaled variants multiply cos/sin by the variant's attention factor (``yarn``,
    ``longrope``) as transformers does. ``longrope`` uses its long factors whenever the
    largest position in a call reaches past ``original_max_position_embeddings``, its
    short ones otherwise — per forward call, as transformers' ``dynamic_rope_update``.

    Args:
        dim: Rotary dimension. When it is smaller than the head dimension (partial RoPE,
            ``partial_rotary_factor < 1``) only the first ``dim`` features rotate and the
            rest pass through, as in transformers' Phi-3.
        base: ``rope_theta``.
        scaling: Frequency scaling, see :func:`rope_frequencies`.
        rotate_in_fp32: Rotate in float32 and cast the result back, as HF OLMo-2 does
            (its rotary embedding returns float32 cos/sin). The default casts cos/sin to
            the input's dtype and rotates in it, as HF Llama, Mistral, Qwen 2/3, Gemma
            1/2/3 and Phi-3 do.
    """

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10_000.0,
        scaling: Mapping[str, Any] | None = None,
        rotate_in_fp32: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.scaling = dict(scaling) if scaling else None
        self.rotate_in_fp32 = rotate_in_fp32
        self.inv_freq, self.attention_factor = rope_frequencies(dim, base, scaling)
        self.long_inv_freq: torch.Tensor | None = None
        self.original_max_position_embeddings: int | None = None
        rope_type = (self.scaling or {}).get("rope_type", (self.scaling or {}).get("type"))
        if rope_type == "longrope":
            old_len = self.scaling["original_max_position_embeddings"]
            self.long_inv_freq = rope_frequencies(dim, base, scaling, seq_len=old_len + 1)[0]
            self.original_max_position_embeddings = old_len
        # Each table's copy per device, the home device's filled now: a compiled model
        # would otherwise see this dict change after its first call, and compile again.
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {
            (name, table.device): table
            for name in ("inv_freq", "long_inv_freq")
            if isinstance(table := getattr(self, name), torch.Tensor)
        }

    def _table(self, name: str, device: torch.device) -> torch.Tensor:
        if (name, device) not in self._on_device:
            self._on_device[name, device] = getattr(self, name).to(device)
        return self._on_device[name, device]

    def cos_sin(
        self, input_pos: torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 ``cos`` and ``sin`` of shape ``(b, s, dim)`` for positions ``(b, s)``,
        scaled by the attention factor: what transformers' rotary embedding computes
        before its final cast."""
        device = device if device is not None else input_pos.device
        inv_freq = self._table("inv_freq", device)
        if self.long_inv_freq is not None:
            # A 0-dim condition picks one table for the whole call without a host sync.
            seq_len = input_pos.max() + 1
            long = self._table("long_inv_freq", device)
            inv_freq = torch.where(seq_len > self.original_max_position_embeddings, long, inv_freq)
        angles = input_pos[..., None].float() * inv_freq  # (b, s, dim/2)
        angles = torch.cat((angles, angles), dim=-1)  # (b, s, dim)
        cos, sin = angles.cos(), angles.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos, sin

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape ``(b, s, h, d)`` by positions ``input_pos`` of shape ``(b, s)``."""
        cos, sin = self.cos_sin(input_pos, x.device)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # (b, s, 1, dim)
        if not self.rotate_in_fp32:
            cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x_rot, x_pass = x[..., : self.dim], x[..., self.dim :]
        out = (x_rot * cos + _rotate_half(x_rot) * sin).to(x.dtype)
        return out if x_pass.shape[-1] == 0 else torch.cat((out, x_pass), dim=-1)

    def extra_repr(self) -> str:
        extra = ", rotate_in_fp32=True" if self.rotate_in_fp32 else ""
        return f"dim={self.dim}, base={self.base}, scaling={self.scaling}{extra}"
