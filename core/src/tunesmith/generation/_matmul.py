"""Decoding's matrix products on the CPU: ``F.linear`` on a few rows, computed weight-major.

A decoding step multiplies each weight matrix by the batch's 1-32 newest positions.
MKL computes that ``x @ Wᵀ`` far below the memory bandwidth: one row is a
matrix-vector product that barely uses the second core, and 2-8 rows fall on a slow
path of its matrix product. ``W @ xᵀ`` (one row given twice, so that it is a matrix
product too) reads W faster: a whole step's products of a 23M Llama take 0.6x the time
at one row, 0.77x at 8; from ~32 rows on, both are level
(``python benchmarks/micro.py --only decode_linear``).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["MAX_WEIGHT_MAJOR_ROWS", "cpu_decoding_matmuls", "weight_major_linear"]

#: The most rows of ``x`` for which ``F.linear`` is computed as ``W @ xᵀ``.
MAX_WEIGHT_MAJOR_ROWS = 32


def cpu_decoding_matmuls(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which ``F.linear`` takes the weight-major product where it is faster:
    plain fp32 weights on the CPU, 1-32 rows. On other devices, a context that does
    nothing (cuBLAS has kernels for skinny products, and a mode costs every op a
    Python call)."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    return _WeightMajorLinear()


class _WeightMajorLinear(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        # Inside this method the mode is off: the calls below are torch's own.
        if func is F.linear:
            return weight_major_linear(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def weight_major_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, as ``W @ xᵀ`` for the rows and tensors where MKL
    computes that faster (see the module's docstring); the same values otherwise."""
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
