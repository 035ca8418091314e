"""Token-level cross-entropy in fp32, chunk by chunk, and token-normalised accumulation.

The contract the ``finetune`` recipe follows, so that the loss is the mean over
every non-ignored token of the optimizer step, however tokens fall across
micro-batches and ranks (averaging per-micro-batch means instead over-weights
short batches: the bug torchtune's distributed recipe carried for a while):

1. ``labels = shift_labels(batch["labels"])`` so ``logits[:, t]`` predicts
   ``labels[:, t]`` (the original token ``t + 1``).
2. For each micro-batch: ``loss_sum, n = loss_fn(logits, labels)``;
   ``loss_sum.backward()`` (no division) and ``num_tokens += n``.
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

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.data._messages import CROSS_ENTROPY_IGNORE_IDX
from tunesmith.errors import ConfigError

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


class ChunkedCrossEntropyLoss(nn.Module):
    """Summed token cross-entropy computed in fp32, ``num_output_chunks`` sequence chunks at a time.

    Returns the sum (not the mean) together with the token count so the recipe
    can normalise by the tokens of the whole optimizer step; see the module
    docstring for the accumulation contract.

    Args:
        num_output_chunks: how many pieces the sequence is split into; more pieces
            bound the fp32 working memory tighter at a small speed cost.
        ignore_index: label value that contributes neither loss nor a token.

    Raises:
        ConfigError: ``num_output_chunks`` below 1.
    """

    def __init__(self, num_output_chunks: int = 8, ignore_index: int = CROSS_ENTROPY_IGNORE_IDX):
        super().__init__()
        if (
            isinstance(num_output_chunks, bool)
            or not isinstance(num_output_chunks, int)
            or (num_output_chunks < 1)
        ):
            raise ConfigError(
                f"loss.num_output_chunks must be a positive integer, got {num_output_chunks!r}: "
                "use 8, or 1 for no chunking"
            )
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of token losses and number of counted tokens.

        Args:
            logits: ``[b, s, v]`` scores, any float dtype.
            labels: ``[b, s]`` target ids already aligned with ``logits`` (see
                :func:`shift_labels`); ``ignore_index`` marks positions to skip.

        Returns:
            ``(loss_sum, num_tokens)``: an fp32 scalar and an int64 scalar tensor.

        Raises:
            ValueError: shapes that do not line up.
        """
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"expected logits [b, s, v] and labels [b, s], got {tuple(logits.shape)} and "
                f"{tuple(labels.shape)}"
            )
        num_tokens = (labels != self.ignore_index).sum()
        chunks = min(self.num_output_chunks, max(1, logits.shape[1]))
        loss_sum = _ChunkedCrossEntropy.apply(logits, labels, chunks, self.ignore_index)
        return loss_sum, num_tokens

    def extra_repr(self) -> str:
        return f"num_output_chunks={self.num_output_chunks}, ignore_index={self.ignore_index}"


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
