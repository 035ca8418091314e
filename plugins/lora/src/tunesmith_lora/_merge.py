"""Module-level adapter IO and ``merge_adapter``: base + adapter -> plain HF checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from tunesmith import CheckpointAdapter

from tunesmith_lora._peft_format import load_peft_adapter, read_peft_adapter, save_peft_adapter
from tunesmith_lora._transform import merged_state_dict

__all__ = ["load_adapter", "merge_adapter", "save_adapter"]


def save_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    adapter: CheckpointAdapter,
    base_model_name_or_path: str,
) -> Path:
    """Write ``model``'s adapters as a PEFT directory that ``PeftModel.from_pretrained`` loads.

    Args:
        model: A native model with :class:`~tunesmith_lora.LoRALinear` layers.
        directory: Target directory (created if needed).
        adapter: The family's checkpoint adapter (native -> HF names).
        base_model_name_or_path: Recorded in ``adapter_config.json``.

    Returns:
        The directory.
    """
    return save_peft_adapter(
        model, directory, adapter=adapter, base_model_name_or_path=base_model_name_or_path
    )


def load_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    adapter: CheckpointAdapter,
    quantize_base: bool = False,
) -> None:
    """Load a PEFT-format LoRA/DoRA adapter directory into a native model, in place.

    Args:
        model: A native model with its base weights loaded.
        directory: Written by :func:`save_adapter` or PEFT's ``save_pretrained``.
        adapter: The family's checkpoint adapter (HF -> native names).
        quantize_base: Keep adapted base weights in NF4 (QLoRA).

    Raises:
        CheckpointError: the directory is missing or invalid, or does not fit the model.
    """
    load_peft_adapter(model, directory, adapter=adapter, quantize_base=quantize_base)


def merge_adapter(
    base_dir: str | os.PathLike,
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Merge a PEFT adapter into its base model and write a Hugging Face model directory.

    The base is loaded on the CPU in float32, the adapter applied and folded into the
    weights, and the result written as ``model*.safetensors`` (+ index) beside the
    base's support files (``config.json``, tokenizer files, ...). ``output_dir``
    appears complete or not at all.

    Args:
        base_dir: The base checkpoint the adapter was trained on (HF or Meta format).
        adapter_dir: The adapter (``adapter_config.json`` + ``adapter_model.safetensors``).
        output_dir: The directory to write (replaced if it exists).
        max_shard_size: Bytes per weight file (``"5GB"``, ``"500MB"`` or an int).
        dtype: Dtype to store; ``None``: the base ``config.json``'s dtype.

    Returns:
        ``output_dir`` as a ``Path``.

    Raises:
        CheckpointError: a directory is missing or invalid, or the adapter does not fit
            the base model.

    Example:
        >>> merge_adapter("models/Llama-3.2-1B", "runs/lora/epoch_0", "models/merged")
    """
    from tunesmith.checkpoint import (
        Checkpointer,
        atomic_directory,
        config_dtype,
        load_model_weights,
        resolve_dtype,
        save_hf_state_dict,
    )

    adapter_path = Path(adapter_dir).expanduser()
    read_peft_adapter(adapter_path)  # fail on a bad adapter before loading the base
    ckpt = Checkpointer(base_dir)
    model = ckpt.build_model()
    load_model_weights(model, ckpt.load_state_dict())
    model.float()
    load_peft_adapter(model, adapter_path, adapter=ckpt.adapter)
    hf_state = ckpt.to_hf(merged_state_dict(model))
    store = resolve_dtype(dtype) if dtype is not None else config_dtype(ckpt.hf_config)
    destination = Path(output_dir).expanduser()
    with atomic_directory(destination) as tmp:
        save_hf_state_dict(hf_state, tmp, max_shard_size=max_shard_size, dtype=store)
        ckpt.write_support_files(tmp)
    return destination
