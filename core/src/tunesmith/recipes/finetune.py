"""The one fine-tuning recipe: full or PEFT, one device or many (FSDP2).

``full_finetune_single_device``, ``lora_finetune_distributed`` and friends are
registered aliases of :func:`run` with defaults, not copies. A run reads a Hugging
Face (or Meta) checkpoint, trains, and writes ``output_dir/epoch_N/`` in HF format
(plus a PEFT adapter for PEFT runs), logs to ``output_dir/logs/`` and keeps
``output_dir/recipe_state/`` so ``resume_from_checkpoint=true`` continues exactly
where it stopped.

Loss normalisation: each micro-batch's *summed* token loss is back-propagated and
the accumulated gradients are divided by the number of target tokens of the
whole step (over every rank), so gradient accumulation equals one large batch.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tunesmith import training
from tunesmith.checkpoint import Checkpointer, load_model_weights
from tunesmith.config import instantiate
from tunesmith.data import (
    CROSS_ENTROPY_IGNORE_IDX,
    ConcatenatedDataset,
    PackedDataset,
    packed_collate,
    padded_collate,
    padding_free_collate,
)
from tunesmith.errors import CheckpointError, ConfigError, DataError, Interrupted
from tunesmith.modules import TransformerDecoder
from tunesmith.recipes import FINETUNE_KEYS, FINETUNE_REQUIRED_KEYS, FINETUNE_SCHEMA, _outputs
from tunesmith.recipes._run_dir import RunDirectory, resume_command
from tunesmith.recipes._sampler import EpochSampler
from tunesmith.recipes._strategy import Strategy, get_strategy
from tunesmith.training._progress import progress_bar

__all__ = ["FINETUNE_KEYS", "FINETUNE_REQUIRED_KEYS", "FINETUNE_SCHEMA", "run"]


@dataclass
class _Position:
    """Where training is; saved in the recipe state for an exact resume."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


@dataclass
class _Run:
    cfg: DictConfig
    strategy: Strategy
    dtype: torch.dtype
    checkpointer: Checkpointer
    model: nn.Module
    peft: Any
    tokenizer: Any
    loader: DataLoader
    sampler: EpochSampler
    val_loader: DataLoader | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module
    logger: Any
    steps_per_epoch: int
    position: _Position = field(default_factory=_Position)
    stop: Any = None  # training.StopOnInterrupt while training
    step_seconds: list[float] = field(default_factory=list)  # the first steps', for compile
    epoch_report: Any = None  # what the last epoch's outputs say (_outputs.summary)
    padding_free: bool = False  # unpacked batches as one row of their samples (_Collate)
    grad_norm: float | None = None  # the last step's, before clipping (with clip_grad_norm)


# ------------------------------------------------------------------- setup ---


_AUTO = {"_component_": "auto"}


def _build_model(
    cfg: DictConfig,
    checkpointer: Checkpointer,
    device: torch.device,
    dtype: torch.dtype,
    tokenizer: Any = None,
):
    context = {"checkpointer": checkpointer}
    with training.set_default_dtype(dtype), device:
        model = instantiate(cfg.get("model") or _AUTO, key="model", context=context)
    if tokenizer is not None:
        training.check_vocabulary(tokenizer, model)  # before minutes of loading weights
    load_model_weights(model, checkpointer.load_state_dict())
    return model


def _build_tokenizer(cfg: DictConfig, checkpointer: Checkpointer):
    context = {"checkpointer": checkpointer}
    return instantiate(cfg.get("tokenizer") or _AUTO, key="tokenizer", context=context)


def _build_dataset(cfg, node_key, tokenizer, strategy):
    """``(dataset, packed)`` of ``cfg[node_key]``: one dataset, or a list of them trained
    as one (torchtune's ``dataset: [...]``; all packed or none)."""
    node = cfg[node_key]
    many = isinstance(node, ListConfig)
    named = (
        [(f"{node_key}.{i}", item) for i, item in enumerate(node)] if many else [(node_key, node)]
    )
    parts = []
    for key, item in named:
        dataset = instantiate(item, tokenizer, key=key)
        if len(dataset) == 0:
            raise ConfigError(f"'{key}' produced no samples: check its source, split and filters")
        _check_truncation(item, key, dataset, strategy)
        parts.append(dataset)
    packed = [isinstance(part, PackedDataset) for part in parts]
    if any(packed) and not all(packed):
        raise ConfigError(
            f"'{node_key}' mixes packed and unpacked datasets: set packed the same on each "
            f"({', '.join(f'{node_key}.{i}.packed={p}' for i, p in enumerate(packed))})"
        )
    return (ConcatenatedDataset(parts) if many else parts[0]), packed[0]


def _build_loader(cfg, node_key, tokenizer, strategy, *, shuffle, drop_last=True):
    dataset, packed = _build_dataset(cfg, node_key, tokenizer, strategy)
    sampler = EpochSampler(
        len(dataset),
        shuffle=shuffle,
        seed=int(cfg.seed or 0),
        rank=strategy.rank,
        world_size=strategy.world_size,
    )
    collate = packed_collate if packed else _Collate(tokenizer.pad_id)
    loader = DataLoader(
        dataset,
        batch_size=int(cfg.batch_size),
        sampler=sampler,
        collate_fn=collate,
        # Training steps need full batches; validation must count every row.
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        # Its own generator: iter() on a DataLoader without one draws from the global RNG,
        # which would shift the dropout masks of a resumed run (its RNG is restored first).
        generator=torch.Generator().manual_seed(int(cfg.seed or 0)),
    )
    return loader, sampler


class _Collate:
    """Unpacked samples into a batch: padded rows until :func:`_shape_batches` finds
    that the model takes a DocumentMask (the loader is built before the model), and
    (``row_multiple``) with positions rounded up to a multiple the products' kernels
    want; padded rows no wider than ``max_width`` (the model's ``max_seq_len``)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.padding_free = False
        self.row_multiple = 1
        self.max_width: int | None = None

    def __call__(self, batch):
        multiple = self.row_multiple if self.row_multiple > 1 else None
        if self.padding_free:
            return padding_free_collate(
                batch, ignore_idx=CROSS_ENTROPY_IGNORE_IDX, pad_to_multiple_of=multiple,
                pad_id=self.pad_id,
            )  # fmt: skip
        return padded_collate(
            batch, pad_id=self.pad_id, ignore_idx=CROSS_ENTROPY_IGNORE_IDX,
            pad_to_multiple_of=multiple and self._width_multiple(batch, multiple),
        )  # fmt: skip

    def _width_multiple(self, batch, multiple: int) -> int | None:
        """The multiple padded rows' width is rounded to: rows x width is then a multiple
        of ``multiple`` where the batch size divides it, and takes few values otherwise.
        None where rounding would pass ``max_width`` (positions past the model's
        max_seq_len have no rotary angles)."""
        width_multiple = -(-multiple // len(batch))
        longest = max(len(sample["tokens"]) for sample in batch)
        if self.max_width and -(-longest // width_multiple) * width_multiple > self.max_width:
            return None
        return width_multiple


def _shape_batches(cfg: DictConfig, model: nn.Module, loaders, device, dtype) -> bool:
    """Unpacked batches, now that the model is known: with ``padding_free`` and a core
    decoder (whose attention takes a DocumentMask), one row of their samples' tokens;
    positions rounded up where the device compiles a kernel per product shape
    (:func:`~tunesmith.training.gemm_row_multiple`). True if any became padding-free."""
    collates = [loader.collate_fn for loader in loaders if loader is not None]
    collates = [c for c in collates if isinstance(c, _Collate)]
    padding_free = bool(cfg.padding_free and isinstance(model, TransformerDecoder) and collates)
    for collate in collates:
        collate.padding_free = padding_free
        collate.row_multiple = training.gemm_row_multiple(device, dtype)
        collate.max_width = getattr(model, "max_seq_len", None)
    return padding_free


def _check_truncation(node: DictConfig, node_key: str, dataset, strategy: Strategy) -> None:
    """Warn when max_seq_len cuts away whole responses (their prompts fill it), and refuse
    when it does so to every sample: such a run would train nothing."""
    from tunesmith.data import lost_responses

    found = lost_responses(dataset)
    if found is None or found.lost == 0:
        return
    own = node.get("max_seq_len")
    setting = f"{node_key}.max_seq_len" if own == found.max_seq_len else "tokenizer.max_seq_len"
    among = f" (the first {found.checked} of {found.total})" if found.checked < found.total else ""
    cause = f"to {setting}={found.max_seq_len} (their prompts are longer)"
    fix = "raise max_seq_len or shorten the prompts"
    if found.lost == found.checked:
        raise DataError(
            f"all {found.checked} samples of '{node_key}'{among} lose their whole response "
            f"{cause}, so nothing would be trained: {fix}"
        )
    if strategy.is_main:
        print(
            f"warning: {found.lost} of {found.checked} samples of '{node_key}'{among} lose "
            f"their whole response {cause}: {fix}",
            file=sys.stderr,
            flush=True,
        )


def _build_scheduler(cfg: DictConfig, optimizer, total_steps: int):
    node = cfg.lr_scheduler
    if node is None:
        return None
    from tunesmith.config import resolve_component

    target = resolve_component(node._component_, key="lr_scheduler")
    accepts_total = "num_training_steps" in inspect.signature(target).parameters
    extra = {"num_training_steps": total_steps} if accepts_total else {}
    return instantiate(node, optimizer, key="lr_scheduler", **extra)


def _setup(cfg: DictConfig) -> _Run:
    device = training.resolve_device(cfg.device)
    strategy = get_strategy(device)
    device = strategy.device
    if cfg.optimizer_in_bwd:
        _check_optimizer_in_bwd(cfg, strategy)
    dtype = training.resolve_dtype(cfg.dtype, device)

    ckpt_cfg = cfg.checkpointer
    checkpointer = Checkpointer(
        ckpt_cfg.checkpoint_dir,
        ckpt_cfg.get("output_dir", cfg.output_dir),
        checkpoint_files=ckpt_cfg.get("checkpoint_files"),
        model_type=ckpt_cfg.get("model_type"),
    )
    if cfg.seed is None and cfg.resume_from_checkpoint:
        # As torchtune: an unset seed resumes with the interrupted run's (its data order).
        cfg.seed = checkpointer.load_training_state(mmap=True).get("seed")
        if strategy.is_main and cfg.seed is not None:
            print(f"seed is null: resuming with the interrupted run's seed {cfg.seed}")
    cfg.seed = training.set_seed(cfg.seed)
    # Data first: a bad dataset should fail before minutes of loading weights.
    tokenizer = _build_tokenizer(cfg, checkpointer)
    loader, sampler = _build_loader(cfg, "dataset", tokenizer, strategy, shuffle=cfg.shuffle)
    val_loader = None
    if cfg.validation_dataset is not None:
        val_loader, _ = _build_loader(
            cfg, "validation_dataset", tokenizer, strategy, shuffle=False, drop_last=False
        )

    accumulation = cfg.gradient_accumulation_steps
    steps_per_epoch = len(loader) // accumulation
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the dataset gives {len(loader)} batch(es) per epoch, fewer than one optimizer step "
            f"(batch_size={cfg.batch_size} × gradient_accumulation_steps={accumulation}): "
            "lower one of them or use more data"
        )
    peft = instantiate(cfg.peft, key="peft")
    model = _build_model(cfg, checkpointer, device, dtype, tokenizer)
    padding_free = _shape_batches(cfg, model, (loader, val_loader), device, dtype)
    if peft is not None:
        peft.apply(model)
    layers = list(model.layers)
    if cfg.enable_activation_checkpointing:
        training.apply_activation_checkpointing(model, layer_types=(type(layers[0]),))
    if cfg.compile:
        for layer in layers:
            layer.compile()
    model = strategy.prepare(model, layers)

    optimizer = _build_optimizer(cfg, model, strategy)
    scheduler = _build_scheduler(cfg, optimizer, steps_per_epoch * int(cfg.epochs))
    loss_fn = instantiate(cfg.loss, key="loss") or training.ChunkedCrossEntropyLoss()
    if cfg.compile and hasattr(loss_fn, "apply_compile_strategy"):
        loss_fn.apply_compile_strategy()
    logger = instantiate(cfg.metric_logger, key="metric_logger") if strategy.is_main else None
    return _Run(
        cfg, strategy, dtype, checkpointer, model, peft, tokenizer, loader, sampler, val_loader,
        optimizer, scheduler, loss_fn, _outputs.History(logger or training.StdoutLogger()),
        steps_per_epoch, padding_free=padding_free,
    )  # fmt: skip


def _build_optimizer(cfg: DictConfig, model: nn.Module, strategy: Strategy):
    """The config's optimizer, with fused kernels where the device has them (unless the
    config chose ``fused``/``foreach``); with ``optimizer_in_bwd``, one per parameter,
    stepped inside backward."""
    from tunesmith.config import resolve_component

    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    target = resolve_component(cfg.optimizer._component_, key="optimizer")
    extra = {}
    if strategy.world_size == 1:  # sharded parameters keep torch's default kernels
        extra = training.fused_default(target, cfg.optimizer, strategy.device, params)
    if not cfg.optimizer_in_bwd:
        return instantiate(cfg.optimizer, params, key="optimizer", **extra)
    return training.OptimizerInBackward(
        named, lambda group: instantiate(cfg.optimizer, group, key="optimizer", **extra)
    )


def _check_optimizer_in_bwd(cfg: DictConfig, strategy: Strategy) -> None:
    conflicts = []
    if cfg.clip_grad_norm is not None:
        conflicts.append(f"clip_grad_norm={cfg.clip_grad_norm}")
    if cfg.gradient_accumulation_steps > 1:
        conflicts.append(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps}")
    if strategy.world_size > 1:
        conflicts.append(f"{strategy.world_size} processes")
    if conflicts:
        raise ConfigError(
            "optimizer_in_bwd=true steps each parameter as soon as its gradient is ready, so "
            f"it cannot work with {' or '.join(conflicts)} (they need every gradient of the "
            "step at once): set clip_grad_norm=null and gradient_accumulation_steps=1 on one "
            "device, or optimizer_in_bwd=false"
        )


def _chunked_head(model: nn.Module, loss_fn: nn.Module) -> dict[str, Any] | None:
    """``{head, softcap}`` when the loss can apply the model's head itself, chunk by chunk
    (no logits of the whole batch), and the model can return its hidden states."""
    if not getattr(loss_fn, "supports_hidden_states", False) or not hasattr(model, "output"):
        return None
    try:
        accepts = "return_hidden" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    if not accepts:
        return None
    return {"head": model.output, "softcap": getattr(model, "final_softcap", None)}


# ------------------------------------------------------------ state, saving ---


def _trainable_state(run: _Run) -> dict[str, torch.Tensor]:
    full = run.strategy.full_state_dict(run.model)
    if run.peft is None:
        return full
    names = set(run.peft.trainable_params(run.model))
    return {k: v for k, v in full.items() if k in names}


def _save_state(run: _Run) -> None:
    """Everything a resumed run needs; written atomically by the checkpointer."""
    model_state = _trainable_state(run)
    training.check_finite_params(model_state.items(), step=run.position.global_step)
    state = {
        "model": model_state,
        "optimizer": run.strategy.optimizer_state_dict(run.model, run.optimizer),
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "rng": training.rng_state(),
        "position": vars(run.position).copy(),
        "seed": run.cfg.seed,
        "peft": OmegaConf.to_container(run.cfg.peft) if run.cfg.peft else None,
    }
    if run.strategy.is_main:
        run.checkpointer.save_training_state(state)
    run.strategy.barrier()


def _restore_state(run: _Run) -> None:
    state = run.checkpointer.load_training_state()
    missing = [k for k in ("model", "optimizer", "scheduler", "rng", "position") if k not in state]
    if missing:
        raise CheckpointError(
            f"{run.checkpointer.training_state_path()} is not a training state tunesmith "
            f"wrote (it has no {', '.join(missing)}): delete it, or resume from another "
            "output_dir"
        )
    peft = OmegaConf.to_container(run.cfg.peft) if run.cfg.peft else None
    if state.get("peft") != peft:
        raise ConfigError(
            f"the interrupted run trained with peft {state.get('peft')}, this one with {peft}: "
            "resume with the same peft settings (or start a new run in another output_dir)"
        )
    if state.get("seed") != run.cfg.seed:
        raise ConfigError(
            f"the interrupted run used seed {state.get('seed')}, this one {run.cfg.seed}: "
            f"resume with seed={state.get('seed')} to get the same data order"
        )
    run.strategy.load_model_state_dict(run.model, state["model"], strict=run.peft is None)
    run.strategy.load_optimizer_state_dict(run.model, run.optimizer, state["optimizer"])
    if run.scheduler and state["scheduler"]:
        run.scheduler.load_state_dict(state["scheduler"])
    training.set_rng_state(state["rng"])
    run.position = _Position(**state["position"])


def _save_epoch(run: _Run, epoch: int) -> Path | None:
    full = run.strategy.full_state_dict(run.model)
    trained = set(run.peft.trainable_params(run.model)) if run.peft is not None else set(full)
    checked = ((k, v) for k, v in full.items() if k in trained)
    training.check_finite_params(checked, step=run.position.global_step)
    if run.peft is not None:
        weights = (
            None
            if run.cfg.get("save_adapter_weights_only")
            else run.peft.merged_state_dict(run.model, full)
        )
    else:
        weights = full
    path = None
    if run.strategy.is_main:

        def write_adapter(directory: Path) -> None:
            # In a subfolder: an adapter_config.json beside config.json makes transformers
            # apply the adapter again on top of the merged weights.
            run.peft.save_adapter(
                run.model,
                directory / "adapter",
                adapter=run.checkpointer.adapter,
                base_model_name_or_path=_outputs.base_model_name(run.checkpointer.checkpoint_dir),
                state_dict=full,
            )

        extra = _outputs.epoch_writer(run, epoch, write_adapter if run.peft is not None else None)
        path = run.checkpointer.save_epoch(epoch, weights, extra=extra)
        _remove_old_epochs(run, epoch)
    run.strategy.barrier()
    return path


def _remove_old_epochs(run: _Run, epoch: int) -> None:
    """Honour ``keep_last_n_epochs``: delete this run's older ``epoch_N`` folders."""
    keep = run.cfg.keep_last_n_epochs
    if keep is None:
        return
    for old in range(epoch - int(keep), -1, -1):
        directory = run.checkpointer.epoch_dir(old)
        if directory.is_dir():
            shutil.rmtree(directory)


# -------------------------------------------------------------------- loop ---


def _forward_loss(run: _Run, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    device = run.strategy.device
    tokens = batch["tokens"].to(device)
    labels = training.shift_labels(batch["labels"].to(device))
    extra = {k: batch[k].to(device) for k in ("mask", "input_pos") if k in batch}
    head = _chunked_head(run.model, run.loss_fn)
    if head is not None:
        extra["return_hidden"] = True  # the loss applies the head, a chunk at a time
    with training.activation_offloading(run.cfg.enable_activation_offloading):
        out = run.model(tokens, **extra)
    return run.loss_fn(out, labels, **(head or {}))


@torch.no_grad()
def _validate(run: _Run) -> float:
    run.model.eval()
    total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    max_steps = run.cfg.max_val_steps
    for i, batch in enumerate(run.val_loader):
        if max_steps and i >= max_steps:
            break
        loss_sum, num_tokens = _forward_loss(run, batch)
        total += loss_sum.double().cpu()
        count += num_tokens.cpu()
    run.model.train()
    total, count = run.strategy.all_sum(total), run.strategy.all_sum(count)
    return (total / count.clamp(min=1)).item()


def _train_step(run: _Run, batches) -> tuple[float, int]:
    """One optimizer step over ``gradient_accumulation_steps`` micro-batches."""
    if isinstance(run.optimizer, training.OptimizerInBackward):
        return _train_step_in_backward(run, batches)
    loss_total = torch.zeros((), dtype=torch.float64)
    tokens_total = torch.zeros((), dtype=torch.int64)
    for batch in batches:
        loss_sum, num_tokens = _forward_loss(run, batch)
        loss_sum.backward()
        loss_total += loss_sum.detach().double().cpu()
        tokens_total += num_tokens.cpu()
    loss_total = run.strategy.all_sum(loss_total)
    tokens_total = run.strategy.all_sum(tokens_total)
    params = [p for p in run.model.parameters() if p.requires_grad]
    # FSDP averages gradients over ranks; scaling by world_size restores the sum.
    training.scale_grads(params, run.strategy.world_size / tokens_total.clamp(min=1).item())
    norm = None
    if run.cfg.clip_grad_norm is not None:
        norm = nn.utils.clip_grad_norm_(params, float(run.cfg.clip_grad_norm))
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    loss = (loss_total / tokens_total.clamp(min=1)).item()
    # Before the optimizer: a diverged step changes nothing, so nothing non-finite is saved.
    training.check_finite_step(loss, params, step=run.position.global_step + 1, grad_norm=norm)
    run.grad_norm = None if norm is None else float(norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.scheduler is not None:
        run.scheduler.step()
    return loss, int(tokens_total.item())


def _train_step_in_backward(run: _Run, batches) -> tuple[float, int]:
    """``optimizer_in_bwd``: one micro-batch whose loss is normalised before backward,
    since each parameter's hook steps it with the gradient as it arrives."""
    (batch,) = batches
    step = run.position.global_step + 1
    loss_sum, num_tokens = _forward_loss(run, batch)
    count = num_tokens.clamp(min=1)
    loss = (loss_sum.detach().double().cpu() / count.cpu()).item()
    training.check_finite_step(loss, [], step=step)  # before backward: nothing changes
    (loss_sum / count).backward()
    bad, run.optimizer.nonfinite = run.optimizer.nonfinite, []
    if bad:
        raise ConfigError(
            f"the gradient of {', '.join(bad[:3])} became non-finite at step {step}, so the "
            "step was refused and nothing of it was saved: lower the learning rate, then "
            "resume from the last saved state (resume_from_checkpoint=true) or start again"
        )
    run.optimizer.step()  # a no-op (the hooks stepped); keeps the LR scheduler's bookkeeping
    if run.scheduler is not None:
        run.scheduler.step()
    return loss, int(num_tokens.item())


def _report_warmup(run: _Run, seconds: float) -> None:
    """With ``compile``: print what the first steps cost (compilation) against the third."""
    if not run.cfg.compile or not run.strategy.is_main or len(run.step_seconds) > 2:
        return
    run.step_seconds.append(seconds)
    if len(run.step_seconds) == 3:
        first, second, steady = run.step_seconds
        tqdm.write(
            f"compile warm-up: {max(0.0, first + second - 2 * steady):.1f} s (steps 1-3 took "
            f"{first:.1f}, {second:.1f} and {steady:.2f} s)"
        )


def _micro_batches(iterator, count: int):
    return [next(iterator) for _ in range(count)]


def _after_step(run: _Run, loss: float, lr: float, meter: training.ThroughputMeter) -> None:
    """Log, validate and save mid-epoch state as the config asks."""
    cfg, pos = run.cfg, run.position
    step = pos.global_step
    if step % cfg.log_every_n_steps == 0:
        metrics = {"loss": loss, "lr": lr, "tokens_per_second": meter.tokens_per_second}
        metrics["epoch"] = pos.epoch
        if run.grad_norm is not None:  # as torchtune logs it where clip_grad_norm is set
            metrics["grad_norm"] = run.grad_norm
        if cfg.log_peak_memory_stats:
            metrics.update(training.memory_stats(run.strategy.device))
        run.logger.log_dict(metrics, step=step)
        meter.reset()
    val_every = cfg.run_val_every_n_steps
    if run.val_loader is not None and val_every and step % val_every == 0:
        run.logger.log_dict({"val_loss": _validate(run)}, step=step)
    save_every = cfg.save_every_n_steps
    if save_every and step % save_every == 0 and pos.step_in_epoch < run.steps_per_epoch:
        _save_state(run)


def _run_epoch(run: _Run, epoch: int) -> float:
    """Train the remaining steps of ``epoch``; returns the last step's loss."""
    cfg, pos = run.cfg, run.position
    accumulation = cfg.gradient_accumulation_steps
    run.sampler.set_position(epoch, pos.step_in_epoch * accumulation * int(cfg.batch_size))
    batches = iter(run.loader)
    meter = training.ThroughputMeter()
    loss = math.nan
    # Closed on errors too, so an error message starts on its own line.
    with progress_bar(
        total=run.steps_per_epoch, initial=pos.step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not run.strategy.is_main, dynamic_ncols=True, leave=False,
    ) as bar:  # fmt: skip
        while pos.step_in_epoch < run.steps_per_epoch:
            started = time.perf_counter()
            loss, num_tokens = _train_step(run, _micro_batches(batches, accumulation))
            _report_warmup(run, time.perf_counter() - started)
            pos.step_in_epoch += 1
            pos.global_step += 1
            meter.update(num_tokens)
            lr = run.optimizer.param_groups[0]["lr"]
            bar.update(1)
            bar.set_postfix_str(training.format_metrics(
                {"loss": loss, "lr": lr, "tokens_per_second": meter.tokens_per_second}
            ))  # fmt: skip
            _after_step(run, loss, lr, meter)
            if run.strategy.all_sum(torch.tensor(int(run.stop.requested))).item():
                _stop(run)
    return loss


def _stop(run: _Run) -> None:
    """Ctrl-C: save the step just completed (as save_every_n_steps would), then say how
    to resume."""
    pos = run.position
    if pos.step_in_epoch < run.steps_per_epoch:
        _save_state(run)
        where = f"after step {pos.global_step} (epoch {pos.epoch + 1}, step {pos.step_in_epoch})"
    else:  # the epoch is complete: its checkpoint and state are written next
        pos.step_in_epoch, pos.epoch = 0, pos.epoch + 1
        _save_epoch(run, pos.epoch - 1)
        _save_state(run)
        where = f"after epoch {pos.epoch}"
    raise Interrupted(
        f"interrupted {where}; its state is saved in {run.checkpointer.training_state_path().parent}. "
        f"Resume with: {resume_command()}"
    )


def _train(run: _Run) -> None:
    pos = run.position
    run.model.train()
    for epoch in range(pos.epoch, int(run.cfg.epochs)):
        pos.epoch = epoch
        loss = _run_epoch(run, epoch)
        if run.val_loader is not None and run.cfg.run_val_every_n_steps is None:
            run.logger.log_dict({"val_loss": _validate(run)}, step=pos.global_step)
        pos.step_in_epoch, pos.epoch = 0, epoch + 1
        path = _save_epoch(run, epoch)
        _save_state(run)
        if run.strategy.is_main:
            print(
                f"Saved epoch {epoch} to {path} (epoch {epoch + 1}/{run.cfg.epochs}, loss {loss:.4f})"
            )
            for line in _outputs.summary(run):
                print(line)


def run(cfg: DictConfig) -> None:
    """Fine-tune as ``cfg`` says (see the module docstring, the shipped configs and
    ``tunesmith run finetune --help``); keys it leaves out take ``FINETUNE_SCHEMA``'s
    defaults."""
    cfg = FINETUNE_SCHEMA.with_defaults(cfg)  # a copy; `tunesmith run` has filled them already
    with _run_directory(cfg):
        _run(cfg)


@contextlib.contextmanager
def _run_directory(cfg: DictConfig) -> Iterator[None]:
    """Lock ``output_dir`` (rank 0: one directory per run), sweep killed writes'
    temporaries, and refuse to write over another run's checkpoints."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with RunDirectory(cfg.checkpointer.get("output_dir") or cfg.output_dir) as directory:
        _check_previous_run(directory.path, cfg)
        yield


def _check_previous_run(path: Path, cfg: DictConfig) -> None:
    previous = sorted(p.name for p in path.glob("epoch_*")) + (
        ["recipe_state"] if (path / "recipe_state").exists() else []
    )
    if not previous or cfg.resume_from_checkpoint:
        return
    if not cfg.overwrite_output_dir:
        # torchtune's metric loggers write torchtune_config.yaml; its runs do not resume here.
        torchtune = (path / "torchtune_config.yaml").is_file()
        raise ConfigError(
            f"output_dir {path} already holds a {'torchtune ' if torchtune else ''}run "
            f"({', '.join(previous[:4])}): "
            + ("" if torchtune else "resume it with resume_from_checkpoint=true, ")
            + "choose another output_dir, or replace it with overwrite_output_dir=true"
        )
    for name in previous:  # the user asked to replace that run
        shutil.rmtree(path / name)


def _dtype_reason(cfg: DictConfig, device: torch.device) -> str:
    if str(cfg.dtype).strip().lower() != "auto":
        return ""
    return f" (dtype auto: {training.auto_dtype(device)[1]})"


def _run(cfg: DictConfig) -> None:
    run_state = _setup(cfg)
    if cfg.resume_from_checkpoint:
        # Before anything is logged: a state that cannot be resumed leaves output_dir as it was.
        _restore_state(run_state)
    trainable, total = training.count_parameters(run_state.model)
    if run_state.strategy.is_main:
        print(
            f"Training {trainable:,} of {total:,} parameters "
            f"({100 * trainable / max(total, 1):.2f}%) on {run_state.strategy.device} "
            f"in {str(run_state.dtype).removeprefix('torch.')}"
            + _dtype_reason(cfg, run_state.strategy.device)
            + (", padding-free batches" if run_state.padding_free else "")
        )
        run_state.logger.log_config(OmegaConf.to_container(cfg, resolve=True))
        print(_outputs.describe_logs(run_state))
    try:
        with training.StopOnInterrupt() as run_state.stop:
            _train(run_state)
    finally:
        run_state.logger.close()
        run_state.strategy.close()
