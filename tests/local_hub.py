"""A local Hugging Face Hub-compatible HTTP server for tests (no public Hub is reachable from CI).

It speaks the subset of the Hub API that the official ``huggingface_hub`` client uses to push and pull a repo:
create repo, validate-yaml, preupload (always "regular": files travel base64 inside the NDJSON commit, so no
LFS/Xet storage is needed), commit, repo info (model/space/dataset, with or without revision), tree, paths-info and
``resolve`` with the ``X-Repo-Commit``/``ETag``/``Content-Length`` headers that ``hf_hub_download`` relies on, and
Space variables.
Repos live in memory with a linear commit history per branch. Errors carry the ``X-Error-Code`` header the client
maps to ``RepositoryNotFoundError``/``RevisionNotFoundError``/``EntryNotFoundError``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.pth filter=lfs diff=lfs merge=lfs -text\n"
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the client compares with its local file to skip unchanged uploads."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    title: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    sdk: str | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)  # Space variables (environment of the app)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        oid = self.branches.get(revision, revision if _SHA1.match(revision) else None)
        return self.commits.get(oid) if oid else None

    def commit(self, branch: str, files: dict[str, bytes], title: str) -> Commit:
        now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        parent = self.branches.get(branch, "")
        digest = hashlib.sha1(json.dumps([parent, title, now, sorted(files)]).encode())
        for path in sorted(files):
            digest.update(git_blob_oid(files[path]).encode())
        commit = Commit(oid=digest.hexdigest(), files=files, title=title, date=now)
        self.commits[commit.oid] = commit
        self.branches[branch] = commit.oid
        return commit


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def card_metadata(readme: bytes | None) -> dict | None:
    """The YAML front matter of a README, as the Hub exposes it in ``cardData``."""
    if not readme:
        return None
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.decode("utf-8"), re.S)
    return yaml.safe_load(match.group(1)) if match else None


class LocalHub:
    """In-memory Hub. Use as a context manager; ``.url`` is the endpoint to give ``HfApi(endpoint=...)``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) log for assertions
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Test helper: the files of a repo at a revision."""
        return dict(self._commit(self.repo(repo_type, repo_id), revision).files)

    @staticmethod
    def _commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    # ---- API operations: each returns (status, json-able body) ----

    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        name, namespace = body.get("name"), body.get("organization") or "user"
        if not name or not re.fullmatch(r"[\w.-]+", name) or not re.fullmatch(r"[\w.-]+", namespace):
            raise HubError(400, f"Invalid repo name {namespace}/{name}")
        if repo_type == "space" and body.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
            raise HubError(400, "A Space needs an sdk (gradio, streamlit, docker or static)")
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, "You already created this repo", url=url)  # the client reads url on 409
            repo = Repo(repo_type, repo_id, private=body.get("visibility") == "private", sdk=body.get("sdk"))
            repo.commit("main", {".gitattributes": GITATTRIBUTES}, "initial commit")
            self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        try:
            meta = card_metadata(body.get("content", "").encode())
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"Invalid YAML: {err}"}]}
        if meta is not None and not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a YAML mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, repo: Repo, revision: str, body: dict) -> tuple[int, dict]:
        current = repo.resolve(revision)
        existing = current.files if current else {}
        files = []
        for item in body.get("files", []):
            old = existing.get(item["path"])
            files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_oid(old) if old is not None else None})
        return 200, {"files": files, "commitOid": current.oid if current else None}

    def commit(self, repo: Repo, revision: str, lines: list[dict]) -> tuple[int, dict]:
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        header = lines[0] if lines and lines[0].get("key") == "header" else None
        if header is None:
            raise HubError(400, "commit payload must start with a header line")
        with self.lock:
            files = dict(repo.commits[repo.branches[branch]].files)
            parent = header["value"].get("parentCommit")
            if parent and not repo.branches[branch].startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, f"unsupported encoding for {value.get('path')}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                else:
                    raise HubError(400, f"this local Hub only accepts regular files, got {key!r}")
            commit = repo.commit(branch, files, header["value"].get("summary", ""))
        url = f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return 200, {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None, "success": True}

    def info(self, repo: Repo, revision: str) -> tuple[int, dict]:
        commit = self._commit(repo, revision)
        body = {
            "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
            "lastModified": commit.date, "createdAt": commit.date, "disabled": False, "gated": False,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)], "tags": [],
        }
        meta = card_metadata(commit.files.get("README.md"))
        if meta:
            body["cardData"] = meta
            body["tags"] = list(meta.get("tags", []))
            if "model-index" in meta:
                body["model-index"] = meta["model-index"]
        if "config.json" in commit.files:
            body["config"] = json.loads(commit.files["config.json"])
        if repo.repo_type == "space":
            body["sdk"] = repo.sdk
            body["runtime"] = {"stage": "BUILDING", "hardware": {"current": None, "requested": "cpu-basic"}}
        return 200, body

    @staticmethod
    def _entries(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        base = prefix + "/" if prefix else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base):].split("/")
            for depth in range(1, len(parts)):  # folders on the way
                folder = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    oid = git_blob_oid(folder.encode())
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": oid})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
        return list(entries.values())

    def tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> tuple[int, list]:
        commit = self._commit(repo, revision)
        entries = self._entries(commit, path, recursive)
        if path and not entries:
            raise HubError(404, f"{path} does not exist on {unquote(revision)}", "EntryNotFound")
        return 200, entries

    def paths_info(self, repo: Repo, revision: str, paths: list[str]) -> tuple[int, list]:
        commit = self._commit(repo, revision)
        everything = {entry["path"]: entry for entry in self._entries(commit, "", recursive=True)}
        return 200, [everything[p.strip("/")] for p in paths if p.strip("/") in everything]

    def resolve_file(self, repo: Repo, revision: str, path: str) -> tuple[Commit, bytes]:
        commit = self._commit(repo, revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        return commit, commit.files[path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # ---- plumbing ----
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.hub.requests.append((method, path))
        try:
            try:
                self._route(method, path, query)
            except (ValueError, KeyError, TypeError) as err:  # malformed request body
                raise HubError(400, f"bad request: {err!r}") from None
        except HubError as err:
            one_line = err.message.encode("ascii", "replace").decode().replace("\n", " ")
            headers = {"Content-Type": "application/json", "X-Error-Message": one_line}
            if err.code:
                headers["X-Error-Code"] = err.code
            body = json.dumps({"error": err.message, **err.extra}).encode()
            self._send(err.status, body, headers, head_only=method == "HEAD")

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731

    # ---- routes ----
    def _route(self, method: str, path: str, query: dict) -> None:
        hub = self.hub
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and path == "/api/repos/create":
            return self._json(*hub.create_repo(json.loads(self._body())))
        if method == "POST" and path == "/api/validate-yaml":
            return self._json(*hub.validate_yaml(json.loads(self._body())))
        if method == "GET" and path == "/api/whoami-v2":
            return self._json(200, {"type": "user", "name": "user", "orgs": [], "auth": {}})
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in _TYPE_FROM_PLURAL:
            repo = hub.repo(_TYPE_FROM_PLURAL[parts[1]], f"{parts[2]}/{parts[3]}")
            action, rest = (parts[4], parts[5:]) if len(parts) > 4 else ("", [])
            revision = rest[0] if rest else "main"
            if method == "GET" and action == "":
                return self._json(*hub.info(repo, "main"))
            if method == "GET" and action == "revision":
                return self._json(*hub.info(repo, revision))
            if method == "GET" and action == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._json(*hub.tree(repo, revision, "/".join(rest[1:]), recursive))
            if method == "POST" and action == "paths-info":
                form = parse_qs(self._body().decode())
                return self._json(*hub.paths_info(repo, revision, form.get("paths", [])))
            if method == "POST" and action == "preupload":
                return self._json(*hub.preupload(repo, revision, json.loads(self._body())))
            if method == "POST" and action == "variables" and repo.repo_type == "space":
                body = json.loads(self._body())
                repo.variables[body["key"]] = {"value": body["value"], "description": body.get("description")}
                return self._json(200, repo.variables)
            if method == "POST" and action == "commit":
                lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
                return self._json(*hub.commit(repo, revision, lines))
        # resolve: /{ns}/{name}/resolve/{rev}/{path}, /spaces/..., /datasets/...
        repo_type = _TYPE_FROM_PLURAL.get(parts[0]) if parts else None
        offset = 1 if repo_type in ("dataset", "space") else 0
        if method in ("GET", "HEAD") and len(parts) >= offset + 5 and parts[offset + 2] == "resolve":
            repo = hub.repo(repo_type or "model", f"{parts[offset]}/{parts[offset + 1]}")
            commit, data = hub.resolve_file(repo, parts[offset + 3], "/".join(parts[offset + 4:]))
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_oid(data)}"',
                       "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
            status, rng = 200, re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng and int(rng.group(1)) < len(data):
                start = int(rng.group(1))
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                status, data = 206, data[start:]
            return self._send(status, data, headers, head_only=method == "HEAD")
        raise HubError(404, f"local hub: no route for {method} {path}")


def load_hub_script(name: str):
    """A hub_scripts/<name>.py command line as a module (its ``main(argv)`` runs the CLI in this process)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "hub_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hub_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":  # manual use: python tests/local_hub.py
    import time

    with LocalHub(port=0) as running_hub:
        print(running_hub.url, flush=True)
        while True:
            time.sleep(3600)
