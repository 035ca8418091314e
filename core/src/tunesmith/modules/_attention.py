"""Multi-head attention with grouped-query heads, RoPE and an optional KV cache."""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.modules._kv_cache import KVCache
from tunesmith.modules._masks import DocumentMask

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Causal self-attention built from injected projections.

    ``num_kv_heads < num_heads`` gives grouped-query attention (each key/value head
    serves ``num_heads // num_kv_heads`` query heads); ``num_kv_heads == 1`` is
    multi-query attention. The projections are plain ``nn.Linear`` modules under the
    names ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``, which is what PEFT
    methods wrap. Biases come with the projections: inject ``nn.Linear(..., bias=True)``
    for q/k/v only (Qwen 2) or for all four (Llama with ``attention_bias``).

    Args:
        embed_dim: Model width.
        num_heads: Query heads.
        num_kv_heads: Key/value heads; divides ``num_heads``.
        head_dim: Per-head dimension, independent of ``embed_dim // num_heads``
            (Gemma, Qwen 3 set it explicitly).
        q_proj: ``embed_dim -> num_heads * head_dim``.
        k_proj: ``embed_dim -> num_kv_heads * head_dim``.
        v_proj: ``embed_dim -> num_kv_heads * head_dim``.
        output_proj: ``num_heads * head_dim -> embed_dim``.
        pos_embeddings: Applied to queries and keys as ``f(x (b, s, h, d), input_pos (b, s))``;
            ``None`` for no positional encoding.
        q_norm: Norm of queries before RoPE, or ``None``; see ``qk_norm_scope``.
        k_norm: Norm of keys before RoPE, or ``None``; see ``qk_norm_scope``.
        qk_norm_scope: What ``q_norm``/``k_norm`` normalise. ``"head"``: each head
            vector, over ``head_dim`` (Qwen 3, Gemma 3; norms of size ``head_dim``).
            ``"full"``: the whole projection output, over ``num_heads * head_dim``
            (``num_kv_heads * head_dim`` for keys), before the split into heads (OLMo 2).
        sliding_window: Attend only to the last ``sliding_window`` tokens, the query
            included (Mistral, Gemma 2/3 local layers; HF's ``sliding_window``), or
            ``None`` for the whole context.
        softcap: Soft-cap attention logits as ``softcap * tanh(logits / softcap)``
            (Gemma 2's ``attn_logit_softcapping``), or ``None``. Uses an explicit matmul
            instead of SDPA.
        scale: Logit scale; default ``head_dim ** -0.5`` (Gemma 2/3:
            ``query_pre_attn_scalar ** -0.5``).
        attn_dropout: Dropout on attention weights while training.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        q_proj: nn.Module,
        k_proj: nn.Module,
        v_proj: nn.Module,
        output_proj: nn.Module,
        pos_embeddings: nn.Module | None = None,
        q_norm: nn.Module | None = None,
        k_norm: nn.Module | None = None,
        qk_norm_scope: Literal["head", "full"] = "head",
        sliding_window: int | None = None,
        softcap: float | None = None,
        scale: float | None = None,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _keep_document_attention_eager()
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
            )
        if qk_norm_scope not in ("head", "full"):
            raise ValueError(f"qk_norm_scope must be 'head' or 'full', not {qk_norm_scope!r}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.q_proj, self.k_proj, self.v_proj = q_proj, k_proj, v_proj
        self.output_proj = output_proj
        self.pos_embeddings = pos_embeddings
        self.q_norm, self.k_norm = q_norm, k_norm
        self.qk_norm_scope = qk_norm_scope
        self.sliding_window = sliding_window
        self.softcap = softcap
        self.scale = scale if scale is not None else head_dim**-0.5
        self.attn_dropout = attn_dropout
        self.kv_cache: KVCache | None = None

    def setup_cache(self, batch_size: int, dtype: torch.dtype, max_seq_len: int) -> None:
        """Allocate a :class:`KVCache` on the device of the projections."""
        device = next(self.q_proj.parameters()).device
        self.kv_cache = KVCache(
            batch_size, self.num_kv_heads, max_seq_len, self.head_dim, dtype, device
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | DocumentMask | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: ``(b, s, embed_dim)``.
            mask: ``(b, s, kv_len)`` bool, True where a query may attend a key
                (``kv_len`` is ``s`` without a cache, the cache length with one);
                ``None`` without a cache means causal. A :class:`DocumentMask` (packed
                documents, no cache) attends causally within each document's slice.
            input_pos: ``(b, s)`` rotary positions; default ``0 .. s-1``.

        Returns:
            ``(b, s, embed_dim)``.
        """
        b, s, _ = x.shape
        if input_pos is None:
            input_pos = torch.arange(s, device=x.device).expand(b, s)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (b, s, h * d), (b, s, h_kv * d)
        if self.qk_norm_scope == "full":
            q, k = self._norm_qk(q, k)
        q = q.view(b, s, self.num_heads, self.head_dim)  # (b, s, h, d)
        k = k.view(b, s, self.num_kv_heads, self.head_dim)  # (b, s, h_kv, d)
        v = v.view(b, s, self.num_kv_heads, self.head_dim)  # (b, s, h_kv, d)
        if self.qk_norm_scope == "head":
            q, k = self._norm_qk(q, k)
        if self.pos_embeddings is not None:
            q, k = self.pos_embeddings(q, input_pos), self.pos_embeddings(k, input_pos)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, h, s, d), (b, h_kv, s, d)

        if isinstance(mask, DocumentMask):
            if self.kv_cache is not None:
                raise ValueError("a DocumentMask (packed documents) cannot be used with a KV cache")
            out = self._attend_documents(q, k, v, mask)  # (b, h, s, d)
        else:
            first_slot = 0
            if self.kv_cache is not None:
                first_slot = self.kv_cache.size
                k, v = self.kv_cache.update(k, v)  # (b, h_kv, cache_len, d)
                if mask is not None and not torch.compiler.is_compiling():
                    # Eager, attend to the filled slots only (the rest are hidden anyway);
                    # compiled, the whole cache keeps the step's shapes static.
                    filled = self.kv_cache.size
                    k, v, mask = k[:, :, :filled], v[:, :, :filled], mask[..., :filled]
            out = self._attend(q, k, v, mask, first_slot)  # (b, h, s, d)
        out = out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)  # (b, s, h * d)
        return self.output_proj(out)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        first_slot: int,
    ) -> torch.Tensor:
        """Attention of ``q (b, h, s, d)`` over ``k, v (b, h_kv, kv_len, d)``; ``mask``
        ``(b, s, kv_len)`` or ``None`` (causal)."""
        s = q.shape[2]
        if self.sliding_window is not None:
            mask = self._window(mask, first_slot, s, k.shape[2], q.device)
        attn_mask = mask[:, None] if mask is not None else None  # (b, 1, s, kv_len)
        dropout = self.attn_dropout if self.training else 0.0
        if self.softcap is not None:
            return self._capped_attention(q, k, v, attn_mask, dropout)  # (b, h, s, d)
        grouped = self.num_heads > self.num_kv_heads
        native_gqa = grouped and _sdpa_groups_heads(q, attn_mask)
        if grouped and not native_gqa:
            group = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(group, dim=1)  # (b, h, kv_len, d)
            v = v.repeat_interleave(group, dim=1)  # (b, h, kv_len, d)
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=dropout,
            is_causal=mask is None,
            scale=self.scale,
            enable_gqa=native_gqa,
        )  # (b, h, s, d)

    def _attend_documents(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, documents: DocumentMask
    ) -> torch.Tensor:
        """Causal attention on each document's slice of the sequence: the work of the
        documents alone, none spent on the pairs a block-causal mask would hide."""
        if documents.shape[:2] != (q.shape[0], q.shape[2]):
            raise ValueError(
                f"the DocumentMask is for {documents.shape[:2]} (batch, sequence), the input "
                f"is {(q.shape[0], q.shape[2])}"
            )
        multiple = document_length_multiple(q.device, q.dtype)
        # unbind + split (not indexing): their backward stacks and concatenates the pieces'
        # gradients once, where slices would each add a zero-filled tensor of full size.
        rows = []
        rows_qkv = zip(q.unbind(0), k.unbind(0), v.unbind(0), strict=True)
        for row, (q_row, k_row, v_row) in enumerate(rows_qkv):
            lens = documents.seq_lens[row]
            pieces = zip(
                q_row.split(lens, 1), k_row.split(lens, 1), v_row.split(lens, 1), strict=True
            )
            parts = [self._attend_document(qd, kd, vd, multiple) for qd, kd, vd in pieces]
            rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))  # (1, h, s, d)
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)  # (b, h, s, d)

    def _attend_document(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, multiple: int
    ) -> torch.Tensor:
        """Causal attention of one document's ``(h, n, d)`` slices, as ``(1, h, n, d)``;
        computed over ``n`` rounded up to ``multiple`` with zero positions appended, which
        no real position attends to (they come after it) and whose outputs are dropped."""
        n = q.shape[1]
        extra = -n % multiple
        if extra:
            q, k, v = (F.pad(t, (0, 0, 0, extra)) for t in (q, k, v))  # (h, n + extra, d)
        out = self._attend(q[None], k[None], v[None], None, 0)  # (1, h, n + extra, d)
        return out[:, :, :n] if extra else out

    def _norm_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = q if self.q_norm is None else self.q_norm(q)
        k = k if self.k_norm is None else self.k_norm(k)
        return q, k

    def _window(
        self, mask: torch.Tensor | None, first_slot: int, s: int, kv_len: int, device: torch.device
    ) -> torch.Tensor:
        # Query i sits in slot first_slot + i; keys further back than the window are hidden.
        q_slot = torch.arange(first_slot, first_slot + s, device=device)[:, None]  # (s, 1)
        k_slot = torch.arange(kv_len, device=device)[None, :]  # (1, kv_len)
        window = (q_slot - k_slot < self.sliding_window)[None]  # (1, s, kv_len)
        if mask is None:  # no cache: causal
            mask = (k_slot <= q_slot)[None]
        return mask & window

    def _capped_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None,
        dropout: float,
    ) -> torch.Tensor:
        # Query heads grouped over their shared KV head: broadcasting, no copies of k, v.
        b, h, s, d = q.shape
        h_kv, kv_len = k.shape[1], k.shape[2]
        group = h // h_kv
        q = q.view(b, h_kv, group, s, d)  # (b, h_kv, group, s, d)
        k, v = k[:, :, None], v[:, :, None]  # (b, h_kv, 1, kv_len, d)
        scores = (q @ k.transpose(-2, -1)).view(b, h, s, kv_len) * self.scale  # (b, h, s, kv_len)
        scores = self.softcap * torch.tanh(scores / self.softcap)
        if attn_mask is None:
            attn_mask = torch.ones(s, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - s)
        scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = F.softmax(scores.float(), dim=-1).to(q.dtype)
        weights = F.dropout(weights, p=dropout, training=dropout > 0)
        out = weights.view(b, h_kv, group, s, kv_len) @ v  # (b, h_kv, group, s, d)
        return out.view(b, h, s, d)


#: Documents' lengths in bf16/fp16 attention on a CPU are rounded up to a multiple of this.
CPU_DOCUMENT_LENGTH_MULTIPLE = 16


def document_length_multiple(device: torch.device, dtype: torch.dtype) -> int:
    """The multiple a packed document's attention length is rounded up to, so that
    batches of new document lengths reuse the attention kernels of earlier ones.

    On a CPU, SDPA's bf16/fp16 kernel compiles oneDNN products for each new length:
    forward + backward of 8 heads x 64 over ~100 positions took 7 ms for a length seen
    first against 2 ms for one seen before, and 8 documents of new lengths 2.6x as long
    as rounded ones (``python benchmarks/micro.py --only attention_lengths``). fp32 and
    CUDA have no such cost. 16 adds ~4% to a ~200-token document's positions;
    :func:`~tunesmith.training.gemm_row_multiple` rounds the other products.

    Returns:
        ``CPU_DOCUMENT_LENGTH_MULTIPLE`` for bf16/fp16 on the CPU, else 1.
    """
    cpu = device.type == "cpu"
    return CPU_DOCUMENT_LENGTH_MULTIPLE if cpu and dtype in (torch.bfloat16, torch.float16) else 1


def _sdpa_groups_heads(q: torch.Tensor, attn_mask: torch.Tensor | None) -> bool:
    """Whether SDPA's ``enable_gqa`` reaches a fused kernel here, so k and v need no
    copies per query head: on the CPU always (its flash kernel takes masks too); on CUDA
    only for flash (fp16/bf16, no mask), since the memory-efficient kernel a mask needs
    does not group heads and ``enable_gqa`` would fall back to the math kernel."""
    if q.device.type == "cpu":
        return True
    return q.device.type == "cuda" and attn_mask is None and q.dtype in (
        torch.float16,
        torch.bfloat16,
    )


@functools.cache
def _keep_document_attention_eager() -> None:
    """Keep ``_attend_documents`` out of torch.compile's graphs: its loop runs over each
    batch's own document lengths, which would recompile the graph for every batch.

    Done once, when the first attention module is built rather than at import:
    ``torch.compiler.disable`` imports torch._dynamo (~1.5 s), which commands that build
    no model (``tunesmith ls``, ``cat``, ``download``) never need.
    """
    eager = torch.compiler.disable(MultiHeadAttention._attend_documents)
    MultiHeadAttention._attend_documents = eager  # type: ignore[method-assign]
