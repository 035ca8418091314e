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
    "Interrupted",
    "NotFoundError",
    "PluginError",
    "TunesmithError",
    "describe_error",
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


class Interrupted(TunesmithError):
    """A run stopped by Ctrl-C after saving what it had done; the message says how to resume."""

    exit_code = 130


class DataError(TunesmithError):
    """A dataset file, row or column that cannot be used."""


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """A ``" — did you mean 'x'?"`` suffix for the closest choices, or ``""``."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " — did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def _os_error(exc: OSError) -> str:
    import errno

    where = exc.filename or "a file"
    fixes = {
        errno.ENOSPC: f"no space left on the device while writing {where}: free some space "
        "or point the output at another disk",
        errno.EDQUOT: f"disk quota exceeded while writing {where}: free some space or point "
        "the output at another disk",
        errno.EACCES: f"permission denied: {where}: choose a path you can write to (or fix "
        "its permissions)",
        errno.EPERM: f"operation not permitted on {where}: choose another path",
        errno.EROFS: f"{where} is on a read-only filesystem: choose a writable path",
        errno.ENOTDIR: f"{where}: part of this path is a file, not a directory: choose "
        "another path",
        errno.EISDIR: f"{where} is a directory, where a file was expected: point at the file",
        errno.ENOENT: f"no such file or directory: {where}: check the path",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n) or lower num_workers",
    }
    return fixes.get(exc.errno, f"{exc.strerror or exc}: {where}: check the path")


def describe_error(exc: BaseException) -> tuple[str, int]:
    """One line naming the cause and the fix for any error that reaches the CLI, and the
    exit code: a :class:`TunesmithError`'s own message; OS errors (disk full, permission,
    not a directory) by their errno; out of memory with what to lower; anything else as
    an unexpected error with its type, pointing at ``--debug``."""
    if isinstance(exc, TunesmithError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        return _os_error(exc), 1
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if "No space left on device" in str(exc):  # from a library that wraps the OSError
        import errno

        return _os_error(OSError(errno.ENOSPC, "No space left on device")), 1
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (
            "out of memory: lower batch_size or tokenizer.max_seq_len, or set "
            "enable_activation_checkpointing=true (or use LoRA/QLoRA)",
            1,
        )
    return (
        f"unexpected {type(exc).__name__}: {first} — run again with --debug for the "
        "traceback, and report it if your input looks right",
        1,
    )
