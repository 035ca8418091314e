"""The decoder: embeddings, a stack of residual blocks, a norm and the output head."""

from __future__ import annotations

import torch
from torch import nn

from tunesmith.modules._attention import MultiHeadAttention
from tunesmith.modules._masks import DocumentMask

__all__ = ["TiedLinear", "TransformerDecoder", "TransformerSelfAttentionLayer", "tied_heads"]


def _maybe(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


class TransformerSelfAttentionLayer(nn.Module):
    """A residual block: ``h = x + post(attn(pre(x)))``, then ``h + post(mlp(pre(h)))``.

    Every norm is optional, so one block serves each placement in use:

    - pre-norm only (Llama, Mistral, Qwen, Phi-3): ``sa_norm``, ``mlp_norm``;
    - post-norm only (OLMo 2): ``sa_post_norm``, ``mlp_post_norm``;
    - both (Gemma 2/3): all four.

    A norm left out is ``None``: it has no module and no state-dict entry.

    Args:
        attn: A :class:`MultiHeadAttention`.
        mlp: The feed-forward network.
        sa_norm: Norm of the block input before attention (HF ``input_layernorm``), or ``None``.
        mlp_norm: Norm before the MLP (HF Llama's ``post_attention_layernorm``,
            Gemma 2/3's ``pre_feedforward_layernorm``), or ``None``.
        sa_post_norm: Norm of the attention output before the residual add (Gemma 2/3,
            OLMo 2 ``post_attention_layernorm``), or ``None``.
        mlp_post_norm: Norm of the MLP output before the residual add (HF
            ``post_feedforward_layernorm``), or ``None``.
    """

    def __init__(
        self,
        *,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        sa_norm: nn.Module | None = None,
        mlp_norm: nn.Module | None = None,
        sa_post_norm: nn.Module | None = None,
        mlp_post_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.sa_norm, self.attn, self.sa_post_norm = sa_norm, attn, sa_post_norm
        self.mlp_norm, self.mlp, self.mlp_post_norm = mlp_norm, mlp, mlp_post_norm

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | DocumentMask | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attn_out = self.attn(_maybe(self.sa_norm, x), mask=mask, input_pos=input_pos)
        h = x + _maybe(self.sa_post_norm, attn_out)
        return h + _maybe(self.mlp_post_norm, self.mlp(_maybe(self.mlp_norm, h)))


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


def tied_heads(model: nn.Module) -> dict[str, nn.Module]:
    """Each :class:`TiedLinear` head in ``model``, by its dotted path (``"output"``),
    mapped to the embedding whose weight it reads.

    A tied head is a plain attribute, not a submodule, so ``named_modules`` and
    ``get_submodule`` never see it; code that wraps, replaces or saves layers asks here.
    """
    return {
        f"{prefix}.{name}" if prefix else name: value.tied_module
        for prefix, module in model.named_modules()
        for name, value in vars(module).items()
        if isinstance(value, TiedLinear)
    }


class TransformerDecoder(nn.Module):
    """A decoder-only language model assembled from injected parts.

    The layers are built by the caller, so anything may differ per layer: pass each
    :class:`MultiHeadAttention` its own ``sliding_window`` (Gemma 2 alternates local and
    global layers, Gemma 3 has five local per global one, Qwen 2 windows only layers from
    ``max_window_layers`` on) and its own ``pos_embeddings`` (Gemma 3's local and global
    layers use different RoPE bases). :func:`~tunesmith.modules.build_decoder` does this
    from per-layer lists.

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
        mask: torch.Tensor | DocumentMask | None = None,
        input_pos: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Logits for every position (or the hidden states the head would read).

        Args:
            tokens: ``(b, s)`` token ids.
            mask: ``(b, s, kv_len)`` bool, True where a query may attend a key. Without
                caches ``kv_len == s`` (e.g. a block-causal mask for packed sequences) and
                ``None`` means causal. With caches ``kv_len`` is the cache length, one
                column per slot, and ``None`` means causal over the tokens fed so far.
                Without caches a :class:`DocumentMask` gives packed documents causal
                attention each on its own slice (cheaper than the dense block mask).
            input_pos: ``(b, s)`` rotary positions, per row (a left-padded row starts
                counting at its first real token); default: the slot indices.
            return_hidden: Return the final-normed hidden states ``(b, s, embed_dim)``
                instead of logits, for a loss that applies :meth:`project` chunk by
                chunk (no full-vocabulary logits for the whole batch).

        Returns:
            ``(b, s, vocab)`` logits, or ``(b, s, embed_dim)`` with ``return_hidden``.
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
        if isinstance(mask, torch.Tensor):
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
        h = self.norm(h)  # (b, s, embed_dim)
        return h if return_hidden else self.project(h)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The head: final-normed hidden states ``(..., embed_dim)`` to logits
        ``(..., vocab)``, soft-capped where the model caps them (Gemma 2)."""
        logits = self.output(h)  # (..., vocab)
        if self.final_softcap is not None:
            logits = self.final_softcap * torch.tanh(logits / self.final_softcap)
        return logits
