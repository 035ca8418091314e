"""The decoder: embeddings, a stack of residual blocks, a norm and the output head."""

from __future__ import annotations

import torch
from torch import nn

from tunesmith.modules._attention import MultiHeadAttention

__all__ = ["TiedLinear", "TransformerDecoder", "TransformerSelfAttentionLayer"]


class TransformerSelfAttentionLayer(nn.Module):
    """A pre-norm residual block: ``x + attn(sa_norm(x))``, then ``h + mlp(mlp_norm(h))``.

    Args:
        attn: A :class:`MultiHeadAttention`.
        mlp: The feed-forward network.
        sa_norm: Norm before attention.
        mlp_norm: Norm before the MLP.
        sa_post_norm: Norm of the attention output before the residual add (Gemma 2/3), or ``None``.
        mlp_post_norm: Norm of the MLP output before the residual add, or ``None``.
    """

    def __init__(
        self,
        *,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        sa_norm: nn.Module,
        mlp_norm: nn.Module,
        sa_post_norm: nn.Module | None = None,
        mlp_post_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.sa_norm, self.attn = sa_norm, attn
        self.mlp_norm, self.mlp = mlp_norm, mlp
        self.sa_post_norm = sa_post_norm or nn.Identity()
        self.mlp_post_norm = mlp_post_norm or nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = x + self.sa_post_norm(self.attn(self.sa_norm(x), mask=mask, input_pos=input_pos))
        return h + self.mlp_post_norm(self.mlp(self.mlp_norm(h)))


class TiedLinear:
    """The output head of a model whose embeddings and output weights are one tensor.

    A plain callable, not an ``nn.Module``: the weight belongs to the embedding, so the
    decoder's state dict has no ``output.weight``, and ``.to()`` / FSDP / loading move
    the one tensor both use.
    """

    def __init__(self, tied_module: nn.Embedding) -> None:
        self.tied_module = tied_module

    @property
    def weight(self) -> torch.Tensor:
        return self.tied_module.weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.tied_module.weight)


class TransformerDecoder(nn.Module):
    """A decoder-only language model assembled from injected parts.

    Args:
        tok_embeddings: ``vocab -> embed_dim``.
        layers: The residual blocks, run in order.
        norm: Final norm.
        output: ``embed_dim -> vocab``: an ``nn.Linear`` or a :class:`TiedLinear`.
        max_seq_len: The longest sequence the model was built for (the KV cache default).
        embed_scale: Multiply embeddings by this (Gemma: ``sqrt(embed_dim)``), or ``None``.
        final_softcap: Soft-cap the logits as ``c * tanh(logits / c)`` (Gemma 2), or ``None``.
    """

    def __init__(
        self,
        *,
        tok_embeddings: nn.Embedding,
        layers: list[nn.Module] | nn.ModuleList,
        norm: nn.Module,
        output: nn.Linear | TiedLinear,
        max_seq_len: int,
        embed_scale: float | None = None,
        final_softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.tok_embeddings = tok_embeddings
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.output = output  # registered as a submodule only when it is an nn.Module
        self.max_seq_len = max_seq_len
        self.embed_scale = embed_scale
        self.final_softcap = final_softcap

    # ---- KV cache ----------------------------------------------------------

    def setup_caches(
        self, batch_size: int, dtype: torch.dtype, *, max_seq_len: int | None = None
    ) -> None:
        """Give every attention layer a KV cache of ``max_seq_len`` slots (default ``self.max_seq_len``)."""
        for layer in self.layers:
            layer.attn.setup_cache(batch_size, dtype, max_seq_len or self.max_seq_len)

    def reset_caches(self) -> None:
        """Empty the caches, keeping their memory."""
        for layer in self.layers:
            layer.attn.kv_cache.reset()

    def caches_are_enabled(self) -> bool:
        return self.layers[0].attn.kv_cache is not None

    def remove_caches(self) -> None:
        """Drop the caches and return to full-sequence forward passes."""
        for layer in self.layers:
            layer.attn.kv_cache = None

    # ---- forward -----------------------------------------------------------

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for every position.

        Args:
            tokens: ``(b, s)`` token ids.
            mask: ``(b, s, kv_len)`` bool, True where a query may attend a key. Without
                caches ``kv_len == s`` (e.g. a block-causal mask for packed sequences) and
                ``None`` means causal. With caches ``kv_len`` is the cache length, one
                column per slot, and ``None`` means causal over the tokens fed so far.
            input_pos: ``(b, s)`` rotary positions, per row (a left-padded row starts
                counting at its first real token); default: the slot indices.

        Returns:
            ``(b, s, vocab)`` logits.
        """
        b, s = tokens.shape
        first = 0
        if self.caches_are_enabled():
            cache = self.layers[0].attn.kv_cache
            cache.check_room(s)
            first = cache.size
            if mask is None:
                slots = torch.arange(cache.max_seq_len, device=tokens.device)
                mask = (slots[None, :] <= slots[first : first + s, None]).expand(
                    b, s, -1
                )  # (b, s, cache_len)
        if input_pos is None:
            input_pos = torch.arange(first, first + s, device=tokens.device)
        input_pos = input_pos.expand(b, s)  # (b, s); a shared (s,) row is broadcast
        if mask is not None:
            # A query always sees itself, so a row of padding never has an all-False
            # mask (softmax over nothing is NaN, and NaN leaks through the cache).
            own = torch.arange(s, device=tokens.device)
            mask = mask.clone()
            mask[:, own, own + first] = True

        h = self.tok_embeddings(tokens)  # (b, s, embed_dim)
        if self.embed_scale is not None:
            h = h * torch.tensor(self.embed_scale, dtype=h.dtype)
        for layer in self.layers:
            h = layer(h, mask=mask, input_pos=input_pos)
        logits = self.output(self.norm(h))  # (b, s, vocab)
        if self.final_softcap is not None:
            logits = self.final_softcap * torch.tanh(logits / self.final_softcap)
        return logits
