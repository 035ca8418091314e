"""A preallocated key/value cache for incremental decoding."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KVCache"]


class KVCache(nn.Module):
    """Keys and values of the tokens fed so far, one slot per token.

    Slots fill in the order tokens arrive (``size`` is the next free slot), the same
    for every row of the batch; a token's rotary position (``input_pos``) is separate,
    so a left-padded batch shares slots while each row counts positions from its own
    first real token. The attention mask has one column per slot.

    Args:
        batch_size: Rows the cache holds.
        num_kv_heads: Key/value heads.
        max_seq_len: Slots per row.
        head_dim: Per-head dimension.
        dtype: Storage dtype.
        device: Storage device.
    """

    def __init__(
        self,
        batch_size: int,
        num_kv_heads: int,
        max_seq_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        # Not persistent: a cache is never part of a checkpoint.
        self.register_buffer(
            "k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False
        )
        self.register_buffer(
            "v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False
        )
        self.max_seq_len = max_seq_len
        self.size = 0

    def reset(self) -> None:
        """Empty the cache (the buffers are reused)."""
        self.k_cache.zero_()
        self.v_cache.zero_()
        self.size = 0

    def check_room(self, s: int) -> None:
        """Raise ``RuntimeError`` unless ``s`` more tokens fit."""
        if self.size + s > self.max_seq_len:
            raise RuntimeError(
                f"KV cache is full: {self.size} + {s} tokens exceed its {self.max_seq_len} slots; "
                "call setup_caches with a larger max_seq_len or reset_caches between prompts"
            )

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` of shape ``(b, n_kv, s, d)`` in the next ``s`` slots.

        Returns:
            The whole caches, ``(b, n_kv, max_seq_len, d)`` each; unused slots are
            zeros that the mask must exclude.

        Raises:
            RuntimeError: the cache has fewer than ``s`` free slots.
        """
        s = k.shape[2]
        self.check_room(s)
        self.k_cache[:, :, self.size : self.size + s] = k
        self.v_cache[:, :, self.size : self.size + s] = v
        self.size += s
        return self.k_cache, self.v_cache
