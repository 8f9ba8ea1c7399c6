"""Download one URL into a verified file.

Bytes go to a partial file beside the target, with a small JSON sidecar that
remembers the URL, the validator (ETag or Last-Modified) and the total size.
An interrupted download resumes with `Range` + `If-Range`; a server that
ignores the range, or whose validator changed, gets a clean restart. Hashes are
computed while the bytes stream in; a resumed download re-reads its existing
prefix once. Nothing reaches the target until size and hashes match, then it
is fsynced and renamed atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
from requests.adapters import HTTPAdapter

from .. import _testhooks, compat
from .._version import __version__
from ..errors import DownloadError, HashMismatch, Interrupted
from ..hashing import MultiHasher, ThreadedHasher
from ..pins import first_mismatch
from ..progress import NullReporter, Reporter
from ..urls import redact
from .resume import if_range_validator, is_retryable_status, parse_content_range, retry_after_seconds
from .segmented import PROBE, FallBack, Hooks, PieceRetry, Segmented, contiguous, plan_pieces

PARTIAL_SUFFIX = ".ckptfetch-partial"
SIDECAR_SUFFIX = ".ckptfetch-partial.json"
USER_AGENT = f"ckptfetch/{__version__} (+https://github.com/ckptfetch/ckptfetch) python-requests/{requests.__version__}"
MAX_REDIRECTS = 10
_PROTOCOL_HEADERS = frozenset({"range", "if-range", "accept", "accept-encoding", "user-agent"})


@dataclass
class Settings:
    """Knobs for the engine. Tests pass a fake `sleep` and short timeouts."""

    retries: int = 5  # failed attempts in a row without progress before giving up
    backoff: float = 0.5  # first backoff, doubled each time, with jitter
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    chunk_size: int = 1 << 20
    connections: int = 8  # per large file, when the server takes byte ranges
    per_host: int = 16  # extra connections to one host, across all files
    sleep: Callable[[float], None] = time.sleep
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_env(cls) -> Settings:
        """Defaults, overridden by CKPTFETCH_RETRIES / _TIMEOUT / _BACKOFF."""
        s = cls()
        env = os.environ
        if env.get("CKPTFETCH_RETRIES", "").isdigit():
            s.retries = int(env["CKPTFETCH_RETRIES"])
        if env.get("CKPTFETCH_CONNECTIONS", "").isdigit():
            s.connections = max(1, int(env["CKPTFETCH_CONNECTIONS"]))
        for key, attr in (("CKPTFETCH_TIMEOUT", "read_timeout"), ("CKPTFETCH_BACKOFF", "backoff")):
            try:
                setattr(s, attr, float(env[key]))
            except (KeyError, ValueError):
                pass
        if "CKPTFETCH_TIMEOUT" in env:
            s.connect_timeout = min(s.connect_timeout, s.read_timeout)
        return s


def make_session(pool_size: int = 8) -> requests.Session:
    """One pooled session for every download of a run.

    Proxies and CA bundles come from requests' usual environment variables
    (HTTPS_PROXY, REQUESTS_CA_BUNDLE, ...), as `trust_env` is left on.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"  # bytes as stored, so ranges and sizes mean what they say
    return session


def partial_paths(target: Path) -> tuple[Path, Path]:
    """The partial file and its sidecar for `target`."""
    return target.with_name(target.name + PARTIAL_SUFFIX), target.with_name(target.name + SIDECAR_SUFFIX)


class _Flusher:
    """Starts writing dirty pages back while the download runs, so the final fsync is short."""

    def __init__(self, fd: int, every: int = 64 << 20) -> None:
        self._fd = fd
        self._every = every
        self._pending = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                compat.start_writeback(self._fd)
            except OSError:
                return  # the final fsync reports real errors

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()


class _Retry(Exception):
    """A transient failure: back off and try again (resuming when possible)."""

    def __init__(self, message: str, wait: float | None = None, progressed: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.progressed = progressed


class _Restart(Exception):
    """Throw the partial away and start again from byte 0 at once."""


class _Again(Exception):
    """Try again at once, keeping the partial (e.g. after leaving segmented mode)."""


_HOST_SLOTS: dict[tuple[str, int], threading.Semaphore] = {}
_HOST_SLOTS_LOCK = threading.Lock()


def _host_slot(url: str, cap: int) -> threading.Semaphore:
    """The semaphore capping extra connections to the host of `url`."""
    key = (urlsplit(url).netloc, cap)
    with _HOST_SLOTS_LOCK:
        if key not in _HOST_SLOTS:
            _HOST_SLOTS[key] = threading.BoundedSemaphore(max(1, cap))
        return _HOST_SLOTS[key]


@dataclass
class _Sidecar:
    url: str
    validator: str | None = None
    total: int | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    pieces: list[list[int]] | None = None  # [start, end, pos] of a segmented download

    @classmethod
    def load(cls, path: Path) -> _Sidecar | None:
        try:
            data = json.loads(path.read_text())
            pieces = data.get("pieces")
            if pieces is not None and not (
                isinstance(data.get("total"), int)
                and all(isinstance(p, list) and len(p) == 3 and p[0] <= p[2] <= p[1] for p in pieces)
            ):
                return None
            return cls(data["url"], data.get("validator"), data.get("total"), data.get("expect", {}), pieces)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        # One fixed name: only the job's own thread saves (the file lock keeps other processes
        # out), and a temporary file left by a kill is overwritten or removed with the sidecar.
        tmp = _sidecar_tmp(path)
        doc: dict[str, Any] = {"url": _url_key(self.url), "validator": self.validator, "total": self.total, "expect": self.expect}
        if self.pieces is not None:
            doc["pieces"] = self.pieces
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no stray temporary file in DIR
            raise


def _sidecar_tmp(sidecar: Path) -> Path:
    return sidecar.with_name(sidecar.name + ".tmp")


def _url_key(url: str) -> str:
    """The URL as the sidecar stores it: readable, but a credential or token in it is only a digest."""
    shown = redact(url)
    if shown == url:
        return url
    return f"{shown}#sha256={hashlib.sha256(url.encode()).hexdigest()[:32]}"


fsync_dir = compat.fsync_dir


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Request:
    """One way to get a file's bytes, as a source resolver describes it.

    `headers` go with this URL alone (e.g. a token for one host; they are
    dropped when a redirect leaves that host). `on_html` handles an
    interstitial page (a confirmation form, say): it gets the page's text and
    URL and returns the URL to fetch next, or raises `DownloadError` with a
    plain explanation (quota exceeded, no permission...).

    `key` is the download's identity for resuming and for messages when the
    URL itself changes from run to run (a presigned URL whose signature and
    date differ each time); it defaults to `url`. `validator` is the file's
    current ETag when the source already knows it (from a HEAD): a partial
    saved under another validator is restarted, never resumed, even from a
    server that ignores `If-Range`.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    on_html: Callable[[str, str], str] | None = None
    key: str | None = None
    validator: str | None = None


Candidate = str | tuple[str, Mapping[str, str]] | Request
"""A URL to try, optionally with headers for it alone, or a full `Request`."""

MAX_HTML_HOPS = 3  # interstitial pages followed for one request
MAX_PAGE_BYTES = 2 << 20  # how much of an interstitial page is read


def download(
    urls: Sequence[Candidate],
    target: Path,
    *,
    hashes: Mapping[str, str] | None = None,
    size: int | None = None,
    algorithms: Sequence[str] = (),
    session: requests.Session | None = None,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
    label: str | None = None,
    headers: Mapping[str, str] | None = None,
    sync_dir: bool = True,
) -> dict[str, str]:
    """Download the first URL of `urls` that yields the right bytes to `target`.

    Each of `urls` is a URL or a (URL, headers) pair; `headers` apply to all.
    With `sync_dir=False` the caller fsyncs the target's folder itself (once
    for many files) to make the rename durable.
    Returns the hex digests computed on the way (every algorithm in `hashes`
    plus `algorithms`). Raises `HashMismatch` or `DownloadError` when no URL
    gives verified bytes, and `Interrupted` when `settings.cancel` is set.

    >>> download(["https://example.org/m.pth"], Path("models/m.pth"), hashes={"md5": "..."})  # doctest: +SKIP
    """
    hashes = {k: v.lower() for k, v in (hashes or {}).items()}
    settings = settings or Settings()
    reporter = reporter or NullReporter()
    own_session = session is None
    session = session or make_session(settings.connections + 1)
    label = label or target.name
    algos = list(dict.fromkeys([*hashes, *algorithms]))
    errors: list[DownloadError] = []
    try:
        for candidate in urls:
            if isinstance(candidate, str):
                candidate = Request(candidate)
            elif not isinstance(candidate, Request):
                candidate = Request(candidate[0], candidate[1])
            job = _Job(candidate.url, target, hashes, size, algos, session, settings, reporter, label,
                       {**(headers or {}), **candidate.headers}, key=candidate.key, validator=candidate.validator)
            job.sync_dir = sync_dir
            job.on_html = candidate.on_html
            try:
                return job.run()
            except DownloadError as exc:
                errors.append(exc)
                if len(urls) > 1:
                    reporter.note(label, f"{exc} Trying the next source.")
    finally:
        if own_session:
            session.close()
    if len(errors) == 1:
        raise errors[0]
    hm = [e for e in errors if isinstance(e, HashMismatch)]
    if hm and len(hm) == len(errors):
        raise hm[-1]
    detail = " ".join(f"[{i}] {e}" for i, e in enumerate(errors, 1))
    raise DownloadError(f"{label}: every source failed. {detail}")


class _Job:
    def __init__(
        self, url: str, target: Path, hashes: dict[str, str], size: int | None, algos: list[str],
        session: requests.Session, settings: Settings, reporter: Reporter, label: str, headers: dict[str, str],
        key: str | None = None, validator: str | None = None,
    ) -> None:
        self.key = key or url  # what the sidecar remembers: stable even when an interstitial page sends us on
        self.url = url  # what is fetched now
        self.shown = redact(self.key)
        self.known_validator = validator  # the source's word on the current version, if it has one
        self.on_html: Callable[[str, str], str] | None = None
        self.html_hops = 0
        self.target = target
        self.hashes = hashes
        self.size = size
        self.algos = algos
        self.session = session
        self.settings = settings
        self.reporter = reporter
        self.label = label
        self.headers = headers
        self.partial, self.sidecar_path = partial_paths(target)
        self.expect = {"hashes": hashes, "size": size}
        self.started = False
        self.segments = settings.connections > 1 and not url.startswith("file://")

    # -- the retry loop ----------------------------------------------------

    def run(self) -> dict[str, str]:
        failures = 0
        fresh_restarts = 0
        best = 0  # most bytes ever held: progress only counts when this grows
        while True:
            if self.settings.cancel.is_set():
                raise Interrupted()
            try:
                digests, resumed = self._attempt()
            except OSError as exc:
                raise self._write_failed(exc) from None
            except _Again:
                continue
            except _Restart:
                self._reset()
                fresh_restarts += 1
                if fresh_restarts > self.settings.retries + 2:
                    raise DownloadError(f"{self.label}: {self.shown} keeps changing under us; giving up.") from None
                continue
            except _Retry as exc:
                have = self.partial.stat().st_size if self.partial.exists() else 0
                if exc.progressed and have > best:
                    best, failures = have, 0
                else:
                    failures += 1
                if failures > self.settings.retries:
                    again = ("Run the same command again to resume." if self.partial.exists()
                             else "Check the network (or use --mirror), then run the same command again.")
                    raise DownloadError(
                        f"{self.label}: giving up on {self.shown} after {failures} failed attempts: {exc}. {again}"
                    ) from None
                wait = self._backoff(failures, exc.wait)
                self.reporter.note(self.label, f"{exc}; retrying in {wait:.1f}s")
                self._sleep(wait)
                continue
            problem = self._check(digests)
            if problem is not None:
                self._reset()
                if resumed and fresh_restarts == 0:
                    # The prefix came from an earlier run: it may be the culprit.
                    fresh_restarts += 1
                    self.reporter.note(self.label, "resumed download failed its check; downloading from scratch")
                    continue
                raise problem
            try:
                self._commit()
            except OSError as exc:
                raise self._write_failed(exc) from None
            return digests

    def _write_failed(self, exc: OSError) -> DownloadError:
        """A local write failed (disk full, read-only, permissions): say what and what to do.

        The partial and its sidecar are kept on purpose, so that once there is
        room the next run resumes instead of starting again.
        """
        try:
            kept = self.partial.stat().st_size if self.sidecar_path.exists() else 0
        except OSError:
            kept = 0
        where = f" The partial download ({kept} bytes) was kept at {self.partial} so the next run resumes; delete it to get the space back." if kept else ""
        return DownloadError(
            f"{self.label}: cannot write {self.partial}: {exc.strerror or exc}. "
            f"Free some space (or make the folder writable), or choose another --dest, then run the same command again; "
            f"files already in place were not touched.{where}"
        )

    def _check_space(self, needed: int, reclaim: bool) -> None:
        """Fail before downloading what the destination has no room for.

        With `reclaim`, the old partial is about to be replaced: its space counts as free.
        """
        try:
            old = compat.allocated_bytes(self.partial.stat()) if reclaim and self.partial.exists() else 0
            free = compat.free_bytes(self.target.parent) + old
        except OSError:
            return
        if needed > free:
            raise DownloadError(
                f"{self.label}: needs {needed} more bytes but {self.target.parent} has only {free} bytes free "
                "(no space left on device). Free some space or choose another --dest, then run the same command "
                "again; nothing was downloaded and files already in place were not touched."
            )

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.retry_after_max)
        base = min(self.settings.backoff_max, self.settings.backoff * (2 ** max(0, failures - 1)))
        return base * random.uniform(0.5, 1.5)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.settings.cancel.is_set():
                raise Interrupted()
            self.settings.sleep(min(left, 0.25))

    def _reset(self) -> None:
        _discard(self.partial, self.sidecar_path, _sidecar_tmp(self.sidecar_path))
        if self.started:
            self.reporter.start(self.label, self.size, 0)

    def _check(self, digests: dict[str, str]) -> DownloadError | None:
        got = self.partial.stat().st_size
        if self.size is not None and got != self.size:
            return DownloadError(
                f"{self.label}: size mismatch for {self.shown}: expected {self.size} bytes, got {got}. "
                "The download was discarded."
            )
        bad = first_mismatch(self.hashes, digests)
        if bad is not None:
            return HashMismatch(self.label, self.shown, *bad)
        return None

    sync_dir = True

    def _commit(self) -> None:
        _testhooks.point("download-before-rename")
        os.replace(self.partial, self.target)
        _testhooks.point("download-after-rename")
        if self.sync_dir:
            fsync_dir(self.target.parent)
        _discard(self.sidecar_path, _sidecar_tmp(self.sidecar_path))

    # -- one attempt -------------------------------------------------------

    def _resume_state(self) -> tuple[int, _Sidecar | None]:
        """How many bytes of the partial can be kept, and its sidecar."""
        side = _Sidecar.load(self.sidecar_path)
        try:
            have = self.partial.stat().st_size
        except FileNotFoundError:
            have = 0
        changed = bool(side and side.validator and self.known_validator and side.validator != self.known_validator)
        if side is None or side.url != _url_key(self.key) or side.expect != self.expect or changed:
            if have or side is not None:
                _discard(self.partial, self.sidecar_path)
            return 0, None
        if side.total is not None and have > side.total:
            _discard(self.partial, self.sidecar_path)
            return 0, None
        return have, side

    def _attempt(self) -> tuple[dict[str, str], bool]:
        if self.url.startswith("file://"):
            return self._attempt_file(), False
        offset, side = self._resume_state()
        if side is not None and side.pieces and side.total is not None:
            return self._segmented(side.total, side.validator, side.pieces, None), True
        if offset and side is not None and side.total == offset:
            # Complete but not yet checked (killed before the rename).
            return self._hash_prefix(offset), True
        validator = side.validator if side else None
        resumable = offset > 0 and (validator is not None or bool(self.hashes))
        if offset and not resumable:
            _discard(self.partial, self.sidecar_path)
            offset = 0
        headers = dict(self.headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        elif self.segments:
            # Probe: a server that takes ranges tells the size, and a big file gets pieces.
            headers["Range"] = f"bytes=0-{PROBE - 1}"
        resp = self._open(headers)
        with resp:
            status = resp.status_code
            if status == 416 and offset:
                raise _Restart()
            if status >= 400 or status not in (200, 206):
                if self.on_html is not None and _is_html(resp) and status < 500 and not is_retryable_status(status):
                    # The source may know what this error page means (e.g. Drive's "file not found");
                    # whatever it returns, a 4xx is not followed.
                    self._page_hook(resp)
                self._raise_for_status(resp)
            if _is_html(resp) and self.target.suffix.lower() not in (".html", ".htm"):
                if self.on_html is not None and self.html_hops < MAX_HTML_HOPS:
                    # An interstitial page (e.g. a "too large to scan" form): the source says where to go next.
                    self.url = urljoin(resp.url, self._page_hook(resp))
                    self.html_hops += 1
                    raise _Again()
                raise DownloadError(
                    f"{self.label}: {self.shown} answered with an HTML page instead of the file "
                    "(often a login, quota or error page). Nothing was written to the target; "
                    "check that the URL still points at the file."
                )
            total = _declared_total(resp, offset)
            probe_end = None
            if status == 206:
                cr = parse_content_range(resp.headers.get("Content-Range"))
                if cr is None or cr[0] != offset or (side and side.total not in (None, cr[2])):
                    self.segments = False
                    raise _Restart()
                total = cr[2]
                if not offset:
                    probe_end = cr[1] + 1
                elif self.known_validator and resp.headers.get("ETag") not in (None, self.known_validator):
                    raise _Restart()  # a server that ignored If-Range sent bytes of another version
            else:
                offset = 0  # 200: the server ignored the range or the validator changed
            if total is not None and self.size is not None and total != self.size:
                raise DownloadError(
                    f"{self.label}: {self.shown} serves {total} bytes but the manifest expects {self.size}. "
                    "Nothing was written to the target."
                )
            new_validator = if_range_validator(resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            self.target.parent.mkdir(parents=True, exist_ok=True)
            if total is not None:
                self._check_space(total - offset, reclaim=not offset)
            if probe_end is not None and total is not None and probe_end < total:
                pieces = plan_pieces(total, self.settings.connections, first_end=probe_end)
                _discard(self.partial)  # a fresh segmented download starts from an empty partial
                _Sidecar(self.key, new_validator, total, self.expect, pieces).save(self.sidecar_path)
                return self._segmented(total, new_validator, pieces, resp), False
            _Sidecar(self.key, new_validator, total, self.expect).save(self.sidecar_path)
            prefix = self._hash_prefix(offset, into=True) if offset else None
            hasher = ThreadedHasher(self.algos, base=prefix)
            try:
                self.reporter.start(self.label, total if total is not None else self.size, offset)
                self.started = True
                self._stream(resp, offset, total, hasher)
                return hasher.hexdigests(), offset > 0
            finally:
                hasher.close()

    def _segmented(self, total: int, validator: str | None, pieces: list[list[int]],
                   first: requests.Response | None) -> dict[str, str]:
        """Run a segmented download; on FallBack continue on one connection."""
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | compat.O_BINARY, 0o644)
        try:
            if os.fstat(fd).st_size != total:
                os.ftruncate(fd, total)
            flusher = _Flusher(fd)

            def advance(n: int) -> None:
                flusher.wrote(n)
                self.reporter.advance(self.label, n)

            def open_piece(headers: dict[str, str]) -> requests.Response:
                try:
                    return self._open({**self.headers, **headers})
                except _Retry as exc:
                    raise PieceRetry(str(exc), exc.wait) from None

            def check(resp: requests.Response) -> None:
                if resp.status_code >= 300:
                    try:
                        self._raise_for_status(resp)
                    except _Retry as exc:
                        raise PieceRetry(str(exc), exc.wait) from None

            hooks = Hooks(
                open=open_piece, check_status=check,
                save=lambda p: _Sidecar(self.key, validator, total, self.expect, p).save(self.sidecar_path),
                backoff=self._backoff, sleep=self._sleep, advance=advance,
                slot=lambda: _host_slot(self.url, self.settings.per_host),
            )
            done = sum(p[2] - p[0] for p in pieces)
            self.reporter.start(self.label, total, done)
            self.started = True
            seg = Segmented(fd, total, validator, pieces, self.algos, self.settings.connections,
                            self.settings.retries, self.settings.chunk_size, self.settings.cancel, hooks)
            try:
                digests = seg.run(first)
            except FallBack as exc:
                keep = contiguous(seg.pieces)
                os.ftruncate(fd, keep)
                _Sidecar(self.key, validator, total, self.expect).save(self.sidecar_path)
                self.reporter.rewind(self.label, sum(p[2] - p[0] for p in seg.pieces) - keep)
                self.reporter.note(self.label, f"{exc}; continuing on one connection")
                self.segments = False
                raise _Again() from None
            except DownloadError as exc:
                if str(exc).startswith(f"{self.label}:"):
                    raise
                # A piece gave up: say which file and URL, and that the next run resumes.
                raise DownloadError(
                    f"{self.label}: {exc} from {self.shown}. Run the same command again to resume; "
                    "the pieces already received are kept."
                ) from None
            finally:
                flusher.close()
            os.fsync(fd)
            return digests
        except OSError as exc:
            raise self._write_failed(exc) from None
        finally:
            os.close(fd)

    def _hash_prefix(self, length: int, into: bool = False) -> Any:
        hasher = MultiHasher(self.algos)
        with open(self.partial, "rb", buffering=0) as f:
            hasher.feed_file(f, length)
        if hasher.count != length:
            raise _Restart()
        return hasher if into else hasher.hexdigests()

    def _stream(self, resp: requests.Response, offset: int, total: int | None, hasher: ThreadedHasher) -> None:
        received = 0
        mode = "r+b" if offset else "wb"
        cancel = self.settings.cancel
        advance = self.reporter.advance
        try:
            with open(self.partial, mode, buffering=0) as f:
                f.seek(offset)
                f.truncate()
                flusher = _Flusher(f.fileno())
                try:
                    for chunk in resp.iter_content(self.settings.chunk_size):
                        if cancel.is_set():
                            raise Interrupted()
                        _write_all(f, chunk)
                        hasher.update(chunk)
                        n = len(chunk)
                        received += n
                        flusher.wrote(n)
                        advance(self.label, n)
                        if total is not None and offset + received > total:
                            raise _Restart()
                        if self.size is not None and offset + received > self.size:
                            # No Content-Length (or a decoded stream): stop at the pinned size, not at a full disk.
                            f.truncate(0)
                            raise DownloadError(
                                f"{self.label}: {self.shown} sent more than the {self.size} bytes the manifest "
                                "expects; the download was discarded and the target was not touched."
                            )
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.Timeout) as exc:
                    raise _Retry(f"connection lost after {offset + received} bytes ({_reason(exc)})",
                                 progressed=received > 0) from None
                finally:
                    flusher.close()
                os.fsync(f.fileno())
        except OSError as exc:
            raise self._write_failed(exc) from None
        if total is not None and offset + received < total:
            raise _Retry(f"connection closed early at {offset + received} of {total} bytes", progressed=received > 0)

    def _open(self, headers: dict[str, str]) -> requests.Response:
        """GET with redirects followed by hand: no https→http, no credentials to another host."""
        url = self.url
        headers = dict(headers)
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = self.session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
            except requests.exceptions.SSLError:
                # Retrying cannot fix a certificate: say so at once.
                raise DownloadError(
                    f"{self.label}: the TLS certificate of {urlsplit(url).hostname} could not be verified "
                    f"({redact(url)}). If the site uses a private CA, point REQUESTS_CA_BUNDLE at it."
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retry(f"cannot reach {urlsplit(url).hostname} ({_reason(exc)})") from None
            except (requests.RequestException, ValueError) as exc:
                # requests' own text for these repeats the URL or a header value (a token): not shown.
                raise DownloadError(
                    f"{self.label}: cannot request {redact(url)} ({type(exc).__name__}); check the URL and any token."
                ) from None
            if resp.is_redirect and "Location" in resp.headers:
                new = urljoin(url, resp.headers["Location"])
                resp.close()
                old_parts, new_parts = urlsplit(url), urlsplit(new)
                if old_parts.scheme == "https" and new_parts.scheme != "https":
                    raise DownloadError(
                        f"{self.label}: refused a redirect from https to {new_parts.scheme} ({redact(new)}); "
                        "ckptfetch never downgrades a secure URL."
                    )
                if new_parts.scheme not in ("http", "https"):
                    raise DownloadError(f"{self.label}: refused a redirect to {redact(new)}")
                if (old_parts.hostname, old_parts.port) != (new_parts.hostname, new_parts.port):
                    # Another origin gets no credentials: every header the caller added (a token
                    # for one host) is dropped; only the protocol's own ones go on.
                    headers = {k: v for k, v in headers.items() if k.lower() in _PROTOCOL_HEADERS}
                url = new
                continue
            return resp
        raise DownloadError(f"{self.label}: too many redirects from {self.shown}")

    def _page_hook(self, resp: requests.Response) -> str:
        """Hand an HTML page to the source's `on_html`; its errors are prefixed with the file's label."""
        assert self.on_html is not None
        page = resp.raw.read(MAX_PAGE_BYTES, decode_content=True).decode(resp.encoding or "utf-8", "replace")
        try:
            return self.on_html(page, resp.url)
        except DownloadError as exc:
            text = str(exc)
            if text.startswith(f"{self.label}: "):
                raise
            raise DownloadError(f"{self.label}: {text}") from None

    def _raise_for_status(self, resp: requests.Response) -> None:
        status = resp.status_code
        if is_retryable_status(status):
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            if wait is not None and wait > self.settings.retry_after_max:
                raise DownloadError(
                    f"{self.label}: {self.shown} answered HTTP {status} and asks to come back in {wait:.0f} s, "
                    f"longer than ckptfetch waits ({self.settings.retry_after_max:.0f} s). Run the same command "
                    "again later (or use --mirror); partial files are kept."
                )
            raise _Retry(f"HTTP {status} from {urlsplit(resp.url).hostname}", wait=wait)
        hint = {
            401: "the server wants credentials; check the URL or your token",
            403: "access is denied; the file may be private, gated or the link expired",
            404: "the file is not there; the URL may have moved",
            410: "the file was removed from that server",
        }.get(status, "the server refused the request")
        raise DownloadError(f"{self.label}: HTTP {status} for {self.shown}: {hint}.")

    # -- file:// -----------------------------------------------------------

    def _attempt_file(self) -> dict[str, str]:
        source = Path(url2pathname(urlsplit(self.url).path))
        try:
            src = open(source, "rb", buffering=0)
        except OSError as exc:
            raise DownloadError(f"{self.label}: cannot read {source}: {exc.strerror or exc}") from None
        hasher = MultiHasher(self.algos)
        with src:
            total = os.fstat(src.fileno()).st_size
            self.reporter.start(self.label, total, 0)
            self.started = True
            try:
                self.target.parent.mkdir(parents=True, exist_ok=True)
                with open(self.partial, "wb") as f:
                    while chunk := src.read(self.settings.chunk_size):
                        if self.settings.cancel.is_set():
                            raise Interrupted()
                        f.write(chunk)
                        hasher.update(chunk)
                        self.reporter.advance(self.label, len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise self._write_failed(exc) from None
        return hasher.hexdigests()


def _write_all(f: Any, data: bytes) -> None:
    """Write every byte: an unbuffered write may write only part (a filling disk, a signal).

    The hash follows the bytes received, so a short write left unnoticed
    would put a file at the target that differs from what was verified.
    """
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(28, "No space left on device")
        view = view[n:]


def _is_html(resp: requests.Response) -> bool:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _declared_total(resp: requests.Response, offset: int) -> int | None:
    length = resp.headers.get("Content-Length")
    if length is None or not length.isdigit() or resp.headers.get("Content-Encoding", "identity") != "identity":
        return None
    return int(length) + (offset if resp.status_code == 206 else 0)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Read timed out", "Connection reset", "Connection refused", "Connection aborted",
                   "IncompleteRead", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Max retries exceeded"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
