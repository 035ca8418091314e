"""Importing packages that log harmless noise when they load."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_import"]

#: Top-level package -> the loggers it fills on import. torchao logs "Failed to load
#: _C_mxfp8/_C_cutlass" for CUDA-only kernels it cannot use here, and torch's pytree a
#: deprecation note about one of torchao's enums: noise for someone quantizing a model
#: or naming torchao's optimizer. Real errors still raise.
_NOISY = {"torchao": ("torchao", "torch.utils._pytree")}


@contextmanager
def quiet_import(module: str) -> Iterator[None]:
    """Raise the log level of the loggers ``module``'s package fills on import to ERROR
    while the block runs (nothing changes for other packages)."""
    loggers = [logging.getLogger(name) for name in _NOISY.get(module.split(".")[0], ())]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
