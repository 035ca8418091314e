"""Hugging Face checkpoints: config.json and (sharded) safetensors weights."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tunesmith.checkpoint._dtypes import resolve_dtype
from tunesmith.checkpoint._files import atomic_write
from tunesmith.errors import CheckpointError

__all__ = [
    "HF_INDEX",
    "find_hf_weight_files",
    "full_precision",
    "load_hf_state_dict",
    "parse_size",
    "read_hf_config",
    "save_hf_state_dict",
]

HF_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"
_SINGLE = "model.safetensors"
# What save_hf_state_dict writes, so a later save can remove what an earlier one left.
_OURS = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")


def describe_dir(directory: Path, limit: int = 12) -> str:
    """``"a.json, b/, c.safetensors"`` (the first ``limit`` entries) or ``"nothing"``."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    if not names:
        return "nothing (it is empty)"
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def require_dir(directory: str | os.PathLike, what: str = "checkpoint directory") -> Path:
    path = Path(directory).expanduser()
    if not path.is_dir():
        reason = "is a file, not a directory" if path.exists() else "does not exist"
        raise CheckpointError(
            f"{what} {path} {reason}: point checkpointer.checkpoint_dir at a downloaded "
            "model directory (`tunesmith download <hf-repo>` fetches one)"
        )
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "the file is damaged or incomplete — download the checkpoint again"
        ) from None


def read_hf_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face model directory.

    Args:
        directory: The model directory.

    Returns:
        The parsed JSON object.

    Raises:
        CheckpointError: the directory or its ``config.json`` is missing, or it is not
            a valid JSON object.
    """
    path = require_dir(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"no config.json in {path.parent} (it holds {describe_dir(path.parent)}): "
            "point checkpointer.checkpoint_dir at a Hugging Face model directory, which "
            "has config.json beside its *.safetensors"
        )
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(config).__name__}, not an object: "
            "the file is damaged — download the checkpoint again"
        )
    return config


def _explicit_files(directory: Path, checkpoint_files: Any) -> list[str]:
    # torchtune's {filename_format: "model-{}-of-{}.safetensors", max_filename: "00004"}.
    if isinstance(checkpoint_files, Mapping):
        try:
            fmt = checkpoint_files["filename_format"]
            last = str(checkpoint_files["max_filename"])
        except KeyError as exc:
            raise CheckpointError(
                f"checkpointer.checkpoint_files is a mapping without {exc.args[0]!r}: give a "
                "list of file names, or {filename_format: 'model-{}-of-{}.safetensors', "
                "max_filename: '00004'}"
            ) from None
        return [fmt.format(str(i).zfill(len(last)), last) for i in range(1, int(last) + 1)]
    if isinstance(checkpoint_files, (str, os.PathLike)):
        return [os.fspath(checkpoint_files)]
    return [os.fspath(f) for f in checkpoint_files]


def _checked(directory: Path, names: Sequence[str], source: str) -> list[Path]:
    paths = [directory / n for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise CheckpointError(
            f"{len(missing)} weight file(s) named by {source} are missing from {directory} "
            f"({shown}); it holds {describe_dir(directory)}: the download is incomplete or "
            "the file names are wrong — download again, or fix checkpointer.checkpoint_files"
        )
    bad = [n for n in names if not n.endswith((".safetensors", ".bin"))]
    if bad:
        raise CheckpointError(
            f"{', '.join(bad)} in {source} is not a Hugging Face weight file: list "
            "*.safetensors (or pytorch_model*.bin) files in checkpointer.checkpoint_files"
        )
    return paths


def _index_files(directory: Path, index: Path) -> list[str]:
    data = _read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index} has no 'weight_map': the index is damaged — download the checkpoint again"
        )
    return sorted(set(weight_map.values()))


def find_hf_weight_files(
    directory: str | os.PathLike,
    checkpoint_files: Sequence[str] | Mapping[str, Any] | None = None,
) -> list[Path]:
    """The weight files of a Hugging Face model directory, in load order.

    Found from ``model.safetensors.index.json`` (the files its ``weight_map`` names,
    sorted) when present, else ``model.safetensors``,
    else every ``*.safetensors`` (sorted, PEFT ``adapter_*`` files excluded); a
    directory with only ``pytorch_model*.bin`` files is read too.

    Args:
        directory: The model directory.
        checkpoint_files: Explicit file names relative to ``directory`` (validated), or
            torchtune's ``{"filename_format": ..., "max_filename": ...}``.

    Returns:
        Absolute-or-relative paths as joined onto ``directory``.

    Raises:
        CheckpointError: the directory is missing, a named file does not exist, or no
            weight file is found.
    """
    path = require_dir(directory)
    if checkpoint_files:
        names = _explicit_files(path, checkpoint_files)
        return _checked(path, names, "checkpointer.checkpoint_files")
    for index in (HF_INDEX, _BIN_INDEX):
        if (path / index).is_file():
            return _checked(path, _index_files(path, path / index), index)
    if (path / _SINGLE).is_file():
        return [path / _SINGLE]
    found = sorted(
        p for p in path.glob("*.safetensors") if not p.name.startswith(("adapter_", "."))
    )
    if not found:
        found = sorted(path.glob("pytorch_model*.bin"))
    adapter = next(
        (d for d in (path, path / "adapter") if (d / "adapter_model.safetensors").is_file()), None
    )
    if not found and adapter is not None:
        base = (
            _read_json(adapter / "adapter_config.json").get("base_model_name_or_path")
            if (adapter / "adapter_config.json").is_file()
            else None
        )
        raise CheckpointError(
            f"{path} holds only a PEFT adapter ({(adapter / 'adapter_model.safetensors').relative_to(path)}), "
            f"not full weights: pass it as adapter={path} with its base as "
            f"checkpointer.checkpoint_dir={base or '<base model directory>'} (load_pretrained("
            "base_dir, adapter=...) in Python), or merge them first with `tunesmith merge-adapter`"
        )
    if not found:
        raise CheckpointError(
            f"no weights in {path}: expected model.safetensors, or "
            f"model-0000k-of-0000n.safetensors with {HF_INDEX}, but it holds "
            f"{describe_dir(path)} — point checkpointer.checkpoint_dir at a Hugging Face "
            "model directory, or finish its download"
        )
    return found


def unpickling_error(path: Path, exc: BaseException) -> CheckpointError:
    """One line for a ``torch.load(weights_only=True)`` refusal: a pickle that names code
    (loading it could run that code) is told apart from a damaged file."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if refused is None:
        return CheckpointError(
            f"cannot read {path} ({type(exc).__name__}: the file is damaged, incomplete or not "
            "a PyTorch checkpoint) — download the checkpoint again"
        )
    converted = path.stem.replace("pytorch_model", "model") + ".safetensors"
    return CheckpointError(
        f"{path} is a pickle that holds more than tensors (it names {refused.group(1)}), so it "
        "was not loaded: loading it could run code. If you trust its source, convert it to "
        'safetensors (`python -c "import torch; from safetensors.torch import save_file; '
        f"save_file(torch.load('{path.name}', weights_only=False), '{converted}')\"`"
        "), or download the model's *.safetensors files instead"
    )


def _load_file(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".bin":
            return torch.load(path, map_location=device, weights_only=True, mmap=True)
        return load_file(path, device=device)
    except (pickle.UnpicklingError, EOFError) as exc:
        raise unpickling_error(path, exc) from None
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot read {path} ({exc}): the file is damaged or incomplete — "
            "download the checkpoint again"
        ) from None


def load_hf_state_dict(
    directory: str | os.PathLike,
    checkpoint_files: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face model directory, under its HF names.

    Args:
        directory: The model directory.
        checkpoint_files: As for :func:`find_hf_weight_files`.
        device: Where to put the tensors.

    Returns:
        HF key -> tensor, in the dtype stored.

    Raises:
        CheckpointError: no weights, a damaged file, or a key stored in two files.
    """
    state_dict: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for path in find_hf_weight_files(directory, checkpoint_files):
        part = _load_file(path, str(device))
        clash = sorted(set(part) & set(state_dict))
        if clash:
            raise CheckpointError(
                f"{clash[0]} is stored in both {where[clash[0]]} and {path.name} in "
                f"{path.parent}: keep one set of weight files, or name them in "
                "checkpointer.checkpoint_files"
            )
        state_dict.update(part)
        where.update(dict.fromkeys(part, path.name))
    return state_dict


_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(size: int | str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"500MiB"`` -> 524_288_000, ``1024`` -> 1024 (bytes)."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", str(size), re.I)
        if not match:
            raise CheckpointError(
                f"max_shard_size {size!r} is not a size: write e.g. 5GB, 500MB, 2GiB or bytes"
            )
        value = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if value <= 0:
        raise CheckpointError(f"max_shard_size must be positive, got {size!r}")
    return value


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` detached; a quantized base weight (QLoRA's torchao NF4) as the
    full-precision values it carries."""
    if hasattr(tensor, "get_original_weight"):
        tensor = tensor.get_original_weight()
    return tensor.detach()


def _plan_shards(
    state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None, max_bytes: int
) -> tuple[list[list[str]], dict[str, int]]:
    """Group keys, in order, into shards of at most ``max_bytes`` (a larger tensor gets
    a shard of its own). Reads only shapes and dtypes."""
    sizes: dict[str, int] = {}
    shards: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"state dict value {key!r} is a {type(tensor).__name__}, not a tensor: "
                "only tensors can be saved as safetensors"
            )
        out_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        sizes[key] = tensor.numel() * out_dtype.itemsize
        if current and current_bytes + sizes[key] > max_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(key)
        current_bytes += sizes[key]
    if current:
        shards.append(current)
    return shards, sizes


def _write_shard(
    state_dict: Mapping[str, torch.Tensor],
    keys: list[str],
    path: Path,
    dtype: torch.dtype | None,
    metadata: dict[str, str],
) -> None:
    # Only this shard's tensors are converted and moved to the CPU; they are freed when
    # this function returns, so host memory stays near one shard.
    tensors: dict[str, torch.Tensor] = {}
    storages: set[tuple[str, int]] = set()
    for key in keys:
        tensor = full_precision(state_dict[key])
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.to("cpu").contiguous()
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if storage in storages and tensor.numel():
            tensor = tensor.clone()  # safetensors refuses tensors that share memory
        storages.add((str(tensor.device), tensor.untyped_storage().data_ptr()))
        tensors[key] = tensor
    atomic_write(path, lambda tmp: save_file(tensors, os.fspath(tmp), metadata=metadata))


def save_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    directory: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    dtype: torch.dtype | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write tensors as Hugging Face safetensors, sharded by size.

    One shard is written as ``model.safetensors``; several as
    ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json``
    (``metadata.total_size`` and ``weight_map``), exactly as transformers names them.
    Shards are built and written one at a time, each to a temporary name then renamed,
    so host memory stays near one shard and no half-written file remains. Weight files
    of an earlier save in ``directory`` that the new one does not use are removed.

    Args:
        state_dict: HF key -> tensor (any device).
        directory: Where to write (created if needed).
        max_shard_size: Bytes per shard, as an int or a string (``"5GB"``, ``"500MB"``,
            ``"2GiB"``); a larger single tensor gets a shard of its own.
        dtype: Cast floating-point tensors to this dtype; ``None`` keeps each tensor's.
        metadata: safetensors header metadata; ``{"format": "pt"}`` (which transformers
            expects) is always included.

    Returns:
        The weight files written, in order.

    Raises:
        CheckpointError: a value is not a tensor, or ``max_shard_size`` is invalid.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cast = resolve_dtype(dtype) if dtype is not None else None
    meta = {"format": "pt", **(metadata or {})}
    shards, sizes = _plan_shards(state_dict, cast, parse_size(max_shard_size))
    if len(shards) <= 1:
        names = [_SINGLE]
    else:
        names = [
            f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)
        ]
    written = []
    for keys, name in zip(shards or [[]], names, strict=True):
        _write_shard(state_dict, keys, out / name, cast, meta)
        written.append(out / name)
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(sizes.values())},
            "weight_map": {
                key: name for keys, name in zip(shards, names, strict=True) for key in keys
            },
        }
        text = json.dumps(index, indent=2, sort_keys=True) + "\n"
        atomic_write(out / HF_INDEX, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _remove_stale(out, {p.name for p in written} | ({HF_INDEX} if len(shards) > 1 else set()))
    return written


def _remove_stale(directory: Path, keep: set[str]) -> None:
    for path in directory.iterdir():
        if path.name in keep:
            continue
        if _OURS.match(path.name) or path.name == HF_INDEX:
            path.unlink()
