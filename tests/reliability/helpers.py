"""Checks every corpus case shares: a failure is an exit code, one line (or one line per
problem for validation), no traceback, and nothing written or removed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from click.testing import CliRunner


def invoke(*args: str, env: dict[str, str] | None = None):
    """``tunesmith ARGS...`` in this process, through click's runner."""
    from tunesmith.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], env=env, prog_name="tunesmith")


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (hidden ones too) with a hash of its bytes."""
    files: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory) / name
                if path.is_symlink() or not path.is_file():
                    files[str(path)] = "link"
                    continue
                files[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return files


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), {
        "added": added,
        "removed": removed,
        "changed": changed,
    }


def error_lines(result) -> list[str]:
    """The error a failed command printed, checked: a non-zero exit through the CLI's
    handler, no traceback, one ``error:`` line on its own line (a validation error: one
    header line and one line per problem). Returns the error's lines."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    err = result.stderr
    assert err.count("error:") == 1, err
    start = err.index("error:")
    # After a newline, or after the carriage return of a progress bar that erased itself.
    assert start == 0 or err[start - 1] in "\n\r", f"not on a line of its own: {err!r}"
    lines = err[start:].rstrip("\n").split("\n")
    assert "\r" not in "\n".join(lines), f"a progress bar is mixed into the message: {err!r}"
    if len(lines) > 1:
        header = lines[0]
        assert header.startswith("error: config has ") and header.endswith(":"), lines
        count = int(header.split()[3])
        assert count == len(lines) - 1 and all(line.startswith("  - ") for line in lines[1:]), lines
    return lines


def one_line(result) -> str:
    [line] = error_lines(result)
    return line


def contains_all(text: str, fragments: Iterable[str]) -> None:
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
