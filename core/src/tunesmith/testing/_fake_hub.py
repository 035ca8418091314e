"""A fake Hugging Face Hub on 127.0.0.1, for testing downloads and uploads offline.

It answers the requests ``huggingface_hub`` (2.x) makes for ``snapshot_download``
and ``upload_folder`` — nothing more — so a test exercises the real client code:

==========================================================  =======================
request                                                     answers
==========================================================  =======================
``GET /api/models/{repo}[/revision/{rev}]``                 repo info (``sha``, ``siblings``)
``GET /api/models/{repo}/tree/{rev}[/{path}]``              file listing (``?recursive=true``)
``HEAD|GET /{repo}/resolve/{rev}/{file}``                   file, ``X-Repo-Commit``, ``ETag``
``POST /api/repos/create``                                  new repo, 409 if it exists
``POST /api/validate-yaml``                                 no errors
``POST /api/models/{repo}/preupload/{rev}``                 ``uploadMode: "regular"``
``POST /api/models/{repo}/commit/{rev}``                    NDJSON commit (inline files, deletions)
``POST /api/models/{repo}/branch/{branch}``                 new branch, 409 if it exists
``GET /api/agent-harnesses``                                empty list (asked by any request)
==========================================================  =======================

Errors carry the headers ``huggingface_hub`` turns into its exceptions: an unknown
repo is 404 ``X-Error-Code: RepoNotFound``, an unknown revision 404
``RevisionNotFound``, a missing file 404 ``EntryNotFound``, and a file of a gated
repo 401 ``GatedRepo`` without a token or 403 ``GatedRepo`` with a token other
than the hub's own.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub"]

Files = Mapping[str, "bytes | str"]
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "_info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "_tree"),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "_resolve"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "_resolve"),
    ("POST", re.compile(r"^/api/repos/create$"), "_create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "_validate_yaml"),
    ("GET", re.compile(r"^/api/agent-harnesses$"), "_agent_harnesses"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"), "_preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"), "_commit"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/branch/(?P<rev>[^/]+)$"), "_branch"),
]
_HF_ENV = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HF_CONSTANTS = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HUB_OFFLINE")


def _blob_id(content: bytes) -> str:
    """Git's object id of a file, which the Hub reports as ``oid`` and ``ETag``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _read_files(files: Files | str | os.PathLike) -> dict[str, bytes]:
    if isinstance(files, Mapping):
        return {str(k): v.encode() if isinstance(v, str) else bytes(v) for k, v in files.items()}
    root = Path(files)
    if not root.is_dir():
        raise ValueError(f"FakeHub repo contents: {root} is not a directory")
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not {".git", ".cache"} & set(path.relative_to(root).parts)
    }


class _Repo:
    def __init__(self, gated: bool, private: bool = False) -> None:
        self.gated = gated
        self.private = private
        self.refs: dict[str, str] = {}  # branch -> commit
        self.trees: dict[str, dict[str, bytes]] = {}  # commit -> {path: content}


class _Reply(Exception):
    """An HTTP answer, raised from deep inside a handler."""

    def __init__(self, status: int, body: Any = None, **headers: str) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 that serves model repos like the Hub.

    Entering the context starts the server on a free port and points
    ``huggingface_hub`` at it for the duration of the block: ``HF_ENDPOINT`` is set,
    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` are unset, and the matching
    ``huggingface_hub.constants`` (read once at import, so an earlier import would
    otherwise keep the real Hub and offline mode) are patched. Leaving restores all
    of it and stops the server.

    Args:
        repos: ``{"owner/name": files}``, ``files`` being ``{path: bytes | str}`` or a
            directory whose files (but ``.git/``, ``.cache/``) are served.
        gated: Repo ids whose files need the hub's ``token`` (their info and listing
            stay public, as on the Hub); one not in ``repos`` holds a ``config.json``.
        token: The token the hub accepts. When set, creating repos and committing
            need it too; gated repos need it either way.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>`` once started.
        requests: ``(method, path)`` of every request served, in order.
        unhandled: Requests no route matched (answered 404); a test may assert it is
            empty to catch a client that started using another endpoint.

    Example:
        >>> with FakeHub({"org/tiny": tmp_path / "model"}, gated=["org/gated"]) as hub:
        ...     tunesmith.hub.download("org/tiny", tmp_path / "out")
        ...     hub.files("org/tiny")
    """

    def __init__(
        self,
        repos: Mapping[str, Files | str | os.PathLike] | None = None,
        *,
        gated: Iterable[str] = (),
        token: str | None = None,
    ) -> None:
        self.token = token
        self.endpoint = ""
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._commits = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._saved: tuple[dict[str, str | None], dict[str, Any]] | None = None
        gated = set(gated)
        for repo_id, files in (repos or {}).items():
            self.add_repo(repo_id, files, gated=repo_id in gated)
        for repo_id in gated - set(repos or {}):
            self.add_repo(repo_id, {"config.json": "{}"}, gated=True)

    # ---------------------------------------------------------------- state ---

    def add_repo(
        self, repo_id: str, files: Files | str | os.PathLike, *, gated: bool = False
    ) -> str:
        """Add (or replace) a repo whose ``main`` branch holds ``files``; returns its commit."""
        if repo_id.count("/") != 1:
            raise ValueError(f"FakeHub repo ids are 'owner/name', got {repo_id!r}")
        with self._lock:
            self._repos[repo_id] = _Repo(gated)
            return self._new_commit(self._repos[repo_id], "main", _read_files(files))

    def is_private(self, repo_id: str) -> bool:
        """Whether the repo was created private."""
        return self._repos[repo_id].private

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a branch or commit, e.g. to check an upload."""
        with self._lock:
            repo = self._repos[repo_id]
            return dict(repo.trees[repo.refs.get(revision, revision)])

    def _new_commit(self, repo: _Repo, branch: str, tree: dict[str, bytes]) -> str:
        sha = hashlib.sha1(f"fake-commit-{next(self._commits)}".encode()).hexdigest()
        repo.trees[sha] = tree
        repo.refs[branch] = sha
        return sha

    # ------------------------------------------------------ server lifecycle ---

    def __enter__(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._point_huggingface_hub_here()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore_huggingface_hub()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _point_huggingface_hub_here(self) -> None:
        # Imported (if it was not) before the environment changes, so that what is
        # saved and restored is what the rest of the process sees.
        from huggingface_hub import constants

        self._saved = (
            {name: os.environ.get(name) for name in _HF_ENV},
            {name: getattr(constants, name) for name in _HF_CONSTANTS},
        )
        os.environ["HF_ENDPOINT"] = self.endpoint  # for code that reads it at call time
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ.pop("TRANSFORMERS_OFFLINE", None)
        constants.ENDPOINT = self.endpoint
        constants.HUGGINGFACE_CO_URL_TEMPLATE = (
            self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        constants.HF_HUB_OFFLINE = False

    def _restore_huggingface_hub(self) -> None:
        if self._saved is None:
            return
        from huggingface_hub import constants

        env, attrs = self._saved
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, value in attrs.items():
            setattr(constants, name, value)
        self._saved = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub._serve(self, "GET")

            def do_HEAD(self) -> None:
                hub._serve(self, "HEAD")

            def do_POST(self) -> None:
                hub._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests are recorded in hub.requests instead

        return Handler

    # --------------------------------------------------------------- routing ---

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        self.requests.append((method, url.path))
        try:
            for verb, pattern, handler in _ROUTES:
                match = pattern.match(url.path)
                if verb == method and match:
                    args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, handler)(request=request, body=body, query=url.query, **args)
            self.unhandled.append((method, url.path))
            raise _Reply(404, {"error": f"fake hub: no route for {method} {url.path}"})
        except _Reply as reply:
            self._send(request, method, reply)
        except Exception as exc:  # a bug here must reach the test as an answer, not a hang
            self._send(request, method, _Reply(500, {"error": f"fake hub: {exc!r}"}))

    def _send(self, request: BaseHTTPRequestHandler, method: str, reply: _Reply) -> None:
        body = reply.body
        if not isinstance(body, bytes):
            body = json.dumps(body).encode() if body is not None else b""
            reply.headers.setdefault("Content-Type", "application/json")
        request.send_response(reply.status)
        for name, value in reply.headers.items():
            request.send_header(name.replace("_", "-"), value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(body)

    # ------------------------------------------------------------- helpers ---

    def _repo(self, repo_id: str) -> _Repo:
        if repo_id not in self._repos:
            raise _Reply(
                404,
                {"error": "Repository not found"},
                X_Error_Code="RepoNotFound",
                X_Error_Message="Repository not found",
            )
        return self._repos[repo_id]

    def _commit_of(self, repo: _Repo, revision: str) -> str:
        if revision in repo.refs:
            return repo.refs[revision]
        if revision in repo.trees:
            return revision
        raise _Reply(
            404,
            {"error": f"Invalid rev id: {revision}"},
            X_Error_Code="RevisionNotFound",
            X_Error_Message=f"Invalid rev id: {revision}",
        )

    def _authorized(self, request: BaseHTTPRequestHandler) -> bool | None:
        """``None`` without a token, else whether it is the hub's token."""
        header = request.headers.get("Authorization")
        if not header:
            return None
        return self.token is not None and header == f"Bearer {self.token}"

    def _require_write_token(self, request: BaseHTTPRequestHandler) -> None:
        if self.token is None:
            return
        authorized = self._authorized(request)
        if authorized is None:
            raise _Reply(401, {"error": "Invalid username or password."})
        if not authorized:
            raise _Reply(
                401,
                {"error": "Invalid credentials in Authorization header"},
                X_Error_Message="Invalid credentials in Authorization header",
            )

    # ------------------------------------------------------------ download ---

    def _info(self, *, repo: str, rev: str = "main", **_: Any) -> None:
        with self._lock:
            record = self._repo(repo)
            sha = self._commit_of(record, rev)
            paths = sorted(record.trees[sha])
        raise _Reply(
            200,
            {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "private": record.private,
                "gated": "manual" if record.gated else False,
                "disabled": False,
                "tags": [],
                "siblings": [{"rfilename": path} for path in paths],
            },
        )

    def _tree(self, *, repo: str, rev: str, query: str, path: str = "", **_: Any) -> None:
        recursive = parse_qs(query).get("recursive", ["false"])[0].lower() == "true"
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        with self._lock:
            record = self._repo(repo)
            tree = record.trees[self._commit_of(record, rev)]
            entries: list[dict[str, Any]] = []
            folders: set[str] = set()
            for name, content in sorted(tree.items()):
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix) :]
                if not recursive and "/" in rest:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                entries.append(
                    {"type": "file", "path": name, "size": len(content), "oid": _blob_id(content)}
                )
        entries += [{"type": "directory", "path": p, "oid": _blob_id(p.encode())} for p in folders]
        raise _Reply(200, entries)

    def _resolve(
        self, *, request: BaseHTTPRequestHandler, repo: str, rev: str, path: str, **_: Any
    ) -> None:
        with self._lock:
            record = self._repo(repo)
            sha = self._commit_of(record, rev)
            content = record.trees[sha].get(path)
        if record.gated and not self._authorized(request):
            status = 401 if self._authorized(request) is None else 403
            message = (
                f"Access to model {repo} is restricted and you are not in the authorized list."
            )
            raise _Reply(
                status, {"error": message}, X_Error_Code="GatedRepo", X_Error_Message=message
            )
        if content is None:
            raise _Reply(
                404,
                {"error": "Entry not found"},
                X_Error_Code="EntryNotFound",
                X_Error_Message="Entry not found",
                X_Repo_Commit=sha,
            )
        raise _Reply(
            200,
            content,
            Content_Type="application/octet-stream",
            ETag=f'"{_blob_id(content)}"',
            X_Repo_Commit=sha,
        )

    # -------------------------------------------------------------- upload ---

    def _create(self, *, request: BaseHTTPRequestHandler, body: bytes, **_: Any) -> None:
        self._require_write_token(request)
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.endpoint}/{repo_id}"
        with self._lock:
            if repo_id in self._repos:
                raise _Reply(409, {"error": "You already created this model repo", "url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self._repos[repo_id] = _Repo(gated=False, private=private)
            self._new_commit(self._repos[repo_id], "main", {})
        raise _Reply(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, **_: Any) -> None:
        raise _Reply(200, {"errors": [], "warnings": []})

    def _agent_harnesses(self, **_: Any) -> None:
        # huggingface_hub fetches this once per process to build its User-Agent.
        raise _Reply(200, {"standardEnvVars": [], "harnesses": {}})

    def _preupload(
        self, *, request: BaseHTTPRequestHandler, repo: str, rev: str, body: bytes, **_: Any
    ) -> None:
        self._require_write_token(request)
        with self._lock:
            record = self._repo(repo)
            tree = record.trees[record.refs[rev]] if rev in record.refs else {}
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",  # content then arrives inline in the commit
                "shouldIgnore": False,
                "oid": _blob_id(tree[f["path"]]) if f["path"] in tree else None,
            }
            for f in json.loads(body)["files"]
        ]
        raise _Reply(200, {"files": files, "commitOid": record.refs.get(rev)})

    def _commit(
        self, *, request: BaseHTTPRequestHandler, repo: str, rev: str, body: bytes, **_: Any
    ) -> None:
        self._require_write_token(request)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self._lock:
            record = self._repo(repo)
            tree = dict(record.trees[self._commit_of(record, rev)])
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    tree[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    tree.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    tree = {k: v for k, v in tree.items() if not k.startswith(prefix)}
                elif key != "header":
                    raise _Reply(422, {"error": f"fake hub: unsupported commit operation {key!r}"})
            sha = self._new_commit(record, rev, tree)
        raise _Reply(
            200,
            {
                "commitUrl": f"{self.endpoint}/{repo}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
            },
        )

    def _branch(
        self, *, request: BaseHTTPRequestHandler, repo: str, rev: str, body: bytes, **_: Any
    ) -> None:
        self._require_write_token(request)
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        with self._lock:
            record = self._repo(repo)
            if rev in record.refs:
                raise _Reply(409, {"error": f"Reference already exists: refs/heads/{rev}"})
            record.refs[rev] = self._commit_of(record, start)
        raise _Reply(200, {})
