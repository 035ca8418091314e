"""Converting any supported checkpoint into a Hugging Face model directory."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tunesmith.checkpoint._checkpointer import Checkpointer, detect_format, refuse_quantized
from tunesmith.checkpoint._dtypes import record_dtype, resolve_dtype, stored_dtype
from tunesmith.checkpoint._files import atomic_directory, check_new_output, copy_support_files
from tunesmith.checkpoint._hf import load_hf_state_dict, read_hf_config, save_hf_state_dict

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    dtype: torch.dtype | str | None = None,
    model_type: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Meta or Hugging Face checkpoint as a Hugging Face model directory.

    A Meta checkpoint is renamed through its family's adapter and gets a
    ``config.json``; a Hugging Face one is re-sharded (and cast, with ``dtype``). The
    support files (tokenizer, ...) are copied; ``dst_dir`` appears complete or not at
    all. An existing non-empty ``dst_dir`` is refused unless ``overwrite``.

    Args:
        src_dir: The checkpoint to convert.
        dst_dir: The Hugging Face directory to write.
        max_shard_size: Bytes per weight file (``"5GB"``, ``"500MB"`` or an int).
        dtype: Cast floating-point weights (``"bf16"``); ``None`` keeps them.
        model_type: The family, for Meta checkpoints several installed families read.
        overwrite: Replace an existing non-empty ``dst_dir``.

    Returns:
        ``dst_dir``.

    Raises:
        CheckpointError: the source is not a readable checkpoint, or ``dst_dir`` holds
            something and ``overwrite`` is false.
    """
    src, fmt = detect_format(src_dir)
    if fmt == "hf":
        refuse_quantized(src, read_hf_config(src))
    dst = check_new_output(dst_dir, overwrite=overwrite, sources=(src,))
    with atomic_directory(dst) as tmp:
        if fmt == "hf":
            # Same names in and out: no adapter needed, so any HF model converts.
            state = load_hf_state_dict(src)
            save_hf_state_dict(state, tmp, max_shard_size=max_shard_size, dtype=dtype)
            copy_support_files(src, tmp, exclude=[dst])
        else:
            ckpt = Checkpointer(src, model_type=model_type)
            state = ckpt.to_hf(ckpt.load_state_dict())
            save_hf_state_dict(state, tmp, max_shard_size=max_shard_size, dtype=dtype)
            ckpt.write_support_files(tmp)
        # A cast (or a Meta file's own dtype) is what config.json must declare.
        if dtype is not None or fmt != "hf":
            record_dtype(tmp, resolve_dtype(dtype) if dtype is not None else stored_dtype(state))
    return dst
