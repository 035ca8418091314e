"""The ``auto`` model, registered like any plugin's: the architecture a checkpoint's
``config.json`` (or ``params.json``) describes, built through its family's adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunesmith import Model, hookimpl


def auto_model(*, checkpointer: Any, **overrides: Any) -> Any:
    """``model: {_component_: auto}``: the checkpoint's own architecture.

    Args:
        checkpointer: The run's :class:`tunesmith.checkpoint.Checkpointer` (recipes pass it).
        **overrides: Builder arguments replacing the checkpoint's (``max_seq_len: 4096``).
    """
    return checkpointer.build_model(**overrides)


@hookimpl
def register_models(register: Callable[[Model], None]) -> None:
    register(
        Model(
            name="auto",
            builder=auto_model,
            family=None,
            description="The architecture checkpointer.checkpoint_dir describes (any "
            "installed family)",
        )
    )
