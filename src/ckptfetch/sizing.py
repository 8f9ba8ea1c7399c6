"""What a plan will cost: the size of each file to fetch, learned from its source when the manifest does not say.

For each file whose size nothing pins, the first source `get` would use is
asked, all files at once and within a short budget: a Hub file's size comes
from the Hub's metadata (the HEAD the Hub source makes anyway), a plain URL's
from a HEAD request. Nothing is retried and nothing waits past the budget; a
size that is not learned in time stays unknown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests

from .download.http import Lost, is_html, open_url
from .download.request import Request
from .errors import CkptfetchError
from .manifest import Archive, FileEntry
from .sources import Context, resolve
from .sourcing import Fetcher
from .urls import redact

BUDGET = 2.0  # seconds for learning every size, at once
MAX_PROBES = 32  # requests at once: many small files on a far server must not make the plan slow


def learn_sizes(entries: Iterable[FileEntry], archives: Iterable[Archive], fetcher: Fetcher,
                budget: float = BUDGET) -> dict[str, int]:
    """Sizes learned from the sources, by file path (and `archive:NAME`); what was not learned in time is absent."""
    jobs: dict[str, tuple[list[str], str]] = {}
    for e in entries:
        if e.integrity.size is None and e.urls and not e.folder:
            jobs[e.path] = (list(e.urls), e.path)
    for a in archives:
        if a.integrity.size is None:
            jobs[f"archive:{a.name}"] = (list(a.urls), f"{a.name} (archive)")
    found: dict[str, int] = {}
    if not jobs:
        return found
    lock = threading.Lock()
    slots = threading.Semaphore(MAX_PROBES)
    timeout = min(budget, fetcher.settings.connect_timeout)

    def probe(key: str, urls: list[str], label: str) -> None:
        with slots:
            size = _size_of(urls, label, fetcher, timeout)
        if size is not None:
            with lock:
                found[key] = size

    threads = [threading.Thread(target=probe, args=(k, *v), daemon=True, name="size-probe") for k, v in jobs.items()]
    for t in threads:
        t.start()
    deadline = threading.Event()
    timer = threading.Timer(budget, deadline.set)
    timer.daemon = True
    timer.start()
    for t in threads:
        while t.is_alive() and not deadline.is_set() and not fetcher.settings.cancel.is_set():
            t.join(0.05)
    timer.cancel()
    with lock:
        return dict(found)


def _size_of(urls: list[str], label: str, fetcher: Fetcher, timeout: float) -> int | None:
    """The size the first source of a file declares, or None (unknown, unreachable, too slow: no matter)."""
    try:
        first = fetcher.candidates(urls, label)[0]
        found = resolve(first, Context(fetcher.session, fetcher.settings, label))
    except (CkptfetchError, requests.RequestException, ValueError):
        return None
    fetcher.resolved[first] = found  # the download then asks the source (a Hub's HEAD) no second time
    if found.size is not None:
        return found.size
    if not found.requests:
        return None
    if found.requests[0].url.startswith("file://"):
        try:
            return Path(url2pathname(urlsplit(found.requests[0].url).path)).stat().st_size
        except OSError:
            return None
    return _head_size(found.requests[0], fetcher, label, timeout)


def _head_size(req: Request, fetcher: Fetcher, label: str, timeout: float) -> int | None:
    """Content-Length of a HEAD, redirects followed under the engine's policy."""
    try:
        resp = open_url(fetcher.session, req.url, req.headers, fetcher.settings, label, redact(req.url), "HEAD", timeout)
    except CkptfetchError:
        return None
    if isinstance(resp, Lost):
        return None
    with resp:
        length = resp.headers.get("Content-Length", "")
        if resp.status_code != 200 or not length.isdigit() or is_html(resp):
            return None
        return int(length)


__all__ = ["MAX_PROBES", "learn_sizes"]
