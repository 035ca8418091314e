"""Decoding's matrix products on the CPU: ``F.linear`` on a few rows, computed the way
this CPU computes faster.

A decoding step multiplies each weight matrix by the batch's 1-32 newest positions.
How fast MKL does that depends on the CPU: on an AMD EPYC host whose L3 was smaller
than the weights, ``x @ Wᵀ`` (``F.linear``) ran far below the memory bandwidth, and
``W @ xᵀ`` (one row given twice, so that it is a matrix product too) took 0.6x its
time at one row and 0.77x at 8; on an Intel Xeon host with AMX and a larger L3 it was
the other way round, 2.3x slower at one row. So :func:`decoding_products` times both
on the model's own weights, once per weight shapes, row count and thread count, and
keeps the faster (``python benchmarks/micro.py --only decode_linear`` compares them
on a 23M Llama's matrices).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["MAX_WEIGHT_MAJOR_ROWS", "decoding_products", "weight_major_linear"]

#: The most rows of ``x`` for which ``F.linear`` is computed as ``W @ xᵀ``.
MAX_WEIGHT_MAJOR_ROWS = 32

#: Weight-major products are kept only if the probe finds them this much faster (a
#: margin over the timing noise, in favour of torch's own path).
_REQUIRED_SPEEDUP = 1.1
#: The probe reads at most this many bytes of weights per pass (a model's first
#: matrices; more than any L3 holds, so they stream from memory as decoding's do).
_PROBE_BYTES = 1 << 30
_PROBE_ROUNDS = 3

# (weight shapes, rows, threads) -> whether weight-major products were faster.
_CHOICES: dict[tuple, bool] = {}


def decoding_products(model: nn.Module, rows: int) -> contextlib.AbstractContextManager:
    """The context a decoding step over ``rows`` rows runs in: one in which ``F.linear``
    takes the weight-major product, if that measured faster for ``model``'s weights on
    this CPU; otherwise (and on other devices, or for other dtypes) one that does
    nothing. The first call for a model's shapes and a row count times both products
    (a few passes over the weights, capped at 1 GiB each)."""
    weights = _plain_cpu_weights(model)
    if not weights or rows > MAX_WEIGHT_MAJOR_ROWS:
        return contextlib.nullcontext()
    key = (tuple(w.shape for w in weights), rows, torch.get_num_threads())
    if key not in _CHOICES:
        linear, weight_major = _probe_seconds(weights, rows)
        _CHOICES[key] = weight_major * _REQUIRED_SPEEDUP < linear
    return _WeightMajorLinear() if _CHOICES[key] else contextlib.nullcontext()


def _plain_cpu_weights(model: nn.Module) -> list[torch.Tensor]:
    """The model's matrices the weight-major product applies to (plain fp32 CPU tensors,
    not quantized or sharded ones), up to ``_PROBE_BYTES``; none if any weight is
    elsewhere or of another dtype."""
    weights, size = [], 0
    for param in model.parameters():
        if param.device.type != "cpu" or param.dtype != torch.float32:
            return []
        if param.dim() == 2 and type(param) in (torch.Tensor, nn.Parameter):
            weights.append(param)
            size += param.nbytes
            if size >= _PROBE_BYTES:
                break
    return weights


def _probe_seconds(weights: Sequence[torch.Tensor], rows: int) -> tuple[float, float]:
    """Seconds of one pass of ``F.linear`` and of ``weight_major_linear`` over
    ``weights`` with ``rows`` rows: the median of interleaved rounds, after one that
    warms the caches."""
    # Constant inputs: drawing them would move the random stream a seeded sampling run
    # relies on (its first call would differ from later ones).
    inputs = {w.shape[1]: torch.full((rows, w.shape[1]), 0.5, dtype=w.dtype) for w in weights}

    def one_pass(product: Callable) -> float:
        start = time.perf_counter()
        for w in weights:
            product(inputs[w.shape[1]], w)
        return time.perf_counter() - start

    seconds: dict[Callable, list[float]] = {F.linear: [], weight_major_linear: []}
    with torch.no_grad():
        for _ in range(1 + _PROBE_ROUNDS):
            for product, times in seconds.items():
                times.append(one_pass(product))
    linear, weight_major = (statistics.median(times[1:]) for times in seconds.values())
    return linear, weight_major


class _WeightMajorLinear(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        # Inside this method the mode is off: the calls below are torch's own.
        if func is F.linear:
            return weight_major_linear(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def weight_major_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as ``W @ xᵀ`` for up to
    ``MAX_WEIGHT_MAJOR_ROWS`` rows of plain fp32 CPU tensors; the same values, by
    ``F.linear``, otherwise."""
    rows = math.prod(x.shape[:-1])
    if (
        rows > MAX_WEIGHT_MAJOR_ROWS  # a comparison: under torch.compile rows is symbolic
        or type(weight) not in (torch.Tensor, nn.Parameter)  # quantized, sharded, ...
        or type(x) is not torch.Tensor
        or weight.device.type != "cpu"
        or not x.dtype == weight.dtype == torch.float32
    ):
        return F.linear(x, weight, bias)
    flat = x.reshape(rows, x.shape[-1])
    if rows == 1:
        flat = flat.expand(2, -1).contiguous()  # two columns: a matrix product
    out = torch.mm(weight, flat.t())[:, :rows].t()  # (rows, out_features)
    if bias is not None:
        out = out + bias
    return out.contiguous().view(*x.shape[:-1], weight.shape[0])
