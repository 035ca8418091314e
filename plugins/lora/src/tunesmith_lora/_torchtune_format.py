"""The PEFT adapters torchtune writes, and the three things their files get wrong.

torchtune 0.6's ``FullModelHFCheckpointer`` writes ``adapter_config.json`` +
``adapter_model.safetensors`` (PEFT's key names, converted from torchtune's) into
``output_dir/epoch_N`` beside the merged weights, and its own ``adapter_model.pt``.
Its ``adapter_config.json`` is minimal (:data:`TORCHTUNE_CONFIG_KEYS`), which is how
such an adapter is recognised: PEFT's ``save_pretrained`` always writes more keys.

1. It has no ``use_dora``: a DoRA adapter is known by its ``lora_magnitude_vector``
   tensors (PEFT itself then loads it as plain LoRA and drops the magnitudes).
2. torchtune keeps ``q_proj``/``k_proj`` rows interleaved per head (Meta's RoPE layout)
   for every model type but Qwen's, and converts its adapters to PEFT's names by
   permuting the rows of ``lora_B`` of ``q_proj``/``k_proj`` into Hugging Face order —
   but not the rows of their DoRA magnitudes, which stay interleaved.
3. It permutes ``lora_B`` of Qwen's ``q_proj``/``k_proj`` the same way, although
   their rows were in Hugging Face order already.

:func:`fix_torchtune_adapter` undoes 2 and 3, so the adapter gives the logits of the
merged weights torchtune wrote beside it (tested on torchtune 0.6.1's own outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tunesmith import CheckpointAdapter
from tunesmith.checkpoint import halves_to_interleaved, interleaved_to_halves
from tunesmith.errors import CheckpointError

__all__ = ["TORCHTUNE_CONFIG_KEYS", "fix_torchtune_adapter", "is_torchtune_config"]

#: Every key torchtune's ``tune_to_peft_adapter_config`` writes.
TORCHTUNE_CONFIG_KEYS = frozenset(
    {"r", "lora_alpha", "target_modules", "peft_type", "base_model_name_or_path"}
)
#: Hugging Face ``model_type`` values whose checkpoints torchtune converts without
#: reordering q/k rows: its ``ModelType.QWEN2`` (Qwen 2 and 2.5; tested), and the
#: ``QWEN3`` of later releases (read from their ``qwen3_hf_to_tune``, which does not
#: reorder either, while their adapter writer is still the generic one).
_HF_ORDER_MODEL_TYPES = frozenset({"qwen2", "qwen3"})
_PERMUTED = ("q_proj", "k_proj")


def is_torchtune_config(config: Mapping[str, Any]) -> bool:
    """Whether an ``adapter_config.json`` is the minimal one torchtune writes."""
    return {"r", "lora_alpha", "peft_type"} <= set(config) <= TORCHTUNE_CONFIG_KEYS


def _head_dim(model: nn.Module, native: str) -> int:
    parent = model.get_submodule(native.rpartition(".")[0]) if "." in native else model
    head_dim = getattr(parent, "head_dim", None)
    if not isinstance(head_dim, int) or head_dim < 2:
        raise CheckpointError(
            f"cannot put torchtune's {native} adapter rows in Hugging Face order: the "
            "model's attention has no head_dim; load torchtune's merged weights "
            "(its epoch_N directory) instead"
        )
    return head_dim


def fix_torchtune_adapter(
    model: nn.Module,
    by_hf: Mapping[str, Mapping[str, torch.Tensor]],
    natives_of: Mapping[str, tuple[str, ...]],
    adapter: CheckpointAdapter,
) -> tuple[dict[str, dict[str, torch.Tensor]], bool]:
    """A torchtune adapter's tensors as PEFT would have them, and whether it is DoRA.

    Args:
        model: The native model the adapter goes onto (for its heads' size).
        by_hf: HF module path -> {native parameter name: tensor} as read from the file.
        natives_of: HF module path -> the native module path(s) it stands for.
        adapter: The family's checkpoint adapter (its ``model_types``).

    Returns:
        ``(by_hf with q/k rows in Hugging Face order, use_dora)``.
    """
    use_dora = any("magnitude" in params for params in by_hf.values())
    hf_order = bool(_HF_ORDER_MODEL_TYPES & set(adapter.model_types))
    fixed: dict[str, dict[str, torch.Tensor]] = {}
    for hf_path, params in by_hf.items():
        params = dict(params)
        natives = natives_of[hf_path]
        if hf_path.rpartition(".")[2] in _PERMUTED and len(natives) == 1:
            head_dim = _head_dim(model, natives[0])
            if hf_order:
                params["lora_b.weight"] = halves_to_interleaved(params["lora_b.weight"], head_dim)
            elif "magnitude" in params:
                params["magnitude"] = interleaved_to_halves(params["magnitude"], head_dim)
        fixed[hf_path] = params
    return fixed, use_dora
