"""A run's ``output_dir``: checked, locked against a second run, swept of temporaries.

A killed write leaves a hidden sibling behind (``.epoch_0.tmp-1a2b3c4d``,
``.recipe_state.pt.tmp-...``: see :mod:`tunesmith.checkpoint`), possibly a whole
checkpoint. Once this process holds the directory's lock, no other run can be
writing there, so the next run removes them. The lock is an ``flock`` on
``output_dir/.tunesmith.lock``: the kernel releases it when its holder dies, so a
killed run never leaves the directory locked.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

from tunesmith.errors import ConfigError

__all__ = ["LOCK_NAME", "RunDirectory", "resume_command", "set_invocation"]

_INVOCATION: list[str] | None = None


def set_invocation(argv: list[str]) -> None:
    """Record the command that started this run (``tunesmith run ...``), for
    :func:`resume_command`. ``tunesmith run`` calls it; torchrun's children read the
    launching command from ``TUNESMITH_COMMAND``."""
    global _INVOCATION
    _INVOCATION = list(argv)


def resume_command() -> str:
    """The command that started this run, with ``resume_from_checkpoint=true``."""
    import shlex

    argv = _INVOCATION
    if argv is None and os.environ.get("TUNESMITH_COMMAND"):
        argv = shlex.split(os.environ["TUNESMITH_COMMAND"])
    if argv is None:
        argv = ["tunesmith", *sys.argv[1:]]
    kept = [a for a in argv if not a.lstrip("+").startswith("resume_from_checkpoint=")]
    return shlex.join([*kept, "resume_from_checkpoint=true"])


LOCK_NAME = ".tunesmith.lock"
# What atomic_write / atomic_directory leave behind when a process dies mid-write:
# ".NAME.tmp-XXXXXXXX" (a partial new output) or ".NAME.old-XXXXXXXX" (the previous
# output, renamed aside for the instant of replacing it).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")


class RunDirectory:
    """Holds ``output_dir`` for one run (use as a context manager).

    Args:
        path: The run's ``output_dir``.
        sweep: Where killed writes' temporaries may lie (default: ``path`` and
            ``path/recipe_state``).

    Raises:
        ConfigError: ``path`` is a file, cannot be created, or another live run holds it
            (the message names that process).
    """

    def __init__(self, path: str | os.PathLike, *, sweep: tuple[str, ...] = ("", "recipe_state")):
        self.path = Path(path).expanduser()
        self._sweep = sweep
        self._fd: int | None = None

    def __enter__(self) -> RunDirectory:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output_dir {self.path} is a file: choose a directory path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output_dir {self.path} ({exc.strerror}): choose a writable path"
            ) from None
        self._lock()
        self.removed = self._remove_temporaries()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            import fcntl

            # Unlinked while still held: a run that opened it meanwhile sees the change
            # after locking (see _lock) and starts over on a fresh file.
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _lock(self) -> None:
        import fcntl

        lock = self.path / LOCK_NAME
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another run"
                os.close(fd)
                raise ConfigError(
                    f"output_dir {self.path} is in use by another run ({holder}): wait for it "
                    "to finish, or choose another output_dir"
                ) from None
            try:
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break  # still the lock file, not one a finished run just removed
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        command = " ".join(sys.argv[:6])[:200]
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {command}\n".encode())
        self._fd = fd

    def _remove_temporaries(self) -> list[Path]:
        removed = []
        for sub in self._sweep:
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                match = _TEMPORARY.match(entry.name)
                if match is None:
                    continue
                target = folder / match["name"]
                if match["kind"] == "old" and not target.exists():
                    os.replace(entry, target)  # killed mid-replace: the previous output is back
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
        return removed
