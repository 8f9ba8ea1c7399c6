"""Download one URL into a verified file: the job loop.

Bytes go to a partial file beside the target, with a small JSON sidecar that
remembers the URL, the validator (ETag or Last-Modified) and the total size
(`partial.py`). An interrupted download resumes with `Range` + `If-Range`; a
server that ignores the range, or whose validator changed, gets a clean
restart. Hashes are computed while the bytes stream in (`stream.py`, or
`segmented.py` over several connections); a resumed download re-reads its
existing prefix once. Nothing reaches the target until size and hashes match,
then it is fsynced and renamed atomically.

Each attempt ends with an outcome, and `states.decide` says what comes next
(commit, again at once, back off, restart from byte 0, give up): the table is
in `states.py`. Exceptions are for real errors only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests

from .. import compat
from ..errors import DownloadError, HashMismatch, Interrupted
from ..failover import first_success
from ..hashing import ThreadedHasher
from ..pins import first_mismatch
from ..progress import NullReporter, Reporter
from ..urls import redact
from . import http, retry, stream
from .flusher import Flusher
from .http import HTML_SUFFIXES, MAX_HTML_HOPS, Lost, html_refusal
from .partial import Partial
from .request import Candidate, Request, as_request
from .resume import if_range_validator, is_retryable_status, parse_content_range
from .segmented import PROBE, Hooks, Pieces, Segmented, contiguous, plan_pieces
from .session import make_session
from .settings import Settings
from .states import Action, Counters, Outcome, Step, decide

__all__ = ["Candidate", "Request", "Settings", "download", "make_session"]


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
    pins = {k: v.lower() for k, v in (hashes or {}).items()}
    settings = settings or Settings()
    reporter = reporter or NullReporter()
    own_session = session is None
    session = session or make_session(settings.connections + 1)
    label = label or target.name
    algos = tuple(dict.fromkeys([*pins, *algorithms]))
    extra = dict(headers or {})

    def attempt(candidate: Candidate) -> dict[str, str]:
        request = as_request(candidate)
        config = JobConfig(request, target, pins, size, algos, label, {**extra, **request.headers}, sync_dir)
        return _Job(config, session, settings, reporter).run()

    def next_source(exc: DownloadError) -> None:
        if len(urls) > 1:
            reporter.note(label, f"{exc} Trying the next source.")

    try:
        return first_success(urls, attempt, label, next_source)
    finally:
        if own_session:
            session.close()


@dataclass(frozen=True)
class JobConfig:
    """What one job downloads, from where, and what the bytes must match."""

    request: Request
    target: Path
    hashes: Mapping[str, str]  # lower-case hex digests the bytes must have
    size: int | None  # the size the bytes must have
    algos: tuple[str, ...]  # digests to compute on the way (those in `hashes` and more)
    label: str  # how messages name the file
    headers: Mapping[str, str] = field(default_factory=dict)  # for this request alone (merged with the caller's)
    sync_dir: bool = True  # fsync the target's folder after the rename


class _Job:
    """One source for one target: attempts until the bytes verify, or an error."""

    def __init__(self, config: JobConfig, session: requests.Session, settings: Settings, reporter: Reporter) -> None:
        self.config = config
        self.session = session
        self.settings = settings
        self.reporter = reporter
        self.label = config.label
        key = config.request.key or config.request.url  # stable even when an interstitial page sends us on
        self.shown = redact(key)
        self.partial = Partial(config.target, key, {"hashes": dict(config.hashes), "size": config.size},
                               config.request.validator)
        # What changes from attempt to attempt:
        self.url = config.request.url  # what is fetched now
        self.html_hops = 0
        self.started = False  # the reporter was told about this file
        self.segments = settings.connections > 1 and not self.url.startswith("file://")

    # -- the loop -------------------------------------------------------------

    def run(self) -> dict[str, str]:
        counters = Counters()
        while True:
            if self.settings.cancel.is_set():
                raise Interrupted()
            try:
                step = _verified(self._attempt(), self.partial.path, self.config, self.shown)
            except OSError as exc:
                raise self.partial.write_failed(self.label, exc) from None
            if step.one_stream or step.outcome is Outcome.NO_RANGES:
                self.segments = False
            action, counters = decide(step, self.partial.size(), counters, self.settings.retries)
            if action is Action.COMMIT:
                try:
                    self.partial.commit(self.config.sync_dir)
                except OSError as exc:
                    raise self.partial.write_failed(self.label, exc) from None
                assert step.digests is not None
                return step.digests
            self._carry_out(action, step, counters)

    def _carry_out(self, action: Action, step: Step, counters: Counters) -> None:
        """Everything but the commit: restart, back off, or give up with a message that says what to do."""
        if step.outcome in (Outcome.STALE, Outcome.MISMATCH):
            self._reset()  # these bytes are of no use, whatever comes next
        if action is Action.GIVE_UP:
            raise self._give_up(step, counters)
        if action is Action.RESTART and step.outcome is Outcome.MISMATCH:
            self.reporter.note(self.label, "resumed download failed its check; downloading from scratch")
        elif action is Action.BACKOFF:
            wait = retry.delay(counters.failures, step.wait, self.settings)
            self.reporter.note(self.label, f"{step.reason}; retrying in {wait:.1f}s")
            retry.pause(wait, self.settings)

    def _give_up(self, step: Step, counters: Counters) -> DownloadError:
        if step.problem is not None:
            return step.problem
        if step.outcome is Outcome.STALE:
            return DownloadError(f"{self.label}: {self.shown} keeps changing under us; giving up.")
        again = ("Run the same command again to resume." if self.partial.path.exists()
                 else "Check the network (or use --mirror), then run the same command again.")
        return DownloadError(
            f"{self.label}: giving up on {self.shown} after {counters.failures} failed attempts: {step.reason}. {again}"
        )

    def _reset(self) -> None:
        self.partial.forget()
        if self.started:
            self.reporter.start(self.label, self.config.size, 0)

    # -- one attempt ------------------------------------------------------------

    def _attempt(self) -> Step:
        if self.url.startswith("file://"):
            self.started = True
            source = Path(url2pathname(urlsplit(self.url).path))
            return stream.copy_file(source, self.partial.path, list(self.config.algos), self.settings,
                                    self.reporter, self.label)
        with http.host_slot(self.url, self.settings):  # this connection, and the first of a segmented download
            return self._attempt_http()

    def _attempt_http(self) -> Step:
        offset, side = self.partial.resumable()
        if side is not None and side.pieces and side.total is not None:
            return self._segmented(side.total, side.validator, side.pieces, None, resumed=True)
        if offset and side is not None and side.total == offset:
            return self._already_complete(offset)  # killed before the rename
        validator = side.validator if side else None
        if offset and validator is None and not self.config.hashes:
            self.partial.forget()  # neither the server nor a hash could tell these bytes are still right
            offset = 0
        resp = self._open(self._headers(offset, validator))
        if isinstance(resp, Lost):
            return Step(Outcome.LOST, resp.reason, resp.wait)
        with resp:
            return self._answer(resp, offset, side.total if side else None)

    def _headers(self, offset: int, validator: str | None) -> dict[str, str]:
        headers = dict(self.config.headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        elif self.segments:
            # Probe: a server that takes ranges tells the size, and a big file gets pieces.
            headers["Range"] = f"bytes=0-{PROBE - 1}"
        return headers

    def _open(self, headers: dict[str, str]) -> requests.Response | Lost:
        return http.open_url(self.session, self.url, headers, self.settings, self.label, self.shown)

    def _already_complete(self, length: int) -> Step:
        prefix = stream.hash_prefix(self.partial.path, length, list(self.config.algos))
        if prefix is None:
            return Step(Outcome.STALE, "the partial file shrank")
        return Step(Outcome.COMPLETE, resumed=True, digests=prefix.hexdigests())

    def _answer(self, resp: requests.Response, offset: int, saved_total: int | None) -> Step:
        """What to do with the response to a request from `offset`."""
        status = resp.status_code
        if status == 416 and offset:
            return Step(Outcome.STALE, "the server no longer has the bytes asked for")
        if status not in (200, 206):
            if self.config.request.on_html is not None and http.is_html(resp) and status < 500 \
                    and not is_retryable_status(status):
                # The source may know what this error page means (e.g. Drive's "file not found");
                # whatever it returns, a 4xx is not followed.
                http.ask_source(self.config.request.on_html, resp, self.label)
            lost = http.refused(resp, self.settings, self.label, self.shown)
            return Step(Outcome.LOST, lost.reason, lost.wait)
        if http.is_html(resp) and self.config.target.suffix.lower() not in HTML_SUFFIXES:
            return self._interstitial(resp)
        total = http.declared_total(resp, offset)
        probe_end = None
        if status == 206:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != offset or saved_total not in (None, cr[2]):
                return Step(Outcome.STALE, "the server sent another range than asked", one_stream=True)
            total = cr[2]
            if not offset:
                probe_end = cr[1] + 1
            elif self.partial.known_validator and resp.headers.get("ETag") not in (None, self.partial.known_validator):
                return Step(Outcome.STALE, "a server that ignored If-Range sent bytes of another version")
        else:
            offset = 0  # 200: the server ignored the range or the validator changed
        return self._receive(resp, offset, total, probe_end)

    def _receive(self, resp: requests.Response, offset: int, total: int | None, probe_end: int | None) -> Step:
        """Take the body: in pieces when the probe showed a big file, else on this one connection."""
        if total is not None and self.config.size is not None and total != self.config.size:
            raise DownloadError(
                f"{self.label}: {self.shown} serves {total} bytes but the manifest expects {self.config.size}. "
                "Nothing was written to the target."
            )
        validator = if_range_validator(resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
        self.config.target.parent.mkdir(parents=True, exist_ok=True)
        if total is not None:
            self.partial.check_space(self.label, total - offset, reclaim=not offset)
        if probe_end is not None and total is not None and probe_end < total:
            pieces = plan_pieces(total, self.settings.connections, first_end=probe_end)
            self.partial.drop_bytes()  # a fresh segmented download starts from an empty partial
            self.partial.save(validator, total, pieces)
            return self._segmented(total, validator, pieces, resp, resumed=False)
        self.partial.save(validator, total)
        prefix = None
        if offset:
            prefix = stream.hash_prefix(self.partial.path, offset, list(self.config.algos))
            if prefix is None:
                return Step(Outcome.STALE, "the partial file shrank")
        hasher = ThreadedHasher(self.config.algos, base=prefix)
        try:
            self.reporter.start(self.label, total if total is not None else self.config.size, offset)
            self.started = True
            return stream.receive(resp, self.partial.path, offset, total, self.config.size, hasher, self.settings,
                                  self.reporter, self.label, self.shown)
        finally:
            hasher.close()

    def _interstitial(self, resp: requests.Response) -> Step:
        """An HTML page where the file was expected: the source may say where to go next."""
        if self.config.request.on_html is not None and self.html_hops < MAX_HTML_HOPS:
            # An interstitial page (e.g. a "too large to scan" form): the source says where to go next.
            self.url = urljoin(resp.url, http.ask_source(self.config.request.on_html, resp, self.label))
            self.html_hops += 1
            return Step(Outcome.CONTINUE, "followed an interstitial page")
        raise DownloadError(html_refusal(self.label, self.shown))

    # -- several connections ------------------------------------------------------

    def _segmented(self, total: int, validator: str | None, pieces: list[list[int]],
                   first: requests.Response | None, resumed: bool) -> Step:
        """Run a segmented download; on NO_RANGES keep the contiguous prefix for one stream to go on from."""
        fd = os.open(self.partial.path, os.O_RDWR | os.O_CREAT | compat.O_BINARY, 0o644)
        try:
            if os.fstat(fd).st_size != total:
                os.ftruncate(fd, total)
            flusher = Flusher(fd)
            self.reporter.start(self.label, total, sum(p[2] - p[0] for p in pieces))
            self.started = True
            seg = Segmented(fd, validator, Pieces(total, pieces), list(self.config.algos), self.settings,
                            self._hooks(flusher, validator, total))
            try:
                step = seg.run(first)
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
            if step.outcome is Outcome.NO_RANGES:
                keep = contiguous(seg.pieces.list)
                os.ftruncate(fd, keep)
                self.partial.save(validator, total)
                self.reporter.rewind(self.label, seg.pieces.done() - keep)
                self.reporter.note(self.label, f"{step.reason}; continuing on one connection")
                return step
            os.fsync(fd)
            return replace(step, resumed=resumed)
        finally:
            os.close(fd)

    def _hooks(self, flusher: Flusher, validator: str | None, total: int) -> Hooks:
        def advance(n: int) -> None:
            flusher.wrote(n)
            self.reporter.advance(self.label, n)

        s = self.settings
        return Hooks(
            open=lambda headers: self._open({**self.config.headers, **headers}),
            refused=lambda resp: http.refused(resp, s, self.label, self.shown),
            save=lambda pieces: self.partial.save(validator, total, pieces),
            pause=lambda failures, wait: retry.pause(retry.delay(failures, wait, s), s),
            advance=advance,
            slot=lambda: http.host_slots(self.url, s.per_host),
        )


def _verified(step: Step, partial: Path, config: JobConfig, shown: str) -> Step:
    """A COMPLETE step whose size or hashes are wrong becomes MISMATCH."""
    if step.outcome is not Outcome.COMPLETE:
        return step
    got = partial.stat().st_size
    problem: DownloadError | None = None
    if config.size is not None and got != config.size:
        problem = DownloadError(
            f"{config.label}: size mismatch for {shown}: expected {config.size} bytes, got {got}. "
            "The download was discarded."
        )
    elif (bad := first_mismatch(config.hashes, step.digests or {})) is not None:
        problem = HashMismatch(config.label, shown, *bad)
    elif not config.hashes and config.target.suffix.lower() not in HTML_SUFFIXES and _starts_like_html(partial):
        # Nothing pins these bytes, and a login, quota or error page is the usual wrong answer,
        # whatever Content-Type it came with.
        problem = DownloadError(html_refusal(config.label, shown))
    if problem is None:
        return step
    return replace(step, outcome=Outcome.MISMATCH, reason=str(problem), problem=problem)


_HTML_STARTS = (b"<!doctype html", b"<html")


def _starts_like_html(path: Path) -> bool:
    """Whether a file's first bytes are an HTML page's (after a byte order mark and white space)."""
    with open(path, "rb") as f:
        head = f.read(512)
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f").lower()
    return head.startswith(_HTML_STARTS)
