"""The pieces the ``finetune`` recipe composes: schedules, loss, precision, memory,
activation checkpointing/offloading, metric loggers, seeding and progress.

Configs name these by dotted path, e.g.
``lr_scheduler: {_component_: tunesmith.training.cosine_with_warmup, num_warmup_steps: 100}``,
``loss: {_component_: tunesmith.training.ChunkedCrossEntropyLoss}``,
``metric_logger: {_component_: tunesmith.training.DiskLogger, log_dir: ${output_dir}/logs}``.
"""

from tunesmith.training._activations import activation_offloading, apply_activation_checkpointing
from tunesmith.training._guard import (
    StopOnInterrupt,
    check_finite_params,
    check_finite_step,
    check_vocabulary,
)
from tunesmith.training._loggers import (
    DiskLogger,
    MetricLogger,
    StdoutLogger,
    TensorBoardLogger,
    WandBLogger,
)
from tunesmith.training._loss import ChunkedCrossEntropyLoss, scale_grads, shift_labels
from tunesmith.training._memory import memory_stats, reset_peak_memory_stats
from tunesmith.training._optim import OptimizerInBackward, fused_default
from tunesmith.training._params import count_parameters, estimate_train_flops_per_token
from tunesmith.training._precision import (
    auto_dtype,
    cpu_bf16_support,
    gemm_row_multiple,
    resolve_device,
    resolve_dtype,
    set_default_dtype,
)
from tunesmith.training._progress import ThroughputMeter, format_metrics
from tunesmith.training._schedulers import (
    constant_with_warmup,
    cosine_with_warmup,
    linear_with_warmup,
)
from tunesmith.training._seed import rng_state, set_rng_state, set_seed

__all__ = [
    "ChunkedCrossEntropyLoss",
    "DiskLogger",
    "MetricLogger",
    "OptimizerInBackward",
    "StdoutLogger",
    "StopOnInterrupt",
    "TensorBoardLogger",
    "ThroughputMeter",
    "WandBLogger",
    "activation_offloading",
    "apply_activation_checkpointing",
    "auto_dtype",
    "check_finite_params",
    "check_finite_step",
    "check_vocabulary",
    "constant_with_warmup",
    "cosine_with_warmup",
    "count_parameters",
    "cpu_bf16_support",
    "estimate_train_flops_per_token",
    "format_metrics",
    "fused_default",
    "gemm_row_multiple",
    "linear_with_warmup",
    "memory_stats",
    "reset_peak_memory_stats",
    "resolve_device",
    "resolve_dtype",
    "rng_state",
    "scale_grads",
    "set_default_dtype",
    "set_rng_state",
    "set_seed",
    "shift_labels",
]
