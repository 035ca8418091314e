"""torch.compile for decoding: the one-token step of the decoder, and its head."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["cache_length", "compile_for_generation", "is_compiled_for_generation"]

_COMPILED = "_tunesmith_compiled_for_generation"
_SMALLEST_CACHE = 128
#: Every KV cache's fill level (``KVCache.size``) dynamic from the first compile (else
#: the first step compiles for its own level, and the second again with it dynamic). A
#: torch without ``dynamic_sources`` (or without its regular expressions) compiles twice.
_DYNAMIC_FILL_LEVEL = (
    {"dynamic_sources": r".*\._modules\['kv_cache'\]\.size$"}
    if hasattr(torch.compiler.config, "dynamic_sources")
    else {}
)


def compile_for_generation(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compile ``model``'s one-token decoding step and its head in place, for
    :func:`~tunesmith.generation.generate_tokens`.

    A one-token step on a CPU spends as long between kernels as in them; the whole
    decoder as one graph removes most of that. The prompt's pass, once per call and
    of any length, stays eager. The step's graph is specialised to the batch size and
    the KV cache length, and :func:`generate_tokens` rounds a compiled model's cache
    up to a power of two (at least 128 slots) so that prompts of other lengths reuse
    it. The caches' fill level (an int on each attention module) is traced as a
    symbol from the first compile, or every step would compile anew. The first step
    compiles (tens of seconds on a CPU with a cold inductor cache); outputs equal eager
    decoding's.

    On the CPU, inductor writes the graphs' wrapper in C++ (``cpp_wrapper``) unless
    ``compile_kwargs`` choose otherwise: a one-token step spends ~0.5 ms in the
    Python wrapper's calls, and the C++ one made decoding ~6% faster (a 23M Llama,
    batch 1 and 8), for ~3 s more of a first compile without a warm inductor cache.

    Args:
        model: A :class:`tunesmith.modules.TransformerDecoder` (anything with
            ``forward(tokens, **kwargs)``; ``project`` is compiled too where it exists).
        compile_kwargs: Passed on to ``torch.compile`` (e.g. ``mode``, ``backend``).

    Returns:
        ``model`` itself; compiling it twice changes nothing.
    """
    if is_compiled_for_generation(model):
        return model
    compile_kwargs = _with_cpu_defaults(model, compile_kwargs)
    model.forward = _compiled(model.forward, compile_kwargs)
    if callable(getattr(model, "project", None)):
        model.project = _compiled(model.project, compile_kwargs)
    setattr(model, _COMPILED, True)
    return model


def is_compiled_for_generation(model: nn.Module) -> bool:
    """Whether :func:`compile_for_generation` has compiled ``model``."""
    return bool(getattr(model, _COMPILED, False))


def cache_length(model: nn.Module, needed: int) -> int:
    """KV cache slots for a call that needs ``needed``: exactly that for an eager model;
    for a compiled one the next power of two (at least 128, at most the model's
    ``max_seq_len``), so that its graphs serve calls of other lengths."""
    if not is_compiled_for_generation(model):
        return needed
    bucket = max(_SMALLEST_CACHE, 1 << (needed - 1).bit_length())
    limit = getattr(model, "max_seq_len", None)
    return max(needed, min(bucket, limit)) if limit else bucket


def _with_cpu_defaults(model: nn.Module, compile_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``compile_kwargs`` with inductor's C++ wrapper on for a model on the CPU (when
    neither another backend, a mode, nor an explicit ``cpp_wrapper`` is asked for)."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    inductor = compile_kwargs.get("backend", "inductor") == "inductor"
    if not (on_cpu and inductor) or "mode" in compile_kwargs:
        return compile_kwargs  # torch.compile takes options or a mode, not both
    options = {"cpp_wrapper": True, **(compile_kwargs.get("options") or {})}
    return {**compile_kwargs, "options": options}


def _compiled(method: Callable[..., Any], compile_kwargs: dict[str, Any]) -> Callable[..., Any]:
    """``method`` compiled for one-token steps, eager for anything else (the prompt)."""
    compiled = torch.compile(method, **compile_kwargs)

    @functools.wraps(method)  # keeps the signature generate_tokens inspects
    def call(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if x.shape[1] != 1:
            return method(x, *args, **kwargs)
        # Fresh standard strides: a step's slices of the sequence have the call's
        # strides, and a graph specialised on one call's would not serve the next.
        x, *args = (_standard_strides(a) for a in (x, *args))
        kwargs = {name: _standard_strides(value) for name, value in kwargs.items()}
        with (
            torch._dynamo.config.patch(allow_unspec_int_on_nn_module=True),
            torch.compiler.config.patch(**_DYNAMIC_FILL_LEVEL),
        ):
            return compiled(x, *args, **kwargs)

    return call


def _standard_strides(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    return value.clone(memory_format=torch.contiguous_format)
