"""Seeding every random generator a run uses, and capturing them for exact resume."""

from __future__ import annotations

import logging
import random
import secrets
import warnings
from typing import Any

import torch

from tunesmith.errors import ConfigError

__all__ = ["rng_state", "set_rng_state", "set_seed"]

log = logging.getLogger(__name__)

_MAX_SEED = 2**32 - 1  # numpy's limit, the tightest of the generators seeded


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def set_seed(seed: int | None) -> int:
    """Seed Python's ``random``, NumPy (when installed) and torch (CPU and every CUDA device).

    Args:
        seed: an integer in ``[0, 2**32 - 1]``, or ``None`` for a fresh random seed,
            which is logged and returned so the run can be repeated. Under
            ``torch.distributed`` a ``None`` seed is drawn on rank 0 and broadcast
            (a collective: call it on every rank), so all ranks agree.

    Returns:
        The seed used.

    Raises:
        ConfigError: a seed that is not an integer in range.
    """
    if seed is None:
        seed = secrets.randbelow(_MAX_SEED + 1)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            box = [seed]
            torch.distributed.broadcast_object_list(box, src=0)
            seed = box[0]
        log.info("seed not set; using random seed %d (set seed=%d to repeat this run)", seed, seed)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ConfigError(
            f"seed must be an integer between 0 and {_MAX_SEED}, got {seed!r}: "
            "set seed to a whole number, or null for a random one"
        )
    random.seed(seed)
    np = _numpy()
    if np is not None:
        np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily if not initialised)
    return seed


def rng_state() -> dict[str, Any]:
    """The state of every generator :func:`set_seed` seeds, to save with a checkpoint.

    Values are tensors, ints, tuples and ``None`` only, so the dict loads with
    ``torch.load(weights_only=True)``.

    Returns:
        ``{"python": ..., "torch": ..., "numpy"?: ..., "cuda"?: [...]}``.
    """
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    np = _numpy()
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators from :func:`rng_state`; missing entries are left alone.

    Args:
        state: a dict returned by :func:`rng_state`, possibly after a save/load round trip.
    """
    if "python" in state:
        version, internal, gauss = state["python"]
        # A save/load round trip may turn the tuple into a list; random wants a tuple.
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    np = _numpy()
    if np is not None and "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state:
        if not torch.cuda.is_available():
            warnings.warn(
                "checkpoint has CUDA RNG state but CUDA is not available; ignoring it", stacklevel=2
            )
            return
        saved = state["cuda"]
        if len(saved) != torch.cuda.device_count():
            warnings.warn(
                f"checkpoint has RNG state for {len(saved)} CUDA devices, this machine has "
                f"{torch.cuda.device_count()}; restoring the common ones",
                stacklevel=2,
            )
        for index, s in enumerate(saved[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), index)
