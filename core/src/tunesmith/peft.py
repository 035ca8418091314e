"""Finding and loading PEFT adapter directories, whichever plugin's method wrote them.

An adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``) says
what it is: its ``peft_type`` and fields such as ``use_dora``. The core picks the
registered :class:`tunesmith.PeftMethod` that declares that ``peft_type`` and
matches the most of its ``adapter_match`` fields, builds a transform for it with
``from_adapter_config`` and lets it load the files. No plugin is looked up by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith._components import PeftMethod
from tunesmith.errors import CheckpointError, TunesmithError

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "find_adapter_dir",
    "peft_method_for",
    "read_adapter_config",
    "transform_for_adapter",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
#: What torchtune's checkpointers write beside the PEFT files: its own state dict.
TORCHTUNE_ADAPTER_NAME = "adapter_model.pt"


def find_adapter_dir(directory: str | os.PathLike) -> Path:
    """The PEFT adapter directory at ``directory``: itself, or the ``adapter/`` folder a
    PEFT run writes inside ``output_dir/epoch_N`` (beside the merged weights, so that
    transformers does not apply the adapter a second time to merged weights). A file
    in an adapter directory (``.../adapter_model.safetensors``, torchtune's
    ``.../adapter_model.pt``) stands for that directory.

    Raises:
        CheckpointError: neither holds an ``adapter_config.json``; torchtune's
            ``adapter_model.pt`` alone is named as such.
    """
    directory = Path(directory).expanduser()
    if directory.is_file() and (directory.parent / ADAPTER_CONFIG_NAME).is_file():
        return directory.parent
    for candidate in (directory, directory / "adapter"):
        if (candidate / ADAPTER_CONFIG_NAME).is_file():
            return candidate
    torchtune_pt = directory if directory.is_file() else directory / TORCHTUNE_ADAPTER_NAME
    if torchtune_pt.name == TORCHTUNE_ADAPTER_NAME and torchtune_pt.is_file():
        epoch = torchtune_pt.parent
        if (epoch / "config.json").is_file() and any(epoch.glob("*.safetensors")):
            # torchtune writes no PEFT files for some model types, only the merged
            # weights and its own adapter file.
            fix = (
                f"torchtune wrote no PEFT adapter beside it; {epoch} holds the weights with "
                f"the adapter merged in: load that directory as the checkpoint "
                f"(checkpoint_dir={epoch}) with no adapter"
            )
        else:
            fix = (
                "no adapter_config.json is beside it: point adapter= at the epoch_N directory "
                "torchtune wrote it to, whose adapter_config.json + adapter_model.safetensors "
                "are PEFT's format"
            )
        raise CheckpointError(
            f"{torchtune_pt} is torchtune's own adapter file (torchtune's key names, no "
            f"lora_alpha), which tunesmith does not read, and {fix}"
        )
    raise CheckpointError(
        f"no {ADAPTER_CONFIG_NAME} in {directory} or {directory / 'adapter'}: expected a PEFT "
        "adapter directory (adapter_config.json + adapter_model.safetensors), e.g. "
        "output_dir/epoch_N of a LoRA run"
    )


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapter directory (or of its ``adapter/``).

    Raises:
        CheckpointError: no such file, or it is not a JSON object.
    """
    path = find_adapter_dir(directory) / ADAPTER_CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}): re-save the adapter") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object: re-save the adapter")
    return config


def _score(method: PeftMethod, config: Mapping[str, Any]) -> int | None:
    """How many ``adapter_match`` fields agree, or ``None`` if one disagrees."""
    for key, value in method.adapter_match.items():
        actual = config.get(key)
        if actual != value and not (actual is None and value in (False, None)):
            return None
    return len(method.adapter_match)


def peft_method_for(
    config: Mapping[str, Any], *, source: str = "the adapter", registry: Any = None
) -> PeftMethod:
    """The registered PEFT method that loads adapters described by ``config``.

    Args:
        config: A parsed ``adapter_config.json``.
        source: What ``config`` belongs to, for messages (``"the adapter in /x"``).
        registry: Default: :func:`tunesmith.get_registry`.

    Raises:
        TunesmithError: no installed method declares the adapter's ``peft_type`` (or
            none matches its fields); the message says what to install.
        CheckpointError: two methods match equally well.
    """
    if registry is None:
        from tunesmith.registry import get_registry

        registry = get_registry()
    peft_type = config.get("peft_type")
    if not peft_type:
        raise CheckpointError(
            f"the adapter_config.json of {source} names no peft_type: re-save the adapter "
            "with PEFT's save_pretrained or a tunesmith run"
        )
    candidates = [
        m for m in registry.values("peft_methods") if m.peft_type and m.peft_type == peft_type
    ]
    scored = [(s, m) for m in candidates if (s := _score(m, config)) is not None]
    if not scored:
        known = sorted({m.peft_type for m in registry.values("peft_methods") if m.peft_type})
        what = f"peft_type {peft_type!r}" + (" with these settings" if candidates else "")
        raise TunesmithError(
            f"no installed PEFT method loads {source}, of {what} (installed: "
            f"{', '.join(known) or 'none'}): install the plugin that wrote it, e.g. "
            "pip install tunesmith-lora for LoRA and DoRA adapters"
        )
    best = max(s for s, _ in scored)
    winners = [m for s, m in scored if s == best]
    if len(winners) > 1:
        sides = " and ".join(f"'{m.name}' ({m.origin.distribution})" for m in winners)
        raise CheckpointError(
            f"both {sides} claim {source} ({peft_type}): uninstall one, or make "
            "their adapter_match fields tell the adapters apart"
        )
    return winners[0]


def transform_for_adapter(directory: str | os.PathLike, *, registry: Any = None) -> Any:
    """``(adapter_dir, transform)``: the adapter directory and a
    :class:`tunesmith.protocols.PeftTransform` that loads it
    (``transform.load_adapter(model, adapter_dir, adapter=checkpoint_adapter)``).

    Raises:
        CheckpointError: no adapter there.
        TunesmithError: no installed method loads it.
    """
    adapter_dir = find_adapter_dir(directory)
    config = read_adapter_config(adapter_dir)
    method = peft_method_for(config, source=f"the adapter in {adapter_dir}", registry=registry)
    if method.from_adapter_config is None:
        raise TunesmithError(
            f"PEFT method '{method.name}' ({method.origin.distribution}) declares peft_type "
            f"{method.peft_type} but no from_adapter_config: it cannot load adapters; "
            "report this to its authors"
        )
    return adapter_dir, method.from_adapter_config(config)
