"""Download models from, and upload fine-tuned ones to, the Hugging Face Hub.

Thin wrappers over ``huggingface_hub`` with defaults suited to fine-tuning, whose
errors (gated or missing repo, bad token, no network, offline mode) become one-line
:class:`tunesmith.TunesmithError` messages that say what to do.

``HF_ENDPOINT`` is read at each call, not once at import as ``huggingface_hub``
does, so a mirror (or a test server) can be chosen at any time. Tokens come from
``token=``, else ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import CheckpointError, TunesmithError

__all__ = [
    "DUPLICATE_WEIGHT_PATTERNS",
    "SOURCE_FILE",
    "UPLOAD_IGNORE_PATTERNS",
    "default_ignore_patterns",
    "default_output_dir",
    "download",
    "downloaded_files",
    "upload",
    "upload_warnings",
]

#: Other copies of the weights, skipped by default when a repo has ``*.safetensors``:
#: PyTorch pickles (including Meta's ``original/consolidated.*.pth``), TF and Flax.
DUPLICATE_WEIGHT_PATTERNS = ("*.bin", "*.pth", "*.pt", "*.ckpt", "*.h5", "*.msgpack")

#: What :func:`upload` leaves behind: training state and metric logs of a run, and
#: :func:`download`'s record of a local copy.
UPLOAD_IGNORE_PATTERNS = (
    "recipe_state/*",
    "*/recipe_state/*",
    "logs/*",
    "*/logs/*",
    "tunesmith_source.json",
    ".tunesmith.lock",
)

#: ``tunesmith download``'s record of a directory's source: repo id, revision, files.
SOURCE_FILE = "tunesmith_source.json"

_LOGIN = "pass --hf-token (token= in Python) or run `hf auth login`"


def default_output_dir(repo_id: str) -> Path:
    """Where :func:`download` puts ``repo_id`` by default: ``/tmp/<repo name>``, as torchtune.

    The shipped configs' ``checkpointer.checkpoint_dir`` use the same paths.
    """
    return Path(tempfile.gettempdir()) / repo_id.rstrip("/").split("/")[-1]


def default_ignore_patterns(filenames: Sequence[str]) -> list[str]:
    """The files :func:`download` skips by default, given a repo's file names.

    One rule: when the repo has ``*.safetensors`` weights, the other copies of the
    weights (:data:`DUPLICATE_WEIGHT_PATTERNS`, e.g. ``pytorch_model.bin`` and Meta's
    ``original/consolidated.00.pth``) are not downloaded. Everything else is, so
    ``original/tokenizer.model`` and ``original/params.json`` are kept, and a repo
    with only ``.bin`` or ``.pth`` weights downloads whole.

    Args:
        filenames: Paths of the repo's files.

    Returns:
        Glob patterns for ``huggingface_hub``'s ``ignore_patterns`` (maybe empty).
    """
    if any(name.endswith(".safetensors") for name in filenames):
        return list(DUPLICATE_WEIGHT_PATTERNS)
    return []


def _endpoint() -> str | None:
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return endpoint or None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's connection errors (httpx2 in huggingface_hub 2, httpx in 1)."""
    errors: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _hub_error(
    exc: BaseException, repo_id: str, action: str, revision: str | None
) -> TunesmithError:
    """A one-line error naming what went wrong with ``repo_id`` and the fix."""
    from huggingface_hub import errors as hf

    host = _endpoint() or "https://huggingface.co"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.GatedRepoError):
        if status == 403:
            return TunesmithError(
                f"your token has no access to gated model {repo_id} yet: accept its license at "
                f"{host}/{repo_id} (approval can take a while), or pass the token of an account "
                "that was granted access"
            )
        return TunesmithError(
            f"{repo_id} is a gated model: accept its license at {host}/{repo_id}, then {_LOGIN}"
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return TunesmithError(
            f"{repo_id} has no revision {revision!r}: pass an existing branch, tag or commit"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return TunesmithError(
            f"no model repo {repo_id} on {host}: check the id (owner/name, as in the repo's URL); "
            f"if it is private, {_LOGIN}"
        )
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return TunesmithError(
            f"cannot {action} {repo_id}: HF_HUB_OFFLINE is set; unset it (or run with HF_HUB_OFFLINE=0)"
        )
    if isinstance(exc, hf.HfHubHTTPError) and status in (401, 403):
        if action == "download":
            return TunesmithError(
                f"the Hub refused the token for {repo_id} ({status}): it is invalid or expired; "
                f"{_LOGIN} with a valid one"
            )
        return TunesmithError(
            f"the Hub refused to {action} {repo_id} ({status}): the token is missing, invalid or "
            f"lacks write access; {_LOGIN} with a write token"
        )
    if isinstance(exc, hf.HfHubHTTPError):
        reason = str(exc).strip().splitlines()[0]
        return TunesmithError(f"cannot {action} {repo_id}: {reason}; try again later")
    if isinstance(exc, hf.HFValidationError):
        return TunesmithError(
            f"{repo_id!r} is not a repo id: use owner/name, e.g. meta-llama/Llama-3.2-1B"
        )
    if isinstance(
        exc, (*_transport_errors(), ConnectionError, TimeoutError, hf.LocalEntryNotFoundError)
    ):
        # No connection, a timeout, or the connection dropped during the transfer.
        return TunesmithError(
            f"cannot reach {host} to {action} {repo_id} ({type(exc).__name__}): check the network "
            "connection and proxy (HTTPS_PROXY), or HF_ENDPOINT; running again resumes"
        )
    return TunesmithError(f"cannot {action} {repo_id}: {exc}")


def _access_refused(exc: BaseException) -> bool:
    """The Hub refused the repo, revision or token: no file of it can arrive."""
    from huggingface_hub import errors as hf

    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(exc, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError)) or (
        isinstance(exc, hf.HfHubHTTPError) and status in (401, 403)
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors as hf

    return (hf.HfHubHTTPError, hf.HFValidationError, OSError, *_transport_errors())


def download(
    repo_id: str,
    output_dir: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    ignore_patterns: Sequence[str] | None = None,
    allow_patterns: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Download a model repo from the Hugging Face Hub into a plain directory.

    The directory is ready for ``checkpointer.checkpoint_dir`` and
    :func:`tunesmith.load_pretrained`. Running again skips the files already there
    and resumes interrupted ones.

    Args:
        repo_id: ``owner/name``, e.g. ``"meta-llama/Llama-3.2-1B-Instruct"``.
        output_dir: Where the files go; default :func:`default_output_dir`
            (``/tmp/<repo name>``).
        revision: Branch, tag or commit; default the repo's ``main``.
        token: A Hub token, for gated and private repos; default ``HF_TOKEN`` or the
            token saved by ``hf auth login``.
        ignore_patterns: Globs of files to skip; default
            :func:`default_ignore_patterns` (duplicate weight formats). ``[]``
            downloads every file.
        allow_patterns: If given, only files matching one of these globs.
        overwrite: Replace files in ``output_dir`` that an earlier download did not
            write (or that were edited since); without it they are refused (``--force``).

    Returns:
        The directory the files are in.

    Raises:
        TunesmithError: the repo is gated, missing or private, the revision does not
            exist, the token is refused, nothing matches the patterns, or the Hub
            cannot be reached (the message says which, and the fix).
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.utils import filter_repo_objects

    target = Path(output_dir) if output_dir is not None else default_output_dir(repo_id)
    target = target.expanduser()
    existed = target.exists()
    if existed and not target.is_dir():
        raise TunesmithError(f"{target} is a file: choose another --output-dir")
    try:
        # Resolving the revision here first (one request snapshot_download would make
        # anyway) gives the file list for the default patterns, and surfaces a missing
        # repo as an error even when the target already has files (snapshot_download
        # would then return them with only a logged warning).
        api = HfApi(endpoint=_endpoint(), token=token)
        info = api.model_info(repo_id, revision=revision)
        files = (
            [s.rfilename for s in info.siblings]
            if info.siblings is not None
            else api.list_repo_files(repo_id, revision=info.sha)
        )
        ignore = (
            default_ignore_patterns(files) if ignore_patterns is None else list(ignore_patterns)
        )
        allow = list(allow_patterns) if allow_patterns is not None else None
        wanted = list(filter_repo_objects(files, allow_patterns=allow, ignore_patterns=ignore))
        if files and not wanted:
            raise TunesmithError(
                f"nothing to download from {repo_id}: all {len(files)} files match the ignore "
                f"patterns {ignore} or miss the allow patterns {allow}; loosen them"
            )
        _refuse_replacing_user_files(target, wanted, overwrite=overwrite)
        path = snapshot_download(
            repo_id,
            revision=info.sha,
            local_dir=target,
            token=token,
            endpoint=_endpoint(),
            ignore_patterns=ignore or None,
            allow_patterns=allow,
        )
    except TunesmithError:
        raise
    except _hub_errors() as exc:
        if not existed and _access_refused(exc):
            # Only huggingface_hub's bookkeeping arrived: leave no folder behind.
            shutil.rmtree(target, ignore_errors=True)
        raise _hub_error(exc, repo_id, "download", revision) from exc
    # Where the files came from: fine-tunes name the repo as their base model (adapters'
    # base_model_name_or_path, model cards), not this local path.
    record = {"repo_id": repo_id, "revision": info.sha, "files": sorted(wanted)}
    (Path(path) / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def downloaded_files(directory: str | os.PathLike) -> list[str]:
    """The files :func:`download` wrote to ``directory`` (from its ``tunesmith_source.json``)."""
    try:
        record = json.loads((Path(directory) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(f) for f in record.get("files", [])]


def upload_warnings(folder: str | os.PathLike) -> list[str]:
    """What a user should know before ``folder`` goes to the Hub: an adapter-only folder
    (and how it will be used), or one whose adapter names its base by a local path."""
    folder = Path(folder).expanduser()
    warnings = []
    adapter = folder if (folder / "adapter_config.json").is_file() else folder / "adapter"
    has_adapter = (adapter / "adapter_config.json").is_file()
    has_weights = (
        any(folder.glob("*.safetensors")) and not (folder / "adapter_config.json").is_file()
    )
    base = None
    if has_adapter:
        try:
            base = json.loads((adapter / "adapter_config.json").read_text()).get(
                "base_model_name_or_path"
            )
        except (OSError, ValueError):
            base = None
    if has_adapter and not has_weights:
        where = "" if adapter == folder else f" (in {adapter.name}/)"
        warnings.append(
            f"{folder} holds only a PEFT adapter{where}, no model weights: the repo will be an "
            f"adapter repo, used on top of its base model {base or '(unnamed)'} — "
            "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), repo) or "
            "vLLM's --enable-lora; upload the epoch with merged weights for a standalone model"
        )
    if base and (Path(str(base)).is_absolute() or str(base).startswith(".")):
        warnings.append(
            f"the adapter names its base model by a local path ({base}), which no one else "
            f"can load: set base_model_name_or_path in {adapter / 'adapter_config.json'} to "
            "the base's Hub repo id (`tunesmith download` records it, so fine-tunes of a "
            "downloaded model name it themselves)"
        )
    return warnings


def _refuse_replacing_user_files(target: Path, wanted: list[str], *, overwrite: bool) -> None:
    """Refuse to replace a file that no earlier download wrote there, or that was changed
    since (huggingface_hub would overwrite it): it is the user's."""
    if overwrite or not target.is_dir():
        return
    theirs = []
    for name in wanted:
        path = target / name
        if not path.exists():
            continue
        # huggingface_hub's record of a file it downloaded: commit, etag, timestamp.
        record = target / ".cache" / "huggingface" / "download" / f"{name}.metadata"
        try:
            written = float(record.read_text(encoding="utf-8").splitlines()[2])
            unchanged = path.is_file() and path.stat().st_mtime - 1 <= written
        except (OSError, ValueError, IndexError):
            unchanged = False
        if not unchanged:
            theirs.append(name)
    if theirs:
        shown = ", ".join(theirs[:4]) + (f" and {len(theirs) - 4} more" if len(theirs) > 4 else "")
        raise TunesmithError(
            f"{target} already holds {shown}, which this download would replace and no "
            "earlier download wrote (or which changed since): choose another --output-dir, "
            "or pass --force to replace them"
        )


def _refuse_non_model_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a directory: pass the folder to upload")
    if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return
    epochs = sorted(p.name for p in folder.glob("epoch_*") if p.is_dir())
    hint = (
        f"; it looks like a run's output_dir: upload one of its epochs, e.g. {folder / epochs[-1]}"
        if epochs
        else ": upload a Hugging Face model directory (e.g. a run's output_dir/epoch_N) "
        "or a PEFT adapter (epoch_N/adapter)"
    )
    raise CheckpointError(f"{folder} has no config.json or adapter_config.json{hint}")


def upload(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a model (or PEFT adapter) directory to a Hub repo, creating the repo if needed.

    ``recipe_state/`` and ``logs/`` (:data:`UPLOAD_IGNORE_PATTERNS`) are left out;
    files already on the Hub with the same content are not sent again.

    Args:
        folder: A Hugging Face model directory (``config.json``), e.g. a run's
            ``output_dir/epoch_N``, or a PEFT adapter (``adapter_config.json``).
        repo_id: ``owner/name`` of the target repo.
        token: A Hub token with write access; default ``HF_TOKEN`` or the token saved
            by ``hf auth login``.
        private: Create the repo private (an existing repo keeps its visibility).
        revision: Branch to commit to (created from ``main`` if missing); default ``main``.
        commit_message: Default ``"Upload <folder name> with tunesmith"``.

    Returns:
        The URL of the commit.

    Raises:
        CheckpointError: ``folder`` is not a model or adapter directory.
        TunesmithError: the token is missing or lacks write access, or the Hub cannot
            be reached.
    """
    from huggingface_hub import HfApi

    folder = Path(folder).expanduser()
    _refuse_non_model_dir(folder)
    api = HfApi(endpoint=_endpoint(), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit: Any = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or f"Upload {folder.resolve().name} with tunesmith",
            ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),
        )
    except _hub_errors() as exc:
        raise _hub_error(exc, repo_id, "upload to", revision) from exc
    return str(commit.commit_url)
