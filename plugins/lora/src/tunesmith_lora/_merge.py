"""Module-level adapter IO (merging into a base checkpoint is ``tunesmith.merge_adapter``)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tunesmith import CheckpointAdapter
from tunesmith_lora._peft_format import load_peft_adapter, save_peft_adapter

__all__ = ["load_adapter", "save_adapter"]


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
