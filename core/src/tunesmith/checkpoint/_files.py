"""Writing files and directories so that a crash never leaves a half-written one."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WEIGHT_SUFFIXES", "atomic_directory", "atomic_write", "copy_support_files"]

#: Files that hold tensors; everything else in a checkpoint directory is a "support file".
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pth",
    ".pt",
    ".ckpt",
    ".gguf",
    ".h5",
    ".msgpack",
)


def _sibling(path: Path, tag: str) -> Path:
    # Hidden and beside the target, so it is on the same filesystem (os.replace is
    # atomic there) and never mistaken for a finished output.
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def check_new_output(
    path: str | os.PathLike, *, overwrite: bool = False, sources: tuple[Path, ...] = ()
) -> Path:
    """Refuse to write a directory over what the user has there, unless ``overwrite``.

    Args:
        path: The directory a command is about to create (atomically).
        overwrite: Replace an existing non-empty directory (``--force``).
        sources: Directories the command reads, which ``path`` must neither be nor
            hold (replacing ``path`` would delete them).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        CheckpointError: ``path`` is a file, one of ``sources`` or a directory above
            one, or a non-empty directory and ``overwrite`` is false.
    """
    from tunesmith.errors import CheckpointError

    path = Path(path).expanduser()
    for source in sources:
        source = Path(source).expanduser().resolve()
        if path.resolve() == source:
            raise CheckpointError(f"{path} is also the input: choose a new output directory")
        if path.resolve() in source.parents:
            raise CheckpointError(
                f"{path} holds the input {source}, which replacing it would delete: choose a "
                "new output directory"
            )
    if path.is_file():
        raise CheckpointError(f"{path} is a file: choose a directory path for the output")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CheckpointError(
            f"{path} already exists and is not empty: choose a new directory, or pass "
            "--force to replace it"
        )
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` by calling ``write(temp_path)`` and renaming the result onto it.

    Args:
        path: The file to create or replace.
        write: Writes the complete file at the temporary path it is given (same directory).

    Returns:
        ``path``.
    """
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = os.fspath(path)  # a failed write() names no file: say which
        raise
    return path


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it onto ``path`` when done.

    The temporary directory is a hidden sibling of ``path`` (same filesystem, so the
    rename is atomic). If the ``with`` block raises, it is deleted and ``path`` is
    left as it was. An existing ``path`` is replaced: it is renamed aside, the new
    directory renamed in, then the old one deleted.

    Args:
        path: The directory to create or replace.

    Yields:
        The temporary directory to write into.

    Example:
        >>> with atomic_directory(out / "epoch_0") as tmp:
        ...     save_hf_state_dict(state_dict, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not path.exists():
        try:
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    old = _sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # put the previous output back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


#: A PEFT adapter's config travels with its weights, never on its own: transformers
#: would read a lone adapter_config.json as "this directory is an adapter".
_ADAPTER_FILES = ("adapter_config.json",)


def _is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json") or name in _ADAPTER_FILES


def copy_support_files(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    exclude: Iterable[str | os.PathLike] = (),
    skip: Iterable[str] = (),
) -> list[Path]:
    """Copy every file of a checkpoint directory that is not a weight file.

    That is ``config.json``, ``generation_config.json``, the tokenizer files
    (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``,
    ``tokenizer.model``, ``original/tokenizer.model``), chat templates, README,
    LICENSE and so on, keeping sub-directories. Skipped: weights (``*.safetensors``,
    ``*.bin``, ``*.pth``, ``*.pt``, ...), their ``*.index.json`` files, a PEFT
    ``adapter_config.json`` and hidden files and directories (``.cache``, ``.git``).

    Args:
        src_dir: The checkpoint directory.
        dst_dir: Where to copy to (created if needed).
        exclude: Directories not to descend into (an output directory that lies inside
            ``src_dir``).
        skip: Relative paths (``"params.json"``) not to copy.

    Returns:
        The copied files, relative to ``dst_dir``.
    """
    src = Path(src_dir)
    dst = Path(dst_dir)
    excluded = {Path(p).resolve() for p in exclude} | {dst.resolve()}
    skipped = {Path(s).as_posix() for s in skip}
    copied: list[Path] = []
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (root_path / d).resolve() not in excluded
        )
        for name in sorted(files):
            if name.startswith(".") or _is_weight_file(name):
                continue
            rel = (root_path / name).relative_to(src)
            if rel.as_posix() in skipped:
                continue
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root_path / name, target)  # follows HF-cache symlinks
            copied.append(rel)
    return copied
