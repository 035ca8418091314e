"""Meta's original checkpoints: ``consolidated.*.pth`` + ``params.json``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from tunesmith.checkpoint._hf import _read_json, describe_dir, require_dir, unpickling_error
from tunesmith.errors import CheckpointError

__all__ = [
    "find_meta_files",
    "halves_to_interleaved",
    "interleaved_to_halves",
    "is_meta_checkpoint",
    "load_meta_checkpoint",
]


def find_meta_files(directory: Path) -> list[Path]:
    """The ``consolidated.*.pth`` files of ``directory``, sorted (may be empty)."""
    return sorted(directory.glob("consolidated.*.pth"))


def is_meta_checkpoint(directory: Path) -> bool:
    return (directory / "params.json").is_file() and bool(find_meta_files(directory))


def load_meta_checkpoint(
    directory: str | os.PathLike,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a Meta checkpoint (``consolidated.00.pth`` + ``params.json``).

    The ``.pth`` is memory-mapped and read with ``weights_only=True``, so no code in
    the file runs and tensors are paged in only when used.

    Args:
        directory: The directory holding them (often a model repo's ``original/``).

    Returns:
        ``(state_dict, params)``: tensors under Meta's names and the parsed params.json.

    Raises:
        CheckpointError: a file is missing or damaged, or the checkpoint is split into
            model-parallel shards (``consolidated.00.pth``, ``consolidated.01.pth``, ...).
    """
    path = require_dir(directory)
    files = find_meta_files(path)
    params_path = path / "params.json"
    if not files or not params_path.is_file():
        missing = "consolidated.*.pth" if not files else "params.json"
        raise CheckpointError(
            f"no {missing} in {path} (it holds {describe_dir(path)}): a Meta checkpoint "
            "is consolidated.00.pth beside params.json — point checkpointer.checkpoint_dir "
            "at that directory (often <model>/original)"
        )
    if len(files) > 1:
        # Merging model-parallel shards needs to know along which dimension each
        # family splits each weight; that knowledge belongs to no generic loader.
        raise CheckpointError(
            f"{path} holds {len(files)} model-parallel shards ({files[0].name} … "
            f"{files[-1].name}), which tunesmith does not merge: use the model's Hugging "
            "Face repository instead (config.json + *.safetensors), or merge the shards "
            "with Meta's conversion script first"
        )
    params = _read_json(params_path)
    if not isinstance(params, dict):
        raise CheckpointError(f"{params_path} is not a JSON object: download it again")
    try:
        state_dict = torch.load(files[0], map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, EOFError) as exc:
        raise unpickling_error(files[0], exc) from None
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(
            f"cannot read {files[0]} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
            "it is damaged, incomplete or not a weights-only checkpoint — download it again"
        ) from None
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"{files[0]} holds a {type(state_dict).__name__}, not a state dict: "
            "point checkpointer.checkpoint_dir at a Meta checkpoint"
        )
    return state_dict, params


def interleaved_to_halves(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """q/k projection rows from Meta's RoPE layout to Hugging Face's.

    Within each head Meta (and torchtune) rotate rows ``(0, 1), (2, 3), ...``; Hugging
    Face's rotate-half pairs row ``i`` with row ``i + head_dim/2``. Gathering each head's
    even rows, then its odd rows, converts one to the other. Trailing dimensions (a
    weight's input columns) are carried along.
    """
    heads, rest = rows.shape[0] // head_dim, rows.shape[1:]
    return rows.reshape(heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(rows.shape)


def halves_to_interleaved(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The inverse of :func:`interleaved_to_halves`."""
    heads, rest = rows.shape[0] // head_dim, rows.shape[1:]
    return rows.reshape(heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(rows.shape)
