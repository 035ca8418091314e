"""Trading compute or host memory for activation memory.

``apply_activation_checkpointing`` recomputes chosen layers' activations in
backward instead of storing them. Unlike wrapper modules (torch's
``checkpoint_wrapper`` adds ``_checkpoint_wrapped_module.`` to every key) it
replaces the forward of each matching module in place, so state-dict keys,
module types and ``named_modules`` paths are unchanged and checkpoints stay
loadable with or without it. Apply it before ``fully_shard`` so FSDP2's hooks
(which run around ``__call__``) sit outside the recomputed region.

``activation_offloading`` moves tensors saved for backward to host memory.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunesmith.errors import ConfigError, did_you_mean

__all__ = ["activation_offloading", "apply_activation_checkpointing"]

_MARK = "_tunesmith_activation_checkpointing"


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = type(self).forward
    if not torch.is_grad_enabled():
        # Nothing is saved without autograd (evaluation, generation with a KV cache).
        return forward(self, *args, **kwargs)
    # Non-reentrant: works with kwargs, with inputs that do not require grad, and
    # with torch.compile; the RNG state is replayed so dropout masks match.
    return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)


def _matches(module: nn.Module, types_: tuple[type, ...], names: frozenset[str]) -> bool:
    return isinstance(module, types_) or any(c.__name__ in names for c in type(module).__mro__)


def apply_activation_checkpointing(
    model: nn.Module, *, layer_types: Iterable[type | str] | type | str
) -> int:
    """Recompute the activations of every submodule of the given types during backward.

    Args:
        model: the model, modified in place.
        layer_types: classes, or class names (as written in a config), whose
            instances are checkpointed, e.g. ``{TransformerSelfAttentionLayer}``.
            A module nested in one already checkpointed is left alone.

    Returns:
        The number of modules checkpointed (already-checkpointed ones included).

    Raises:
        ConfigError: no submodule of ``model`` matches ``layer_types``.
    """
    if isinstance(layer_types, (type, str)):
        layer_types = [layer_types]
    layer_types = list(layer_types)
    types_ = tuple(t for t in layer_types if isinstance(t, type))
    names = frozenset(t for t in layer_types if isinstance(t, str))

    count = 0
    covered: list[str] = []
    for path, module in model.named_modules():
        if not _matches(module, types_, names):
            continue
        if any(path.startswith(prefix + ".") for prefix in covered):
            continue
        covered.append(path)
        count += 1
        if not getattr(module, _MARK, False):
            # An instance attribute shadows the class's forward; nn.Module.__call__
            # (and its hooks) are untouched.
            module.forward = types.MethodType(_checkpointed_forward, module)
            setattr(module, _MARK, True)
    if count == 0:
        wanted = sorted(t.__name__ if isinstance(t, type) else t for t in layer_types)
        present = sorted({type(m).__name__ for m in model.modules()})
        hint = did_you_mean(wanted[0], present) if wanted else ""
        raise ConfigError(
            f"activation checkpointing found no module of type {wanted} in "
            f"{type(model).__name__}{hint}: name one of its layer classes ({', '.join(present)})"
        )
    return count


def activation_offloading(enabled: bool = True) -> contextlib.AbstractContextManager:
    """A context under which tensors saved for backward live in host memory.

    Wrap the forward pass (the backward needs no context). With CUDA the host
    copies are pinned so they transfer asynchronously. Combines with activation
    checkpointing: then only the checkpointed layers' inputs are offloaded.

    Args:
        enabled: ``False`` gives a no-op context, so the recipe needs no branch.

    Returns:
        A context manager.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available())
