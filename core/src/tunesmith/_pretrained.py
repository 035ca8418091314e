"""``tunesmith.load_pretrained``: a checkpoint directory -> (model, tokenizer), ready to run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tunesmith.checkpoint import (
    Checkpointer,
    atomic_directory,
    check_new_output,
    config_dtype,
    convert_checkpoint,
    record_dtype,
    resolve_dtype,
    save_hf_state_dict,
    stored_dtype,
)
from tunesmith.errors import CheckpointError
from tunesmith.peft import transform_for_adapter

__all__ = [
    "convert_checkpoint",
    "load_pretrained",
    "merge_adapter",
    "resolve_device",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when present, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _default_dtype(device: torch.device, config: dict[str, Any]) -> torch.dtype:
    # CPUs compute bf16 ~100x slower than fp32; accelerators run the checkpoint's dtype.
    if device.type == "cpu":
        return torch.float32
    dtype = config_dtype(config) or torch.bfloat16
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return dtype


def load_pretrained(
    checkpoint_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike | None = None,
    max_seq_len: int | None = None,
    checkpoint_files: Sequence[str] | None = None,
    model_type: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """Load a model and its tokenizer from a checkpoint directory, ready for inference.

    The architecture comes from the checkpoint (``config.json`` or ``params.json``)
    through the installed family plugin; the tokenizer from the tokenizer files in
    the same directory.

    Args:
        checkpoint_dir: A Hugging Face model directory or a Meta checkpoint
            (an ``output_dir/epoch_N`` of a tunesmith run works too), or the output of
            ``tunesmith run quantize`` (see :func:`tunesmith.quantization.load_quantized`:
            it runs in the dtype it was quantized in).
        dtype: ``torch.bfloat16`` or ``"bf16"``, ``"fp32"``, ``"float16"``, ...; ``None``
            uses the checkpoint's dtype on a GPU and fp32 on the CPU.
        device: ``"cuda"``, ``"cpu"``, ``"cuda:1"``...; ``None`` or ``"auto"``: CUDA when
            present.
        adapter: A PEFT adapter directory (``adapter_config.json`` +
            ``adapter_model.safetensors``) to apply on top, by the installed PEFT method
            that declares its ``peft_type`` (``tunesmith-lora`` for LoRA and DoRA).
        max_seq_len: Truncation length for the tokenizer.
        checkpoint_files: The weight files to read (default: all the directory's), as
            a recipe's ``checkpointer.checkpoint_files``.
        model_type: The family, for a directory whose ``config.json`` does not name it
            (``checkpointer.model_type``).

    Returns:
        ``(model, tokenizer)``, the model in eval mode.

    Raises:
        CheckpointError: the directory is not a checkpoint, no plugin reads its family,
            or its weights do not match the architecture.
        TunesmithError: ``adapter`` is given but no installed PEFT method loads it.

    Example:
        >>> model, tokenizer = tunesmith.load_pretrained("models/Llama-3.2-1B-Instruct")
        >>> logits = model(torch.tensor([tokenizer.encode("Hello")]))
    """
    from tunesmith.quantization import is_quantized_dir

    if is_quantized_dir(checkpoint_dir):  # a `tunesmith run quantize` output
        if adapter is not None:
            raise CheckpointError(
                f"{checkpoint_dir} is quantized and takes no adapter: merge the adapter while "
                "quantizing (tunesmith run quantize ... adapter=<adapter dir>)"
            )
        from tunesmith.quantization import load_quantized

        return load_quantized(checkpoint_dir, device=device, dtype=dtype, max_seq_len=max_seq_len)
    ckpt = Checkpointer(checkpoint_dir, checkpoint_files=checkpoint_files, model_type=model_type)
    target = resolve_device(device)
    target_dtype = (
        resolve_dtype(dtype) if dtype is not None else _default_dtype(target, ckpt.hf_config)
    )
    if adapter is not None:
        adapter_dir, transform = transform_for_adapter(adapter)
    model = ckpt.load_model(device=target, dtype=target_dtype)
    if adapter is not None:
        # (in the adapter's own dtype: PEFT keeps one in float32 over a bf16 base)
        transform.load_adapter(model, adapter_dir, adapter=ckpt.adapter)
    model.to(device=target)
    model.eval()

    from tunesmith.tokenizers import auto_tokenizer

    tokenizer = auto_tokenizer(
        ckpt.checkpoint_dir, family=ckpt.adapter.family, max_seq_len=max_seq_len
    )
    return model, tokenizer


def merge_adapter(
    base_dir: str | os.PathLike,
    adapter_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    dtype: torch.dtype | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Merge a PEFT adapter into its base model and write a Hugging Face model directory.

    The merge runs on the CPU in fp32; the weights are written in ``dtype``, by default
    the base checkpoint's. ``dst_dir`` holds the base's support files (config.json,
    tokenizer, ...) and appears complete or not at all.

    Args:
        base_dir: The base model the adapter was trained on.
        adapter_dir: The PEFT adapter directory (``adapter_config.json`` +
            ``adapter_model.safetensors``).
        dst_dir: The directory to write.
        max_shard_size: Bytes per weight file (``"5GB"``, ``"500MB"`` or an int).
        dtype: The dtype to store; ``None``: the base checkpoint's ``config.json`` dtype.
        overwrite: Replace an existing non-empty ``dst_dir``.

    Returns:
        ``dst_dir``.

    Raises:
        CheckpointError: a directory is not what it should be, ``dst_dir`` holds
            something and ``overwrite`` is false, or the adapter does not fit the base.
        TunesmithError: no installed PEFT method loads the adapter.
    """
    ckpt = Checkpointer(base_dir)
    adapter_path, transform = transform_for_adapter(adapter_dir)
    dst = check_new_output(
        dst_dir, overwrite=overwrite, sources=(ckpt.checkpoint_dir, adapter_path)
    )
    model = ckpt.load_model(device="cpu", dtype=torch.float32)
    transform.load_adapter(model, adapter_path, adapter=ckpt.adapter)
    hf_state = ckpt.to_hf(transform.merged_state_dict(model))
    store = resolve_dtype(dtype) if dtype is not None else config_dtype(ckpt.hf_config)
    with atomic_directory(dst) as tmp:
        save_hf_state_dict(hf_state, tmp, max_shard_size=max_shard_size, dtype=store)
        ckpt.write_support_files(tmp)
        record_dtype(tmp, store or stored_dtype(hf_state))
    return dst
