"""HTTP for the engine: opening a request under the redirect policy, and what a status means.

Redirects are followed by hand: never from https to anything else, and a
redirect to another origin (host or port) drops every header the caller added
(a token for one host). A transient failure (a connection that could not be
made, a 5xx, a 429) is returned as `Lost`, for the engine to decide on; a
failure no retry can fix is a `DownloadError` with a plain explanation.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ..errors import DownloadError, Interrupted
from ..urls import redact
from . import retry
from .resume import is_retryable_status, retry_after_seconds
from .settings import Settings

MAX_REDIRECTS = 10
MAX_HTML_HOPS = 3  # interstitial pages followed for one request
MAX_PAGE_BYTES = 2 << 20  # how much of an interstitial page is read
_PROTOCOL_HEADERS = frozenset({"range", "if-range", "accept", "accept-encoding", "user-agent"})
CONNECTION_ERRORS = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout)


@dataclass(frozen=True)
class Lost:
    """A transient failure: worth another attempt after a backoff (`wait`: the server's Retry-After)."""

    reason: str
    wait: float | None = None


def open_url(session: requests.Session, url: str, headers: Mapping[str, str], settings: Settings,
             label: str, shown: str, method: str = "GET", timeout: float | None = None) -> requests.Response | Lost:
    """GET (streamed) or HEAD `url` with redirects followed by hand: no https→http, no credentials to another
    host. `timeout` replaces the settings' connect and read timeouts (a quick question, such as a size)."""
    headers = dict(headers)
    read_timeout = settings.read_timeout
    if settings.speed_limit:
        read_timeout = min(read_timeout, settings.speed_time)  # nothing at all for that long is slower still
    timeouts = (settings.connect_timeout, read_timeout) if timeout is None else (timeout, timeout)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = session.request(method, url, headers=headers, stream=method == "GET", timeout=timeouts,
                                   allow_redirects=False)
        except requests.exceptions.SSLError:
            # Retrying cannot fix a certificate: say so at once.
            raise DownloadError(
                f"{label}: the TLS certificate of {urlsplit(url).hostname} could not be verified "
                f"({redact(url)}). If the site uses a private CA, point REQUESTS_CA_BUNDLE at it."
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Lost(f"cannot reach {urlsplit(url).hostname} ({reason(exc)})")
        except (requests.RequestException, ValueError) as exc:
            # requests' own text for these repeats the URL or a header value (a token): not shown.
            raise DownloadError(
                f"{label}: cannot request {redact(url)} ({type(exc).__name__}); check the URL and any token."
            ) from None
        if not (resp.is_redirect and "Location" in resp.headers):
            return resp
        new = urljoin(url, resp.headers["Location"])
        resp.close()
        headers = _redirected_headers(url, new, headers, label)
        url = new
    raise DownloadError(f"{label}: too many redirects from {shown}")


def _redirected_headers(old: str, new: str, headers: dict[str, str], label: str) -> dict[str, str]:
    """The headers that may follow a redirect from `old` to `new`; refuses a downgrade or an odd scheme."""
    old_parts, new_parts = urlsplit(old), urlsplit(new)
    if old_parts.scheme == "https" and new_parts.scheme != "https":
        raise DownloadError(
            f"{label}: refused a redirect from https to {new_parts.scheme} ({redact(new)}); "
            "ckptfetch never downgrades a secure URL."
        )
    if new_parts.scheme not in ("http", "https"):
        raise DownloadError(f"{label}: refused a redirect to {redact(new)}")
    if (old_parts.hostname, old_parts.port) != (new_parts.hostname, new_parts.port):
        # Another origin gets no credentials: every header the caller added (a token
        # for one host) is dropped; only the protocol's own ones go on.
        return {k: v for k, v in headers.items() if k.lower() in _PROTOCOL_HEADERS}
    return headers


_HINTS = {
    401: "the server wants credentials; check the URL or your token",
    403: "access is denied; the file may be private, gated or the link expired",
    404: "the file is not there; the URL may have moved",
    410: "the file was removed from that server",
}


def refused(resp: requests.Response, settings: Settings, label: str, shown: str) -> Lost:
    """What a status other than 200/206 means: `Lost` when worth retrying, else a `DownloadError`."""
    status = resp.status_code
    if is_retryable_status(status):
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        if retry.waits_too_long(wait, settings):
            raise DownloadError(
                f"{label}: {shown} answered HTTP {status} and asks to come back in {wait:.0f} s, "
                f"longer than ckptfetch waits ({settings.retry_after_max:.0f} s). Run the same command "
                "again later (or use --mirror); partial files are kept."
            )
        return Lost(f"HTTP {status} from {urlsplit(resp.url).hostname}", wait)
    hint = _HINTS.get(status, "the server refused the request")
    raise DownloadError(f"{label}: HTTP {status} for {shown}: {hint}.")


HTML_SUFFIXES = (".html", ".htm")  # targets that may be HTML pages


def html_refusal(label: str, shown: str) -> str:
    return (f"{label}: {shown} answered with an HTML page instead of the file "
            "(often a login, quota or error page). Nothing was written to the target; "
            "check that the URL still points at the file.")


def is_html(resp: requests.Response) -> bool:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def read_page(resp: requests.Response) -> str:
    """The text of an HTML page (its first `MAX_PAGE_BYTES`)."""
    return resp.raw.read(MAX_PAGE_BYTES, decode_content=True).decode(resp.encoding or "utf-8", "replace")


def ask_source(on_html: Callable[[str, str], str] | None, resp: requests.Response, label: str) -> str:
    """Hand an HTML page to the source's `on_html`: the URL to go on with; its errors get the file's label."""
    assert on_html is not None
    try:
        return on_html(read_page(resp), resp.url)
    except DownloadError as exc:
        text = str(exc)
        if text.startswith(f"{label}: "):
            raise
        raise DownloadError(f"{label}: {text}") from None


def declared_total(resp: requests.Response, offset: int) -> int | None:
    """The whole file's size from Content-Length, when it says the bytes as stored."""
    length = resp.headers.get("Content-Length")
    if length is None or not length.isdigit() or resp.headers.get("Content-Encoding", "identity") != "identity":
        return None
    return int(length) + (offset if resp.status_code == 206 else 0)


class Body:
    """The body of a response, each chunk as it arrives: what the socket has, up to `settings.chunk_size`.

    Nothing waits in memory for a fixed amount to arrive, so what arrived is
    written at once (a kill loses little). A connection slower than
    `settings.speed_limit` bytes/s over `settings.speed_time` seconds (as
    curl's `--speed-limit`/`--speed-time`) ends the iteration early, with
    `too_slow` saying so; a connection that sends nothing at all for that long
    times out (see `open_url`).
    """

    def __init__(self, resp: requests.Response, settings: Settings) -> None:
        self.resp = resp
        self.settings = settings
        self.too_slow: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        raw, size = self.resp.raw, self.settings.chunk_size
        decode = self.resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        read1 = getattr(raw, "read1", None)
        if read1 is None:  # urllib3 < 2: no read1; whole chunks as before
            yield from self.resp.iter_content(size)
            return
        limit, window = self.settings.speed_limit, self.settings.speed_time
        since, got = time.monotonic(), 0
        try:
            while data := read1(size, decode_content=decode):
                yield data
                if limit:
                    got += len(data)
                    now = time.monotonic()
                    if now - since >= window:
                        if got < limit * (now - since):
                            self.too_slow = (f"the connection ran slower than {limit} bytes/s for {window:g} s "
                                             f"({got} bytes in {now - since:.1f} s)")
                            return
                        since, got = now, 0
        # What requests' iter_content raises for the same failures.
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.ConnectionError(exc) from exc
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from exc


def reason(exc: BaseException) -> str:
    """A short, secret-free reason for a connection failure."""
    text = str(exc)
    for marker in ("Read timed out", "Connection reset", "Connection refused", "Connection aborted",
                   "IncompleteRead", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Max retries exceeded"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__



_HOST_SLOTS: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_HOST_SLOTS_LOCK = threading.Lock()


def host_slots(url: str, cap: int) -> threading.BoundedSemaphore:
    """The one semaphore capping connections to the host of `url` (`cap` at once), across a run.

    Every connection takes a slot while it is open: the one request of a small
    file, the probe of a big one, each piece of a segmented download.
    """
    key = (urlsplit(url).netloc, cap)
    with _HOST_SLOTS_LOCK:
        if key not in _HOST_SLOTS:
            _HOST_SLOTS[key] = threading.BoundedSemaphore(max(1, cap))
        return _HOST_SLOTS[key]


@contextlib.contextmanager
def host_slot(url: str, settings: Settings) -> Iterator[None]:
    """Hold one connection slot for the host of `url`; waiting for it stops on a cancel."""
    slots = host_slots(url, settings.per_host)
    while not slots.acquire(timeout=0.2):
        if settings.cancel.is_set():
            raise Interrupted()
    try:
        yield
    finally:
        slots.release()
