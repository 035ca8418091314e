"""Token-level cross-entropy in fp32, chunk by chunk, and token-normalised accumulation.

The contract the ``finetune`` recipe follows, so that the loss is the mean over
every non-ignored token of the optimizer step, however tokens fall across
micro-batches and ranks (averaging per-micro-batch means instead over-weights
short batches: the bug torchtune's distributed recipe carried for a while):

1. ``labels = shift_labels(batch["labels"])`` so ``logits[:, t]`` predicts
   ``labels[:, t]`` (the original token ``t + 1``).
2. For each micro-batch: ``loss_sum, n = loss_fn(logits, labels)`` — or, without
   ever forming the logits of the whole batch,
   ``loss_fn(model(tokens, return_hidden=True), labels, head=model.output,
   softcap=model.final_softcap)``; ``loss_sum.backward()`` (no division) and
   ``num_tokens += n``.
3. Before clipping: ``num_tokens`` is all-reduced (SUM) across data-parallel
   ranks when distributed; then ``scale_grads(params, world_size / num_tokens)``
   (``1 / num_tokens`` on one device). The factor ``world_size`` undoes the
   averaging FSDP2/DDP apply when they reduce gradients, so the result is
   ``d(sum of token losses over all ranks) / d(params) / total tokens``.
   Guard ``num_tokens`` with ``clamp(min=1)``: a step whose labels are all
   ignored has zero gradient, not NaN.
4. The loss to log is ``sum(loss_sum) / num_tokens`` (both all-reduced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX
from tunesmith.errors import ConfigError
from tunesmith.training._precision import gemm_row_multiple

__all__ = ["ChunkedCrossEntropyLoss", "scale_grads", "shift_labels"]


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy whose backward recomputes softmax one chunk at a time.

    Autograd through ``F.cross_entropy(logits.float())`` keeps the fp32
    log-probabilities of the whole sequence alive until backward, 2x the size of
    bf16 logits. Here only the logits themselves (already alive) are saved; the
    fp32 work never exceeds one chunk, and the gradient is written straight into
    one buffer of the logits' dtype. Double backward is not supported.
    """

    @staticmethod
    def forward(ctx, logits, labels, num_chunks: int, ignore_index: int):
        vocab = logits.shape[-1]
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        pieces = zip(logits.chunk(num_chunks, dim=1), labels.chunk(num_chunks, dim=1), strict=True)
        for x, y in pieces:
            total += F.cross_entropy(
                x.reshape(-1, vocab).float(),
                y.reshape(-1),
                ignore_index=ignore_index,
                reduction="sum",
            )
        ctx.save_for_backward(logits, labels)
        ctx.num_chunks = num_chunks
        ctx.ignore_index = ignore_index
        return total

    @staticmethod
    def backward(ctx, grad_output):
        logits, labels = ctx.saved_tensors
        vocab = logits.shape[-1]
        grad = torch.empty_like(logits)
        start = 0
        pieces = zip(
            logits.chunk(ctx.num_chunks, dim=1), labels.chunk(ctx.num_chunks, dim=1), strict=True
        )
        for x, y in pieces:
            end = start + x.shape[1]
            y = y.reshape(-1)
            valid = y != ctx.ignore_index
            # d(sum of -log p[label]) / d(logits) = softmax - one_hot(label), zero where ignored.
            g = torch.softmax(x.reshape(-1, vocab).float(), dim=-1)
            g.scatter_add_(1, torch.where(valid, y, 0)[:, None], -valid[:, None].float())
            g.mul_((valid.float() * grad_output)[:, None])
            grad[:, start:end].copy_(g.view(x.shape))
            start = end
        return grad, None, None, None


def _chunk_loss_and_grad(
    z: torch.Tensor, labels: torch.Tensor, softcap: float | None, want_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed cross-entropy of one chunk of head outputs ``z (n, v)`` (labels all
    valid), and its gradient with respect to ``z`` in ``z``'s dtype if asked.

    With ``want_grad`` (called from the autograd Function's forward, outside any
    graph) ``z`` is consumed: the softmax is computed in place in one ``(n, v)``
    buffer, where out-of-place steps allocated, and page-faulted, three more.
    """
    logits = z.float()
    tanh = None
    if softcap is not None:
        tanh = torch.tanh(logits / softcap)
        logits = softcap * tanh
    target = logits.gather(1, labels[:, None]).squeeze(1)  # (n,)
    if not want_grad:
        return (torch.logsumexp(logits, dim=-1) - target).sum(), None
    shift = logits.amax(dim=-1, keepdim=True)  # (n, 1)
    grad = logits.sub_(shift).exp_()  # (n, v), unnormalised
    total = grad.sum(dim=-1, keepdim=True)  # (n, 1)
    loss = (shift + total.log()).squeeze(1).sub_(target).sum()  # logsumexp - target
    grad.div_(total)  # softmax
    grad.scatter_add_(1, labels[:, None], torch.full_like(total, -1.0))
    if tanh is not None:
        grad.mul_(1 - tanh * tanh)  # d(c tanh(z / c)) / dz
    return loss, grad.to(z.dtype)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` (soft-capped), one row chunk at a time.

    Forward computes each chunk's logits, its loss and at once its gradients: the
    hidden-state gradient ``(n, d)`` and the weight gradient ``(v, d)``, accumulated
    by the GEMM itself (``addmm_``) in the weight's dtype. So no logits outlive their
    chunk and backward only scales what forward kept. Double backward is not supported.

    In bf16 the weight gradient is rounded once per chunk, as autograd accumulates
    torchtune's chunked head: measured at 8 chunks of 600 rows x 32,000 words, its
    error against fp64 is 1.47x that of one bf16 GEMM over all rows (transformers'),
    where an fp32 accumulator was 1.16x but cost 21 ms per chunk for the mixed-dtype
    add (16M elements) against 3 ms for the GEMM: a quarter of a bf16 full
    fine-tuning step of the benchmark model.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap, num_chunks, chunk_fn):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want = want_h or want_w
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros_like(weight) if want_w else None
        n, d = hidden.shape
        multiple = gemm_row_multiple(hidden.device, weight.dtype)
        size = max(1, _round_up(-(-n // num_chunks), multiple))  # rows a chunk, the last fewer
        # One buffer of head outputs (and one of their fp32 copy) serves every chunk:
        # fresh ones were page-faulted anew for each.
        scores = weight.new_empty(min(size, _round_up(n, multiple)), weight.shape[0])
        wide = None
        if scores.dtype != torch.float32:
            wide = torch.empty_like(scores, dtype=torch.float32)
        for a in range(0, n, size):
            c = min(size, n - a)
            h = hidden[a : a + c]  # (c, d)
            rows = _round_up(c, multiple)
            if rows > c:  # zero rows up to a shape whose kernels exist: they add nothing
                h = torch.cat([h, h.new_zeros(rows - c, d)])
            z = torch.mm(h, weight.T, out=scores[:rows])  # (rows, v)
            z_fp32 = z[:c] if wide is None else wide[:c].copy_(z[:c])
            loss, g = chunk_fn(z_fp32, labels[a : a + c], softcap, want)
            total += loss
            if not want:
                continue
            if g.data_ptr() != z.data_ptr():
                z[:c].copy_(g)  # the gradient, in the weight's dtype; padded rows stay 0
            if want_h:
                if rows == c:
                    torch.mm(z, weight, out=grad_h[a : a + c])  # (c, d), written in place
                else:
                    grad_h[a : a + c] = torch.mm(z, weight)[:c]
            if want_w:
                grad_w.addmm_(z.T, h)  # (v, d), accumulated by the GEMM itself
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h * grad_output.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_output.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None


def _plain_head_weight(head: Callable) -> torch.Tensor | None:
    """The weight of a head that is just ``x @ weight.T`` (an ``nn.Linear`` without bias,
    a tied head), else ``None`` (e.g. a head a PEFT method wrapped)."""
    from tunesmith.modules import TiedLinear

    if isinstance(head, TiedLinear):
        return head.weight
    if type(head) is nn.Linear and head.bias is None:
        return head.weight
    return None


class ChunkedCrossEntropyLoss(nn.Module):
    """Summed token cross-entropy computed in fp32, ``num_output_chunks`` chunks at a time.

    Returns the sum (not the mean) together with the token count so the recipe
    can normalise by the tokens of the whole optimizer step; see the module
    docstring for the accumulation contract.

    Given logits, it chunks the sequence. Given hidden states and the model's head
    (``head=model.output``, ``softcap=model.final_softcap``), it applies the head
    itself, only to the positions that have a label and one chunk of rows at a time,
    so neither the logits of the whole batch nor their fp32 copy ever exist and the
    head's work on prompt and padding positions is skipped. A plain head (an
    ``nn.Linear`` without bias, a tied embedding) gets its gradients inside the
    chunk loop; any other head (one a PEFT method wrapped) runs under activation
    checkpointing per chunk. :meth:`apply_compile_strategy` compiles the per-chunk
    arithmetic.

    Args:
        num_output_chunks: how many pieces the sequence is split into; more pieces
            bound the fp32 working memory tighter at a small speed cost.
        ignore_index: label value that contributes neither loss nor a token.
        min_chunk_rows: with hidden states, the fewest labelled rows a chunk holds
            (fewer, larger chunks when few positions have a label), since the head's
            GEMMs run slower on thin chunks: at 424 rows of the benchmark model, 8
            chunks took 225 ms forward + backward and 3 chunks 174 ms. A chunk then
            holds fewer than twice this many rows, or an even
            ``1 / num_output_chunks`` share of them, whichever is more.

    Raises:
        ConfigError: ``num_output_chunks`` or ``min_chunk_rows`` below 1.
    """

    def __init__(
        self,
        num_output_chunks: int = 8,
        ignore_index: int = CROSS_ENTROPY_IGNORE_IDX,
        min_chunk_rows: int = 128,
    ):
        super().__init__()
        for name, value, fix in (
            ("num_output_chunks", num_output_chunks, "use 8, or 1 for no chunking"),
            ("min_chunk_rows", min_chunk_rows, "use 128, or 1 to always split"),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"loss.{name} must be a positive integer, got {value!r}: {fix}")
        self.num_output_chunks = num_output_chunks
        self.min_chunk_rows = min_chunk_rows
        self.ignore_index = ignore_index
        self._chunk_fn = _chunk_loss_and_grad

    supports_hidden_states = True  # the finetune recipe passes hidden states and the head

    def apply_compile_strategy(self, **compile_kwargs) -> ChunkedCrossEntropyLoss:
        """Compile the per-chunk softmax/cross-entropy arithmetic (not the head's
        matmuls, which are already one BLAS call each) with dynamic shapes, since the
        number of labelled positions changes from batch to batch.

        Returns:
            ``self``.
        """
        self._chunk_fn = torch.compile(_chunk_loss_and_grad, dynamic=True, **compile_kwargs)
        return self

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        softcap: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of token losses and number of counted tokens.

        Args:
            logits: ``[b, s, v]`` scores, any float dtype; with ``head``, the hidden
                states ``[b, s, d]`` the head turns into scores.
            labels: ``[b, s]`` target ids already aligned with ``logits`` (see
                :func:`shift_labels`); ``ignore_index`` marks positions to skip.
            head: The model's output projection (``model.output``), or ``None`` when
                ``logits`` are scores already.
            softcap: With ``head``: soft-cap scores as ``c * tanh(z / c)`` (the model's
                ``final_softcap``), or ``None``.

        Returns:
            ``(loss_sum, num_tokens)``: an fp32 scalar and an int64 scalar tensor.

        Raises:
            ValueError: shapes that do not line up.
        """
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            what = "hidden states [b, s, d]" if head is not None else "logits [b, s, v]"
            raise ValueError(
                f"expected {what} and labels [b, s], got {tuple(logits.shape)} and "
                f"{tuple(labels.shape)}"
            )
        valid = labels != self.ignore_index
        num_tokens = valid.sum()
        if head is not None:
            return self._from_hidden(logits, labels, valid, head, softcap), num_tokens
        chunks = min(self.num_output_chunks, max(1, logits.shape[1]))
        loss_sum = _ChunkedCrossEntropy.apply(logits, labels, chunks, self.ignore_index)
        return loss_sum, num_tokens

    def _from_hidden(self, hidden, labels, valid, head, softcap) -> torch.Tensor:
        index = valid.reshape(-1).nonzero().squeeze(1)  # (n,) labelled positions
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)  # (n, d)
        targets = labels.reshape(-1).index_select(0, index)  # (n,)
        chunks = max(1, min(self.num_output_chunks, rows.shape[0] // self.min_chunk_rows))
        weight = _plain_head_weight(head)
        if weight is not None and torch.is_grad_enabled():
            loss = _LinearCrossEntropy.apply(rows, weight, targets, softcap, chunks, self._chunk_fn)
        else:
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            recompute = torch.is_grad_enabled()
            for h, y in zip(rows.tensor_split(chunks), targets.tensor_split(chunks), strict=True):
                if recompute:  # keep only the chunk's input; its logits are rebuilt in backward
                    total = total + checkpoint(
                        self._head_loss, h, y, head, softcap, use_reentrant=False
                    )
                else:
                    total = total + self._head_loss(h, y, head, softcap)
            loss = total
        if rows.shape[0] == 0:  # nothing to learn from: a zero that still reaches the graph
            loss = loss + hidden.sum().float() * 0.0
        return loss

    def _head_loss(self, h, y, head, softcap) -> torch.Tensor:
        return self._chunk_fn(head(h), y, softcap, False)[0]

    def extra_repr(self) -> str:
        return (
            f"num_output_chunks={self.num_output_chunks}, ignore_index={self.ignore_index}, "
            f"min_chunk_rows={self.min_chunk_rows}"
        )


def shift_labels(
    labels: torch.Tensor, ignore_index: int = CROSS_ENTROPY_IGNORE_IDX
) -> torch.Tensor:
    """Align labels with next-token logits: ``labels[:, 1:]`` padded with ``ignore_index``.

    After this, ``logits[:, t]`` (computed from tokens ``<= t``) is scored against
    ``shifted[:, t]`` (the token at ``t + 1``); the last position predicts nothing.

    Args:
        labels: ``[b, s]`` label ids, the same positions as the input tokens.
        ignore_index: value for the padded last column.

    Returns:
        A new ``[b, s]`` tensor.
    """
    pad = labels.new_full((labels.shape[0], 1), ignore_index)
    return torch.cat([labels[:, 1:], pad], dim=1)


@torch.no_grad()
def scale_grads(params: Iterable[torch.Tensor] | nn.Module, scale: torch.Tensor | float) -> None:
    """Multiply every existing ``.grad`` in place by ``scale``.

    Args:
        params: parameters (or a module, whose parameters are used); those without
            a gradient are skipped.
        scale: a scalar; a tensor is moved to each gradient's device, so a
            CUDA-resident token count never forces a host sync.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    for p in params:
        if p.grad is None:
            continue
        if isinstance(scale, torch.Tensor):
            p.grad.mul_(scale.to(p.grad.device))
        else:
            p.grad.mul_(scale)
