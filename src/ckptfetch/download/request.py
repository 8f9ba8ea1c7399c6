"""What a source asks the engine to fetch (`Request`), in the forms a resolver may give it (`Candidate`).

Apart from `http.py` so that sources and plans can name requests without
importing an HTTP library; requests loads when the first byte must move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


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


def as_request(candidate: Candidate) -> Request:
    if isinstance(candidate, Request):
        return candidate
    if isinstance(candidate, str):
        return Request(candidate)
    return Request(candidate[0], candidate[1])


__all__ = ["Candidate", "Request", "as_request"]
