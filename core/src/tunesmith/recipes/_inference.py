"""Loading a model for an inference-style recipe (generate, evaluate, quantize) from
its config's ``checkpointer``, ``adapter``, ``tokenizer``, ``device`` and ``dtype``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

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
    block = OmegaConf.to_container(cfg.checkpointer, resolve=True)
    model, tokenizer = load_pretrained(
        checkpoint_dir,
        dtype=dtype,
        device=device,
        adapter=cfg.get("adapter"),
        checkpoint_files=block.get("checkpoint_files"),
        model_type=block.get("model_type"),
    )
    node = cfg.get("tokenizer")
    if node is not None:  # replaces the checkpoint's own tokenizer (auto: the same kind)
        from tunesmith.checkpoint import Checkpointer
        from tunesmith.tokenizers import with_prompt_template

        context = {"checkpointer": Checkpointer(checkpoint_dir)}
        tokenizer = instantiate(node, key="tokenizer", context=context)
        tokenizer = with_prompt_template(tokenizer, checkpoint_dir)
    template = cfg.get("prompt_template")
    if template is not None:  # torchtune's prompt_template: a format for every user turn
        from tunesmith.data import prompt_template
        from tunesmith.tokenizers import PromptTemplatedTokenizer

        tokenizer = PromptTemplatedTokenizer(tokenizer, prompt_template(
            OmegaConf.to_container(template) if isinstance(template, DictConfig) else template
        ))  # fmt: skip
    return model, tokenizer, device
