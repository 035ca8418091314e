"""Loading a model for an inference-style recipe (generate, evaluate, quantize) from
its config's ``checkpointer``, ``adapter``, ``tokenizer``, ``device`` and ``dtype``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from tunesmith.errors import ConfigError

__all__ = ["checkpoint_dir_of", "load_for_inference"]


def checkpoint_dir_of(cfg: DictConfig) -> str:
    """``checkpointer.checkpoint_dir``, or a ConfigError saying how to set it."""
    checkpoint_dir = (cfg.get("checkpointer") or {}).get("checkpoint_dir")
    if not checkpoint_dir:
        raise ConfigError(
            "checkpointer.checkpoint_dir is not set: add checkpointer.checkpoint_dir=<model directory>"
        )
    return str(checkpoint_dir)


def load_for_inference(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, device)``: the checkpoint (plus ``adapter``) in eval mode on
    ``device`` in ``dtype``; a ``tokenizer`` block other than ``auto`` replaces the
    checkpoint's own tokenizer."""
    from tunesmith import load_pretrained, training
    from tunesmith.config import instantiate

    checkpoint_dir = checkpoint_dir_of(cfg)
    device = training.resolve_device(cfg.get("device", "auto"))
    dtype = training.resolve_dtype(cfg.get("dtype", "auto"), device, training=False)
    model, tokenizer = load_pretrained(
        checkpoint_dir, dtype=dtype, device=device, adapter=cfg.get("adapter")
    )
    node = cfg.get("tokenizer")
    if node is not None:  # replaces the checkpoint's own tokenizer (auto: the same kind)
        from tunesmith.checkpoint import Checkpointer

        context = {"checkpointer": Checkpointer(checkpoint_dir)}
        tokenizer = instantiate(node, key="tokenizer", context=context)
    return model, tokenizer, device
