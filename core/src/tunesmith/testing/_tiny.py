"""Tiny random checkpoints of any installed family, in Hugging Face format, written
without transformers (through the family's own checkpoint adapter)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["random_state_dict", "write_tiny_checkpoint"]


def random_state_dict(model: torch.nn.Module, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random values for every tensor of ``model``'s state dict (float32).

    Projections and embeddings get std 0.02; norm weights ``1 + 0.1 * noise`` (not all
    ones, so a norm applied in the wrong place or with the wrong offset shows up in
    parity tests).
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in sorted(model.state_dict().items()):
        noise = torch.randn(tensor.shape, generator=generator)
        out[name] = (1.0 + 0.1 * noise) if "norm" in name else 0.02 * noise
    return out


def write_tiny_checkpoint(
    directory: str | Path,
    config: Mapping[str, Any],
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    registry: Any = None,
) -> Path:
    """Write a random checkpoint of the architecture ``config`` describes, in HF format:
    ``model.safetensors``, ``config.json``, ``generation_config.json``.

    The family is found by ``config["model_type"]`` among the installed checkpoint
    adapters (``adapter.tiny_config()`` gives a suitable tiny config); the weights
    go through the adapter's native -> HF conversion, fused modules included.

    Args:
        directory: Created if missing.
        config: A ``config.json`` dict.
        seed: Seed of the weights (see :func:`random_state_dict`).
        dtype: Dtype of the stored tensors (and of ``config.json``'s ``dtype``).
        registry: Default: :func:`tunesmith.get_registry`.

    Returns:
        ``directory`` as a ``Path``.
    """
    from safetensors.torch import save_file

    from tunesmith.checkpoint import find_adapter

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {**config, "dtype": str(dtype).removeprefix("torch.")}
    adapter = find_adapter(str(config["model_type"]), registry=registry)
    with torch.device("meta"):
        model = adapter.build_from_hf_config(config)
    native = {k: v.to(dtype).contiguous() for k, v in random_state_dict(model, seed=seed).items()}
    tensors = adapter.native_to_hf_state_dict(native, config, source="tiny model")
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return directory
