"""Errors a user can cause. The CLI prints their message on one line, no traceback.

Every message names the cause and the fix: "no config.json in /x: point
checkpointer.checkpoint_dir at a Hugging Face model directory".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "NotFoundError",
    "PluginError",
    "TunesmithError",
    "did_you_mean",
]


class TunesmithError(Exception):
    """Base of all user-facing errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class NotFoundError(TunesmithError, LookupError):
    """A recipe, config or component name that nothing registered."""

    exit_code = 2


class ConfigError(TunesmithError):
    """A config that cannot be loaded, overridden, validated or instantiated."""


class PluginError(TunesmithError):
    """A plugin that failed to load, or two plugins registering the same name."""


class CheckpointError(TunesmithError):
    """A checkpoint that is missing, malformed or does not match the model."""


class DataError(TunesmithError):
    """A dataset file, row or column that cannot be used."""


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """A ``" — did you mean 'x'?"`` suffix for the closest choices, or ``""``."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " — did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
