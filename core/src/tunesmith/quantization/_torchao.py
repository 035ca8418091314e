"""Importing torchao on demand: it is optional for the core, and slow (~6 s) to import."""

from __future__ import annotations

from types import ModuleType

from tunesmith._quiet import quiet_import
from tunesmith.errors import TunesmithError

__all__ = ["INSTALL_HINT", "MIN_TORCHAO", "import_torchao"]

INSTALL_HINT = "pip install 'tunesmith[quantize]'"
#: The first release with the config-object API (``quantize_(model, Int8WeightOnlyConfig())``).
MIN_TORCHAO = "0.18"


def import_torchao() -> ModuleType:
    """``torchao``, with ``torchao.quantization`` loaded.

    Raises:
        TunesmithError: torchao is missing, or older than the API tunesmith uses; the
            message says what to install.
    """
    try:
        with quiet_import("torchao"):
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
