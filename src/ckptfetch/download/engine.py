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

import functools
import json
import os
import random
import sys
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

from .. import __version__
from ..errors import DownloadError, HashMismatch, Interrupted
from ..hashing import MultiHasher, ThreadedHasher, first_mismatch
from ..progress import NullReporter, Reporter
from ..urls import redact
from .resume import if_range_validator, is_retryable_status, parse_content_range, retry_after_seconds
from .segmented import PROBE, FallBack, Hooks, PieceRetry, Segmented, contiguous, plan_pieces

PARTIAL_SUFFIX = ".ckptfetch-partial"
SIDECAR_SUFFIX = ".ckptfetch-partial.json"
USER_AGENT = f"ckptfetch/{__version__} (+https://github.com/ckptfetch/ckptfetch) python-requests/{requests.__version__}"
MAX_REDIRECTS = 10


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


@functools.lru_cache(maxsize=1)
def _writeback_starter() -> Callable[[int], object]:
    """How the flusher asks the kernel to write a file's dirty pages back.

    On Linux, sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) starts writeback
    of the whole file and returns without waiting for the disk or committing
    the journal. An fdatasync every 64 MiB does both each time: on a 2-core VM
    it cost ~0.5 s of CPU per GiB and stalled the writers. Durability still
    comes from the one fsync before the rename; this is only a head start.
    Elsewhere (or if the call is missing) fdatasync is the fallback.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            fn.restype = ctypes.c_int
            return lambda fd: fn(fd, 0, 0, 2)  # 2 = SYNC_FILE_RANGE_WRITE; errors show at the final fsync
        except (OSError, AttributeError):
            pass
    return os.fdatasync


class _Flusher:
    """Starts writing dirty pages back while the download runs, so the final fsync is short."""

    def __init__(self, fd: int, every: int = 64 << 20) -> None:
        self._fd = fd
        self._start_writeback = _writeback_starter()
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
                self._start_writeback(self._fd)
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
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        doc: dict[str, Any] = {"url": self.url, "validator": self.validator, "total": self.total, "expect": self.expect}
        if self.pieces is not None:
            doc["pieces"] = self.pieces
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


Candidate = str | tuple[str, Mapping[str, str]]
"""A URL to try, optionally with headers for it alone (e.g. a token for one host)."""


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
            url, extra = (candidate, {}) if isinstance(candidate, str) else candidate
            job = _Job(url, target, hashes, size, algos, session, settings, reporter, label,
                       {**(headers or {}), **extra})
            job.sync_dir = sync_dir
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
    ) -> None:
        self.url = url
        self.shown = redact(url)
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
                raise Interrupted("interrupted; partial files were kept so the next run resumes")
            try:
                digests, resumed = self._attempt()
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
            self._commit()
            return digests

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
                raise Interrupted("interrupted; partial files were kept so the next run resumes")
            self.settings.sleep(min(left, 0.25))

    def _reset(self) -> None:
        _discard(self.partial, self.sidecar_path)
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
        os.replace(self.partial, self.target)
        if self.sync_dir:
            _fsync_dir(self.target.parent)
        _discard(self.sidecar_path)

    # -- one attempt -------------------------------------------------------

    def _resume_state(self) -> tuple[int, _Sidecar | None]:
        """How many bytes of the partial can be kept, and its sidecar."""
        side = _Sidecar.load(self.sidecar_path)
        try:
            have = self.partial.stat().st_size
        except FileNotFoundError:
            have = 0
        if side is None or side.url != self.url or side.expect != self.expect:
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
                self._raise_for_status(resp)
            if _is_html(resp) and self.target.suffix.lower() not in (".html", ".htm"):
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
            else:
                offset = 0  # 200: the server ignored the range or the validator changed
            if total is not None and self.size is not None and total != self.size:
                raise DownloadError(
                    f"{self.label}: {self.shown} serves {total} bytes but the manifest expects {self.size}. "
                    "Nothing was written to the target."
                )
            new_validator = if_range_validator(resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            self.target.parent.mkdir(parents=True, exist_ok=True)
            if probe_end is not None and total is not None and probe_end < total:
                pieces = plan_pieces(total, self.settings.connections, first_end=probe_end)
                _discard(self.partial)  # a fresh segmented download starts from an empty partial
                _Sidecar(self.url, new_validator, total, self.expect, pieces).save(self.sidecar_path)
                return self._segmented(total, new_validator, pieces, resp), False
            _Sidecar(self.url, new_validator, total, self.expect).save(self.sidecar_path)
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
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
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
                save=lambda p: _Sidecar(self.url, validator, total, self.expect, p).save(self.sidecar_path),
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
                _Sidecar(self.url, validator, total, self.expect).save(self.sidecar_path)
                self.reporter.rewind(self.label, sum(p[2] - p[0] for p in seg.pieces) - keep)
                self.reporter.note(self.label, f"{exc}; continuing on one connection")
                self.segments = False
                raise _Again() from None
            finally:
                flusher.close()
            os.fsync(fd)
            return digests
        except OSError as exc:
            raise DownloadError(
                f"{self.label}: cannot write {self.partial}: {exc.strerror or exc}. "
                "Free some space or choose another --dest; files already in place were not touched."
            ) from None
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
                            raise Interrupted("interrupted; partial files were kept so the next run resumes")
                        f.write(chunk)
                        hasher.update(chunk)
                        n = len(chunk)
                        received += n
                        flusher.wrote(n)
                        advance(self.label, n)
                        if total is not None and offset + received > total:
                            raise _Restart()
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.Timeout) as exc:
                    raise _Retry(f"connection lost after {offset + received} bytes ({_reason(exc)})",
                                 progressed=received > 0) from None
                finally:
                    flusher.close()
                os.fsync(f.fileno())
        except OSError as exc:
            raise DownloadError(
                f"{self.label}: cannot write {self.partial}: {exc.strerror or exc}. "
                "Free some space or choose another --dest; files already in place were not touched."
            ) from None
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
            except requests.exceptions.InvalidURL as exc:
                raise DownloadError(f"{self.label}: invalid URL {redact(url)}: {exc}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retry(f"cannot reach {urlsplit(url).hostname} ({_reason(exc)})") from None
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
                    for secret in [k for k in headers if k.lower() in ("authorization", "cookie", "proxy-authorization")]:
                        del headers[secret]
                url = new
                continue
            return resp
        raise DownloadError(f"{self.label}: too many redirects from {self.shown}")

    def _raise_for_status(self, resp: requests.Response) -> None:
        status = resp.status_code
        if is_retryable_status(status):
            raise _Retry(f"HTTP {status} from {urlsplit(resp.url).hostname}",
                         wait=retry_after_seconds(resp.headers.get("Retry-After")))
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
                            raise Interrupted("interrupted")
                        f.write(chunk)
                        hasher.update(chunk)
                        self.reporter.advance(self.label, len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise DownloadError(f"{self.label}: cannot write {self.partial}: {exc.strerror or exc}") from None
        return hasher.hexdigests()


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
