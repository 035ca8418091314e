"""Learning-rate schedules with linear warmup, as ``LambdaLR`` multipliers of the base lr.

The recipe builds the optimizer first and then the scheduler, passing
``num_training_steps`` (optimizer steps over the whole run) at call time, so a
config only names the schedule and its warmup:
``lr_scheduler: {_component_: tunesmith.training.cosine_with_warmup, num_warmup_steps: 100}``.

Schedulers step once per optimizer step. To resume, either load the
scheduler's ``state_dict`` or rebuild with ``last_epoch=steps_done - 1``.
"""

from __future__ import annotations

import functools
import logging
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from tunesmith.errors import ConfigError

__all__ = ["constant_with_warmup", "cosine_with_warmup", "linear_with_warmup"]

log = logging.getLogger(__name__)


def _warmup(step: int, num_warmup_steps: int) -> float:
    return step / max(1, num_warmup_steps)


def _cosine(
    step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float
) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
    # num_cycles=0.5 is half a cosine period: from 1 at the end of warmup to 0 at the last step.
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress)))


def _linear(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    remaining = num_training_steps - step
    return max(0.0, remaining / max(1, num_training_steps - num_warmup_steps))


def _constant(step: int, *, num_warmup_steps: int) -> float:
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return 1.0


def _check_steps(num_warmup_steps: int, num_training_steps: int | None = None) -> None:
    if isinstance(num_warmup_steps, bool) or not isinstance(num_warmup_steps, int):
        raise ConfigError(
            f"lr_scheduler.num_warmup_steps must be an integer, got {num_warmup_steps!r}: "
            "set it to a whole number of optimizer steps (0 for no warmup)"
        )
    if num_warmup_steps < 0:
        raise ConfigError(
            f"lr_scheduler.num_warmup_steps must be >= 0, got {num_warmup_steps}: "
            "set it to 0 for no warmup"
        )
    if num_training_steps is None:
        return
    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, int):
        raise ConfigError(f"num_training_steps must be an integer, got {num_training_steps!r}")
    if num_training_steps < 1:
        raise ConfigError(
            f"num_training_steps must be >= 1, got {num_training_steps}: check epochs, "
            "max_steps_per_epoch and that the dataset is not empty"
        )
    if num_warmup_steps > num_training_steps:
        # Not an error (a short debug run with the shipped warmup is legitimate), but the
        # learning rate will never reach its configured value.
        log.warning(
            "lr_scheduler.num_warmup_steps (%d) exceeds the %d training steps: the learning "
            "rate never reaches its peak; lower num_warmup_steps",
            num_warmup_steps,
            num_training_steps,
        )


def _lambda_lr(optimizer: torch.optim.Optimizer, fn, last_epoch: int) -> LambdaLR:
    if last_epoch != -1:
        # LambdaLR refuses to resume unless each group has "initial_lr"; a freshly built
        # optimizer's configured lr is that base value.
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return LambdaLR(optimizer, fn, last_epoch=last_epoch)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Linear warmup from 0 to the base lr, then cosine decay.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` is the peak value.
        num_warmup_steps: optimizer steps of linear warmup (multiplier ``step / num_warmup_steps``).
        num_training_steps: total optimizer steps of the run; the recipe passes it.
        num_cycles: cosine periods after warmup; 0.5 decays once from the peak to 0.
        last_epoch: index of the last step taken, ``-1`` for a fresh run.

    Returns:
        A ``LambdaLR`` to ``step()`` after every optimizer step.

    Raises:
        ConfigError: negative or non-integer step counts.
    """
    _check_steps(num_warmup_steps, num_training_steps)
    fn = functools.partial(
        _cosine,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )
    return _lambda_lr(optimizer, fn, last_epoch)


def linear_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    num_warmup_steps: int,
    num_training_steps: int,
    last_epoch: int = -1,
) -> LambdaLR:
    """Linear warmup from 0 to the base lr, then linear decay to 0 at ``num_training_steps``.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` is the peak value.
        num_warmup_steps: optimizer steps of linear warmup.
        num_training_steps: total optimizer steps of the run; the recipe passes it.
        last_epoch: index of the last step taken, ``-1`` for a fresh run.

    Returns:
        A ``LambdaLR`` to ``step()`` after every optimizer step.

    Raises:
        ConfigError: negative or non-integer step counts.
    """
    _check_steps(num_warmup_steps, num_training_steps)
    fn = functools.partial(
        _linear, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps
    )
    return _lambda_lr(optimizer, fn, last_epoch)


def constant_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    num_warmup_steps: int,
    last_epoch: int = -1,
    num_training_steps: int | None = None,
) -> LambdaLR:
    """Linear warmup from 0 to the base lr, then constant.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` is the target value.
        num_warmup_steps: optimizer steps of linear warmup.
        last_epoch: index of the last step taken, ``-1`` for a fresh run.
        num_training_steps: ignored; accepted so the recipe can pass it to every schedule.

    Returns:
        A ``LambdaLR`` to ``step()`` after every optimizer step.

    Raises:
        ConfigError: a negative or non-integer ``num_warmup_steps``.
    """
    _check_steps(num_warmup_steps)
    fn = functools.partial(_constant, num_warmup_steps=num_warmup_steps)
    return _lambda_lr(optimizer, fn, last_epoch)
