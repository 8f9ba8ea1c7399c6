"""A real threaded HTTP/1.1 test server with range support and fault injection.

Only the standard library is used. Typical use::

    with TestServer() as srv:
        url = srv.add("/model.bin", b"x" * 1000)
        srv.fault("/model.bin", "reset", at=100)
        ...  # exercise the download engine against ``url``
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "Headers", "RequestLog", "TestServer"]

CHUNK_SIZE = 64 * 1024
FAULT_KINDS = frozenset(
    {
        "reset",
        "short",
        "status",
        "stall",
        "ignore_range",
        "ignore_if_range",
        "change_etag",
        "wrong_bytes",
        "html",
        "redirect",
        "drop",
    }
)
HTML_ERROR_PAGE = (
    b"<html><head><title>Error</title></head><body><h1>Quota exceeded</h1><p>Please try again later.</p></body></html>"
)
_BASE_MTIME = 1_600_000_000  # fixed epoch for auto Last-Modified values


@dataclass
class Fault:
    """One injected fault; consumed by exactly one matching request."""

    kind: str
    at: int = 0
    status: int | None = None
    retry_after: str | None = None
    seconds: float = 5.0
    location: str = ""
    body: bytes | None = None
    content_type: str | None = None  # for "status": e.g. an HTML error page

    def __post_init__(self) -> None:
        """Validate the fault kind."""
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


class Headers(dict[str, str]):
    """A dict of request headers with lower-cased keys and case-insensitive lookup."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """Build from (name, value) pairs; repeated names are comma-joined."""
        super().__init__()
        for name, value in items:
            key = name.lower()
            super().__setitem__(key, f"{self[key]}, {value}" if key in self else value)

    def __getitem__(self, key: str) -> str:
        """Look up a header case-insensitively."""
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        """Store a header under its lower-cased name."""
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        """Case-insensitive membership test."""
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        """Case-insensitive ``dict.get``."""
        return super().get(key.lower(), default)


@dataclass
class RequestLog:
    """One request as seen by the server."""

    method: str
    path: str
    headers: Headers
    client: tuple[str, int]
    time: float = field(default_factory=time.monotonic)


@dataclass
class _Resource:
    """A registered resource and its validators."""

    data: bytes
    etag_mode: str | None  # "auto", None or a literal ETag value
    lm_mode: str | None  # "auto", None or a literal HTTP date
    content_type: str
    ranges: bool
    headers: dict[str, str]
    gen: int = 0

    @property
    def etag(self) -> str | None:
        """Current ETag header value (or None)."""
        if self.etag_mode is None:
            return None
        if self.etag_mode == "auto":
            return f'"{hashlib.sha1(self.data).hexdigest()[:20]}-{self.gen}"'
        return self.etag_mode

    @property
    def last_modified(self) -> str | None:
        """Current Last-Modified header value (or None)."""
        if self.lm_mode is None:
            return None
        if self.lm_mode == "auto":
            return formatdate(_BASE_MTIME + 3600 * self.gen, usegmt=True)
        return self.lm_mode

    def bump(self) -> None:
        """Change the validators (literal values become auto-generated ones)."""
        self.gen += 1
        if self.etag_mode is not None:
            self.etag_mode = "auto"
        if self.lm_mode is not None:
            self.lm_mode = "auto"


def _split_query(path: str) -> str:
    """Return ``path`` without its query string."""
    return path.split("?", 1)[0]


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """Parse a single ``bytes=`` range.

    Returns (start, end) inclusive, None to ignore the header (serve 200) or
    "unsatisfiable" for a 416.
    """
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    first, last = first.strip(), last.strip()
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end < start):
        return None
    if start >= size:
        return "unsatisfiable"
    return start, size - 1 if end is None else min(end, size - 1)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying a back-reference to its TestServer."""

    daemon_threads = True
    allow_reuse_address = True
    owner: TestServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent about handler errors (clients disconnect on purpose)."""


class _Handler(BaseHTTPRequestHandler):
    """Request handler delegating all decisions to the owning TestServer."""

    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing -----------------------------------------------------------------
    def setup(self) -> None:
        """Register the connection so stop() can tear it down."""
        super().setup()
        # headers and body go out in separate writes; avoid Nagle/delayed-ACK stalls
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def handle(self) -> None:
        """Serve requests on this connection, ignoring socket errors."""
        try:
            super().handle()
        except (OSError, ValueError):
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        """Suppress the default stderr logging."""

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        """Handle HEAD."""
        self._dispatch(head=True)

    # -- helpers ------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Sleep interruptibly; return False if the server is stopping."""
        if seconds <= 0:
            return not self.server.owner._stopping.is_set()
        return not self.server.owner._stopping.wait(seconds)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Send the status line and headers (after the server-wide delay)."""
        owner = self.server.owner
        if not self._sleep(owner.delay):
            raise ConnectionAbortedError("server stopping")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _write(self, body: bytes, fault: Fault | None) -> None:
        """Write ``body`` in chunks, applying reset/short/stall and throttling."""
        owner = self.server.owner
        kind = fault.kind if fault else None
        limit = len(body)
        if kind in ("reset", "short", "stall") and fault is not None:
            limit = max(0, min(fault.at, len(body)))
        pos = 0
        started = time.monotonic()
        while pos < limit or (kind == "stall" and pos < len(body)):
            if kind == "stall" and pos == limit:
                if not self._sleep(fault.seconds if fault else 0):
                    raise ConnectionAbortedError("server stopping")
                kind, limit = None, len(body)
                continue
            size = min(CHUNK_SIZE, limit - pos)
            rate = owner.rate
            if rate:
                size = max(1, min(size, rate // 10))
                ahead = (pos + size) / rate - (time.monotonic() - started)
                if ahead > 0 and not self._sleep(ahead):
                    raise ConnectionAbortedError("server stopping")
            owner._count(self.path, size)  # count first: the client may be faster
            try:
                self.wfile.write(body[pos : pos + size])
            except OSError:
                owner._count(self.path, -size)
                raise
            pos += size
        if kind == "reset":
            self._reset()
        elif kind == "short":
            self.close_connection = True

    def _simple(
        self,
        status: int,
        body: bytes,
        head: bool,
        fault: Fault | None,
        content_type: str = "text/plain; charset=utf-8",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """Send a small complete response."""
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        self._start(status, headers + (extra or []))
        self._write(b"" if head else body, fault)

    # -- main logic ---------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        """Log, pick a fault, then answer the request."""
        owner = self.server.owner
        path = self.path
        owner._log(RequestLog(self.command, path, Headers(self.headers.items()), self.client_address))
        # Faults are for downloads: a HEAD (a client asking a file's size) leaves them queued for the GET.
        fault = None if head else owner._pop_fault(path)
        try:
            self._answer(path, head, fault)
        except OSError:  # client went away (BrokenPipe/ConnectionReset) or server stopping
            self.close_connection = True

    def _answer(self, path: str, head: bool, fault: Fault | None) -> None:
        """Produce the response for one request."""
        owner = self.server.owner
        kind = fault.kind if fault else None
        if kind == "drop":
            self.close_connection = True
            return
        if fault is not None and kind == "status":
            status = fault.status or 500
            extra = [("Retry-After", fault.retry_after)] if fault.retry_after else []
            body = fault.body if fault.body is not None else f"error {status}\n".encode()
            self._simple(status, body, head, None, content_type=fault.content_type or "text/plain; charset=utf-8",
                         extra=extra)
            return
        if fault is not None and kind == "html":
            body = fault.body if fault.body is not None else HTML_ERROR_PAGE
            self._simple(200, body, head, None, content_type="text/html; charset=utf-8")
            return
        if fault is not None and kind == "redirect":
            self._simple(
                fault.status or 302,
                b"",
                head,
                None,
                extra=[("Location", fault.location)],
            )
            return

        res, redirect = owner._lookup(path, bump=kind == "change_etag")
        if redirect is not None:
            location, status = redirect
            self._simple(status, b"", head, fault, extra=[("Location", location)])
            return
        if res is None:
            self._simple(404, b"not found\n", head, fault)
            return
        data, etag, last_modified = res.data, res.etag, res.last_modified
        size = len(data)
        status, start, end = 200, 0, size - 1
        rng = self.headers.get("Range")
        use_range = res.ranges and kind != "ignore_range"
        if rng and use_range and (kind == "ignore_if_range" or self._if_range_ok(etag, last_modified)):
            parsed = _parse_range(rng, size)
            if parsed == "unsatisfiable":
                headers = [
                    ("Content-Range", f"bytes */{size}"),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", "0"),
                    ("Accept-Ranges", "bytes"),
                ]
                self._start(416, headers)
                return
            if isinstance(parsed, tuple):
                status, (start, end) = 206, parsed
        body = data[start : end + 1]
        if kind == "wrong_bytes" and body:
            flipped = bytearray(body)
            flipped[len(flipped) // 2] ^= 0xFF
            body = bytes(flipped)

        merged: dict[str, tuple[str, str]] = {}
        base: list[tuple[str, str]] = [("Content-Type", res.content_type)]
        if res.ranges:
            base.append(("Accept-Ranges", "bytes"))
        if etag is not None:
            base.append(("ETag", etag))
        if last_modified is not None:
            base.append(("Last-Modified", last_modified))
        for name, value in [*base, *res.headers.items()]:
            merged[name.lower()] = (name, value)
        merged["content-length"] = ("Content-Length", str(len(body)))
        if status == 206:
            merged["content-range"] = ("Content-Range", f"bytes {start}-{end}/{size}")
        self._start(status, list(merged.values()))
        self._write(b"" if head else body, fault)

    def _if_range_ok(self, etag: str | None, last_modified: str | None) -> bool:
        """Evaluate If-Range: True means the Range header may be honoured."""
        value = self.headers.get("If-Range")
        if value is None:
            return True
        value = value.strip()
        if value.startswith(('"', "W/")):
            return etag is not None and not value.startswith("W/") and value == etag
        return last_modified is not None and value == last_modified


class TestServer:
    """Threaded HTTP/1.1 server on 127.0.0.1 with ranges and fault injection."""

    __test__ = False  # keep pytest from collecting this class

    def __init__(self) -> None:
        """Bind to an ephemeral port (serving starts with start())."""
        self.delay: float = 0.0
        self.rate: int | None = None
        self.requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self._resources: dict[str, _Resource] = {}
        self._redirects: dict[str, tuple[str, int]] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._sent: dict[str, int] = {}
        self._conns: set[socket.socket] = set()
        self.peak_connections = 0  # most connections open at once
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_port
        self.url: str = f"http://127.0.0.1:{self.port}"

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> TestServer:
        """Start serving in a background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.01},
                name="TestServer",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving promptly, interrupting stalled handlers and open connections."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> TestServer:
        """Start and return the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- configuration ------------------------------------------------------------
    def add(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = "auto",
        last_modified: str | None = "auto",
        content_type: str = "application/octet-stream",
        ranges: bool = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Register ``data`` at ``path`` (may include a query) and return its URL."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        res = _Resource(bytes(data), etag, last_modified, content_type, ranges, dict(headers or {}))
        with self._lock:
            self._redirects.pop(path, None)
            self._resources[path] = res
        return self.url + path

    def replace(self, path: str, data: bytes) -> None:
        """Swap in new content at ``path``; validators change."""
        with self._lock:
            res = self._resources[path]
            res.data = bytes(data)
            res.bump()

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Make ``path`` answer with a redirect to ``location``."""
        with self._lock:
            self._resources.pop(path, None)
            self._redirects[path] = (location, status)

    def fault(self, path: str, kind: str, **params: Any) -> None:
        """Queue a fault for ``path``; each request pops one (FIFO)."""
        item = Fault(kind, **params)
        with self._lock:
            self._faults.setdefault(path, deque()).append(item)

    def clear_faults(self, path: str | None = None) -> None:
        """Drop queued faults for ``path`` (or all paths)."""
        with self._lock:
            if path is None:
                self._faults.clear()
            else:
                self._faults.pop(path, None)

    def etag(self, path: str) -> str | None:
        """Return the current ETag of a registered resource."""
        with self._lock:
            return self._resources[path].etag

    def last_modified(self, path: str) -> str | None:
        """Return the current Last-Modified of a registered resource."""
        with self._lock:
            return self._resources[path].last_modified

    # -- statistics ---------------------------------------------------------------
    @staticmethod
    def _matches(logged: str, path: str | None) -> bool:
        """Whether a logged request path matches a query path (see hits())."""
        if path is None:
            return True
        if "?" in path:
            return logged == path
        return _split_query(logged) == path

    def hits(self, path: str, method: str | None = "GET") -> int:
        """Count requests for ``path`` (GETs: downloads; ``method=None``: every method); without '?' any
        query string matches."""
        with self._lock:
            return sum(1 for r in self.requests if self._matches(r.path, path) and method in (None, r.method))

    def bytes_sent(self, path: str | None = None) -> int:
        """Sum body bytes written for ``path`` (matched as in hits()) or all."""
        with self._lock:
            return sum(n for p, n in self._sent.items() if self._matches(p, path))

    def clear_log(self) -> None:
        """Forget logged requests, byte counters and the connection peak."""
        with self._lock:
            self.requests.clear()
            self._sent.clear()
            self.peak_connections = len(self._conns)

    # -- internals used by the handler ----------------------------------------------
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
                self.peak_connections = max(self.peak_connections, len(self._conns))
            else:
                self._conns.discard(conn)

    def _log(self, entry: RequestLog) -> None:
        with self._lock:
            self.requests.append(entry)

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self._sent[path] = self._sent.get(path, 0) + n

    def _pop_fault(self, path: str) -> Fault | None:
        with self._lock:
            for key in (path, _split_query(path)):
                queue = self._faults.get(key)
                if queue:
                    return queue.popleft()
        return None

    def _lookup(self, path: str, *, bump: bool = False) -> tuple[_Resource | None, tuple[str, int] | None]:
        """Find the resource (a snapshot copy) or redirect for ``path``."""
        with self._lock:
            for key in (path, _split_query(path)):
                if key in self._redirects:
                    return None, self._redirects[key]
                res = self._resources.get(key)
                if res is not None:
                    if bump:
                        res.bump()
                    return replace(res, headers=dict(res.headers)), None
        return None, None
