"""A local stand-in for the Hugging Face Hub, with its CDN on a second host.

The Hub answers what huggingface_hub and ckptfetch ask it:

- `HEAD|GET /[datasets/|spaces/]ORG/NAME/resolve/REV/PATH`: a 302 to the CDN
  for LFS files (with `X-Repo-Commit`, `X-Linked-Etag` = sha256,
  `X-Linked-Size`), the bytes themselves for small git files (`ETag` = git
  blob id);
- `GET /api/{models,datasets,spaces}/ORG/NAME/revision/REV`: `{"sha": ...}`;
- `GET /api/.../tree/REV[/PATH]?recursive=true`: the listing, `page_size`
  entries a page, with a `Link: <...>; rel="next"` header;
- gated repos: 401 without a token, 403 with the wrong one, and the Hub's
  `X-Error-Code` / `X-Error-Message` headers; unknown repos, revisions and
  files answer RepoNotFound / RevisionNotFound / EntryNotFound.

The CDN is a `TestServer` (ranges, faults, request log). Every request to
either host is logged with its headers, so tests can check that the token
reached the Hub and never the CDN.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .httpserver import Headers, RequestLog, TestServer

LFS_THRESHOLD = 1024  # files at least this big are LFS files, served from the CDN


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str  # model | dataset | space
    repo_id: str
    files: dict[str, bytes] = field(default_factory=dict)  # at the head of `main`
    commit: str = ""
    gated: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    lfs_sha: dict[str, str] = field(default_factory=dict)  # declared sha256 overrides (to serve wrong bytes)


class FakeHub:
    """The Hub on one port, its CDN (a TestServer) on another."""

    __test__ = False

    def __init__(self, page_size: int = 2, token: str = "hf_test_token_123", cdn_on_hub: bool = False) -> None:
        self.page_size = page_size
        self.cdn_on_hub = cdn_on_hub  # LFS redirects stay on the Hub's host (under /cdn/) instead of the CDN
        self.blobs: dict[str, bytes] = {}
        self.failures: dict[str, list[int]] = {}  # path -> statuses answered first, one per request
        self.token = token
        self.api_delay = 0.0
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self.cdn = TestServer()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread: threading.Thread | None = None
        self._commits = 0

    # -- lifecycle ----------------------------------------------------------------
    def __enter__(self) -> FakeHub:
        self.cdn.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.cdn.stop()

    # -- configuration ------------------------------------------------------------
    def _new_commit(self) -> str:
        self._commits += 1
        return hashlib.sha1(f"commit-{self._commits}".encode()).hexdigest()

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "model", gated: bool = False,
                 tags: tuple[str, ...] = (), commit: str | None = None) -> Repo:
        """A repo whose `main` (and `tags`) hold `files` at a fresh commit (or `commit`)."""
        commit = commit or self._new_commit()
        repo = Repo(repo_type, repo_id, dict(files), commit, gated, {"main": commit, **dict.fromkeys(tags, commit)},
                    {commit: dict(files)})
        self.repos[repo_type, repo_id] = repo
        self._publish(repo, commit)
        return repo

    def push(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "model", branch: str = "main",
             commit: str | None = None) -> str:
        """A new commit (or `commit`) on `branch` with `files` changed or added; returns it."""
        repo = self.repos[repo_type, repo_id]
        base = dict(repo.snapshots[repo.refs.get(branch, repo.commit)])
        base.update(files)
        commit = commit or self._new_commit()
        repo.snapshots[commit] = base
        repo.refs[branch] = commit
        if branch == "main":
            repo.commit, repo.files = commit, base
        self._publish(repo, commit)
        return commit

    def _publish(self, repo: Repo, commit: str) -> None:
        for data in repo.snapshots[commit].values():
            if len(data) >= LFS_THRESHOLD:
                self.cdn.add(self.cdn_path(repo, hashlib.sha256(data).hexdigest()), data)
                self.blobs[self.cdn_path(repo, hashlib.sha256(data).hexdigest())] = data

    @staticmethod
    def cdn_path(repo: Repo, sha: str) -> str:
        return f"/repos/{repo.repo_id.replace('/', '--')}/{sha}"

    def serve_wrong_bytes(self, repo_id: str, path: str, repo_type: str = "model") -> None:
        """Make the CDN serve other bytes than the sha256 the Hub declares for `path`."""
        repo = self.repos[repo_type, repo_id]
        data = repo.files[path]
        bad = bytes([data[0] ^ 0xFF]) + data[1:]
        self.cdn.add(self.cdn_path(repo, hashlib.sha256(data).hexdigest()), bad)

    # -- statistics -----------------------------------------------------------------
    def log(self, entry: RequestLog) -> None:
        with self._lock:
            self.requests.append(entry)

    def hub_auth(self) -> list[str | None]:
        """The Authorization header of every request the Hub saw."""
        return [r.headers.get("Authorization") for r in self.requests]

    def cdn_auth(self) -> list[str | None]:
        return [r.headers.get("Authorization") for r in self.cdn.requests]

    # -- answers -----------------------------------------------------------------------
    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next requests for `path` with `statuses` (e.g. 503), one each, before the real answer."""
        self.failures.setdefault(path, []).extend(statuses)

    def answer(self, method: str, raw_path: str, headers: Headers) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path
        with self._lock:
            queued = self.failures.get(path)
            status = queued.pop(0) if queued else None
        if status is not None:
            return status, {"Retry-After": "0"}, b"try again"
        if path.startswith("/api/"):
            return self._api(path, parse_qs(parts.query), headers)
        if path.startswith("/cdn/") and path[4:] in self.blobs:
            return 200, {"Content-Type": "application/octet-stream"}, self.blobs[path[4:]]
        return self._resolve(method, path, headers)

    def _auth_error(self, repo: Repo | None, headers: Headers) -> tuple[int, dict[str, str], bytes] | None:
        if repo is None:
            return 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, b"{}"
        if not repo.gated:
            return None
        sent = headers.get("Authorization")
        if sent is None:
            return 401, {"X-Error-Code": "GatedRepo",
                         "X-Error-Message": "Access to model is restricted. You must have access to it and be authenticated to access it. Please log in."}, b"{}"
        if sent == "Bearer hf_invalid":
            return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, b"{}"
        if sent != f"Bearer {self.token}":
            return 403, {"X-Error-Code": "GatedRepo",
                         "X-Error-Message": "Access to model is restricted and you are not in the authorized list."}, b"{}"
        return None

    def _find(self, kind: str, rest: str) -> tuple[Repo | None, str]:
        bits = rest.split("/", 2)
        if len(bits) < 2:
            return None, ""
        return self.repos.get((kind, f"{bits[0]}/{bits[1]}")), bits[2] if len(bits) > 2 else ""

    def _snapshot(self, repo: Repo, rev: str) -> tuple[str, dict[str, bytes]] | None:
        commit = repo.refs.get(rev, rev)
        files = repo.snapshots.get(commit)
        return (commit, files) if files is not None else None

    def _resolve(self, method: str, path: str, headers: Headers) -> tuple[int, dict[str, str], bytes]:
        kind = "model"
        rest = path[1:]
        for prefix, t in (("datasets/", "dataset"), ("spaces/", "space")):
            if rest.startswith(prefix):
                kind, rest = t, rest[len(prefix):]
        repo, tail = self._find(kind, rest)
        if not tail.startswith("resolve/"):
            return 404, {}, b"not found"
        denied = self._auth_error(repo, headers)
        if denied or repo is None:
            return denied or (404, {}, b"")
        rev_raw, _, file_path = tail[len("resolve/"):].partition("/")
        rev, file_path = unquote(rev_raw), unquote(file_path)
        snap = self._snapshot(repo, rev)
        if snap is None:
            return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, b"{}"
        commit, files = snap
        if file_path not in files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": commit}, b"{}"
        data = files[file_path]
        common = {"X-Repo-Commit": commit}
        if len(data) >= LFS_THRESHOLD:
            sha = repo.lfs_sha.get(file_path) or hashlib.sha256(data).hexdigest()
            where = f"{self.url}/cdn" if self.cdn_on_hub else self.cdn.url
            cdn = f"{where}{self.cdn_path(repo, hashlib.sha256(data).hexdigest())}?X-Amz-Signature=abc"
            return 302, {**common, "Location": cdn, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                         "ETag": f'W/"{git_blob_id(data)[:20]}"'}, b""
        return 200, {**common, "ETag": f'"{git_blob_id(data)}"', "Content-Type": "text/plain; charset=utf-8"}, data

    def _api(self, path: str, query: dict[str, list[str]], headers: Headers) -> tuple[int, dict[str, str], bytes]:
        bits = path.split("/", 3)  # "", "api", "models", rest
        kinds = {"models": "model", "datasets": "dataset", "spaces": "space"}
        if len(bits) < 4 or bits[2] not in kinds:
            return 404, {}, b"{}"
        repo, tail = self._find(kinds[bits[2]], bits[3])
        denied = self._auth_error(repo, headers)
        if denied or repo is None:
            return denied or (404, {}, b"")
        what, _, rest = tail.partition("/")
        rev_raw, _, folder = rest.partition("/")
        rev, folder = unquote(rev_raw), unquote(folder).strip("/")
        snap = self._snapshot(repo, rev)
        if snap is None:
            return 404, {"X-Error-Code": "RevisionNotFound"}, b"{}"
        commit, files = snap
        if what == "revision":
            return 200, {"Content-Type": "application/json"}, json.dumps({"id": repo.repo_id, "sha": commit}).encode()
        if what != "tree":
            return 404, {}, b"{}"
        if folder and not any(p.startswith(folder + "/") for p in files):
            return 404, {"X-Error-Code": "EntryNotFound"}, b"{}"
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = self._tree(files, folder, recursive)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + self.page_size]
        out = {"Content-Type": "application/json"}
        if start + self.page_size < len(entries):
            rev_q = quote(rev, safe="")
            where = "/" + quote(folder, safe="") if folder else ""
            nxt = f"{self.url}/api/{bits[2]}/{repo.repo_id}/tree/{rev_q}{where}?recursive={str(recursive).lower()}&cursor={start + self.page_size}"
            out["Link"] = f'<{nxt}>; rel="next"'
        return 200, out, json.dumps(page).encode()

    @staticmethod
    def _tree(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for p in sorted(files):
            if folder and not p.startswith(folder + "/"):
                continue
            rel = p[len(folder) + 1:] if folder else p
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(([folder] if folder else []) + parts[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": git_blob_id(d.encode()), "size": 0, "path": d})
            if not recursive and len(parts) > 1:
                continue
            data = files[p]
            item: dict[str, Any] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": p}
            if len(data) >= LFS_THRESHOLD:
                item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(item)
        return entries


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        hub: FakeHub = self.server.hub  # type: ignore[attr-defined]
        headers = Headers(self.headers.items())
        hub.log(RequestLog(method, self.path, headers, self.client_address))
        if hub.api_delay and self.path.startswith("/api/"):
            time.sleep(hub.api_delay)  # a far Hub: each API answer takes this long
        status, out, body = hub.answer(method, self.path, headers)
        self.send_response(status)
        for k, v in out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")
