"""Guards a training loop keeps: finite loss and gradients before a step is taken, and
Ctrl-C that stops between steps (so the last completed step can be saved)."""

from __future__ import annotations

import math
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType

import torch

from tunesmith.errors import ConfigError

__all__ = ["StopOnInterrupt", "check_finite_params", "check_finite_step", "check_vocabulary"]


def _total_grad_norm(params: Iterable[torch.nn.Parameter]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2: reduce over ranks
        norm = norm.full_tensor()
    return float(norm)


def check_finite_step(
    loss: float, params: Iterable[torch.nn.Parameter], *, step: int, grad_norm: float | None = None
) -> float:
    """Refuse a step whose loss or gradients are not finite, before the optimizer runs.

    The weights then stay those of the last good step, and nothing non-finite is
    ever saved: the last saved state can be resumed with a lower learning rate.

    Args:
        loss: The step's loss.
        params: The trainable parameters (their ``.grad`` is checked).
        step: The step number, for the message.
        grad_norm: The total gradient norm if already known (``clip_grad_norm_``'s
            return value), else it is computed.

    Returns:
        The total gradient norm.

    Raises:
        ConfigError: the loss or the gradient norm is inf or nan.
    """
    norm = _total_grad_norm(params) if grad_norm is None else float(grad_norm)
    if math.isfinite(loss) and math.isfinite(norm):
        return norm
    what = f"loss became {loss}" if not math.isfinite(loss) else f"gradients became {norm}"
    raise ConfigError(
        f"{what} at step {step}, so that step was not taken and nothing of it was saved: "
        "lower the learning rate or enable clip_grad_norm, then resume from the last saved "
        "state (resume_from_checkpoint=true) or start again"
    )


def check_finite_params(named: Iterable[tuple[str, torch.Tensor]], *, step: int) -> None:
    """Refuse to save weights that are not finite (an optimizer step can make them so
    even from finite gradients, e.g. with an infinite learning rate).

    Raises:
        ConfigError: naming the first non-finite tensors.
    """
    bad = [name for name, tensor in named if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise ConfigError(
            f"the weights became non-finite ({', '.join(bad[:3])}) after step {step}, so "
            "nothing was saved: lower the learning rate or enable clip_grad_norm, then resume "
            "from the last saved state (resume_from_checkpoint=true) or start again"
        )


def _embedding_rows(model: torch.nn.Module) -> int | None:
    embedding = getattr(model, "tok_embeddings", None)
    if not isinstance(embedding, torch.nn.Embedding):
        embedding = next((m for m in model.modules() if isinstance(m, torch.nn.Embedding)), None)
    return None if embedding is None else embedding.num_embeddings


def check_vocabulary(tokenizer: object, model: torch.nn.Module) -> None:
    """Refuse a tokenizer that can produce ids the model has no embedding for (a wrong
    ``tokenizer.path``, or a model built for another vocabulary), before its weights are
    loaded and before an ``IndexError`` deep in the first step.

    Args:
        tokenizer: Its ``vocab_size`` and special ids (bos, eos, pad, stop tokens) are read.
        model: Its token embedding (``tok_embeddings``, else its first ``nn.Embedding``).

    Raises:
        ConfigError: naming both sizes and the fix.
    """
    rows = _embedding_rows(model)
    if rows is None:
        return
    ids = [getattr(tokenizer, "vocab_size", 0) - 1]
    ids += [getattr(tokenizer, name, None) for name in ("bos_id", "eos_id", "pad_id")]
    ids += list(getattr(tokenizer, "stop_tokens", None) or [])
    largest = max(i for i in ids if isinstance(i, int))
    if largest < rows:
        return
    raise ConfigError(
        f"the tokenizer has token ids up to {largest} ({getattr(tokenizer, 'vocab_size', '?')} "
        f"tokens) but the model's embedding has {rows} rows, so ids from {rows} on have no "
        "embedding: use the tokenizer that came with the checkpoint (remove tokenizer.path), "
        f"or a checkpoint whose vocab_size is at least {largest + 1}"
    )


class StopOnInterrupt:
    """Within the block, the first Ctrl-C (SIGINT) asks the loop to stop after the step
    it is in (:attr:`requested`); a second one interrupts at once. Outside the main
    thread (where signals cannot be caught) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nStopping after this step to save it (Ctrl-C again to stop at once, unsaved)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
