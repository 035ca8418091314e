"""Parameter counts and the training-FLOPs estimate benchmarks report MFU from."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters", "estimate_train_flops_per_token"]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Trainable and total parameter counts (a tied weight counts once).

    Args:
        model: any module; for a sharded (FSDP2) model the counts are global.

    Returns:
        ``(trainable, total)``.
    """
    trainable = total = 0
    for p in model.parameters():  # parameters() already de-duplicates shared tensors
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def estimate_train_flops_per_token(
    num_params_non_embedding: int, num_layers: int, seq_len: int, embed_dim: int
) -> int:
    """Approximate FLOPs to train on one token: ``6 * N + 12 * L * s * d``.

    ``6N``: every non-embedding weight does one multiply-add (2 FLOPs) per token
    in the forward pass and two in the backward pass (gradients with respect to
    inputs and to weights). ``12 * L * s * d``: the attention score and
    weighted-value matmuls, ``2 * 2 * s * d`` FLOPs per token and layer forward,
    times 3 for forward plus backward (PaLM paper, appendix B). Causal masking
    is not discounted, matching the usual MFU convention. Embedding lookups are
    free; a separate (untied) output projection belongs in ``N``.

    Args:
        num_params_non_embedding: parameters excluding the input embedding table.
        num_layers: transformer layers ``L``.
        seq_len: training sequence length ``s``.
        embed_dim: model width ``d``.

    Returns:
        FLOPs per trained token; multiply by tokens/s and divide by the device's
        peak FLOP/s for MFU.
    """
    return 6 * num_params_non_embedding + 12 * num_layers * seq_len * embed_dim
