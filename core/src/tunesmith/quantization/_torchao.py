"""Importing torchao on demand: it is optional for the core, and slow (~6 s) to import."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from tunesmith.errors import TunesmithError

__all__ = ["INSTALL_HINT", "MIN_TORCHAO", "import_torchao"]

INSTALL_HINT = "pip install 'tunesmith[quantize]'"
#: The first release with the config-object API (``quantize_(model, Int8WeightOnlyConfig())``).
MIN_TORCHAO = "0.18"


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    # torchao logs "Failed to load _C_mxfp8/_C_cutlass" for CUDA-only kernels it cannot
    # use here, and torch's pytree a deprecation note about one of torchao's enums:
    # noise for someone quantizing a model. Real errors still raise.
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def import_torchao() -> ModuleType:
    """``torchao``, with ``torchao.quantization`` loaded.

    Raises:
        TunesmithError: torchao is missing, or older than the API tunesmith uses; the
            message says what to install.
    """
    try:
        with _quiet("torchao", "torch.utils._pytree"):
            import torchao
            import torchao.quantization  # noqa: F401
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "torchao":
            raise  # torchao is there but broken: show the real cause
        raise TunesmithError(
            f"quantizing needs torchao, which is not installed: {INSTALL_HINT}"
        ) from None
    from packaging.version import Version

    if Version(torchao.__version__).release < Version(MIN_TORCHAO).release:
        raise TunesmithError(
            f"torchao {torchao.__version__} is installed, tunesmith's quantizers need "
            f">= {MIN_TORCHAO}: {INSTALL_HINT}"
        )
    return torchao
