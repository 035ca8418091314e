"""Metric loggers named by ``metric_logger._component_`` in a config.

All share one small interface: ``log(name, value, step)``,
``log_dict(metrics, step)``, ``log_config(cfg_dict)``, ``close()``, and work as
context managers. Under ``torch.distributed`` only rank 0 writes; every other
rank's calls do nothing, so the recipe calls them unconditionally. Optional
back-ends (tensorboard, wandb) are imported when the logger is built, so a
missing package fails at start-up with the install command, not mid-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import TunesmithError

__all__ = ["DiskLogger", "MetricLogger", "StdoutLogger", "TensorBoardLogger", "WandBLogger"]

Scalar = float | int | torch.Tensor


def _is_rank_zero() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def _scalar(value: Scalar) -> float | int:
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


class MetricLogger:
    """Base class: subclasses implement ``_write`` (and optionally ``_write_config``, ``_close``)."""

    def log(self, name: str, value: Scalar, step: int) -> None:
        """Record one scalar at a training step."""
        self.log_dict({name: value}, step)

    def log_dict(self, metrics: Mapping[str, Scalar], step: int) -> None:
        """Record several scalars at a training step (tensors are converted with ``.item()``)."""
        if _is_rank_zero():
            self._write({k: _scalar(v) for k, v in metrics.items()}, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Record the resolved run config (a plain, JSON-serialisable mapping)."""
        if _is_rank_zero():
            self._write_config(config)

    def close(self) -> None:
        """Flush and release the back-end; further calls are not expected."""
        if _is_rank_zero():
            self._close()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, metrics: dict[str, float | int], step: int) -> None:
        raise NotImplementedError

    def _write_config(self, config: Mapping[str, Any]) -> None:
        pass

    def _close(self) -> None:
        pass


def _format(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


class StdoutLogger(MetricLogger):
    """Prints ``Step 12 | loss:1.2345 lr:2e-05`` lines to standard output."""

    def _write(self, metrics: dict[str, float | int], step: int) -> None:
        line = " ".join(f"{k}:{_format(v)}" for k, v in metrics.items())
        print(f"Step {step} | {line}", file=sys.stdout, flush=True)


class DiskLogger(MetricLogger):
    """Appends one JSON object per call, ``{"step": N, name: value, ...}``, to a file.

    Args:
        log_dir: directory for the log; created if missing.
        filename: file name inside ``log_dir``; default ``log_<unix time>.jsonl``
            so successive runs never overwrite each other.

    Attributes:
        path: the file written.
    """

    def __init__(self, log_dir: str | os.PathLike, filename: str | None = None):
        self.log_dir = Path(log_dir)
        self.path = self.log_dir / (filename or f"log_{int(time.time())}.jsonl")
        self._file = None

    def _open(self):
        if self._file is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        return self._file

    def _write(self, metrics: dict[str, float | int], step: int) -> None:
        f = self._open()
        f.write(json.dumps({"step": step, **metrics}) + "\n")
        f.flush()

    def _write_config(self, config: Mapping[str, Any]) -> None:
        # Beside the metrics rather than in them, so every line of the log has a step.
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.path.with_name(self.path.stem + ".config.json")
        path.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardLogger(MetricLogger):
    """Writes scalars to TensorBoard event files (``tensorboard --logdir <log_dir>``).

    Args:
        log_dir: directory for the event files; created if missing.
        **kwargs: passed to ``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        TunesmithError: the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike, **kwargs: Any):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TunesmithError(
                "metric_logger TensorBoardLogger needs the tensorboard package: "
                "pip install tensorboard (or use tunesmith.training.DiskLogger)"
            ) from None
        self.log_dir = Path(log_dir)
        self._writer = (
            SummaryWriter(log_dir=str(self.log_dir), **kwargs) if _is_rank_zero() else None
        )

    def _write(self, metrics: dict[str, float | int], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, global_step=step)
        self._writer.flush()

    def _write_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(config, indent=2, default=str)
        # Markdown code block so TensorBoard's text tab keeps the indentation.
        self._writer.add_text("config", f"```\n{text}\n```", global_step=0)
        self._writer.flush()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandBLogger(MetricLogger):
    """Logs to Weights & Biases.

    Args:
        project: the W&B project.
        **kwargs: passed to ``wandb.init`` (``entity``, ``name``, ``group``, ``mode``, ...).

    Raises:
        TunesmithError: the ``wandb`` package is not installed.
    """

    def __init__(self, project: str, **kwargs: Any):
        try:
            import wandb
        except ImportError:
            raise TunesmithError(
                "metric_logger WandBLogger needs the wandb package: pip install wandb "
                "(or use tunesmith.training.DiskLogger)"
            ) from None
        self._wandb = wandb
        self._run = None
        if _is_rank_zero():
            self._run = (
                wandb.run if wandb.run is not None else wandb.init(project=project, **kwargs)
            )

    def _write(self, metrics: dict[str, float | int], step: int) -> None:
        self._run.log(metrics, step=step)

    def _write_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config), allow_val_change=True)

    def _close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
