"""Dropbox share links: the file, not its preview page.

`https://www.dropbox.com/s/KEY/name?dl=0`, `/scl/fi/KEY/name?rlkey=...&dl=0`
(or with no `dl` at all) answer with an HTML preview; `dl=1` answers with a
redirect to the content host (`*.dl.dropboxusercontent.com`), which the engine
follows. Other parameters, `rlkey` above all, are kept as they are.

>>> download_url("https://www.dropbox.com/scl/fi/abc/m.zip?rlkey=xyz&dl=0")
'https://www.dropbox.com/scl/fi/abc/m.zip?rlkey=xyz&dl=1'
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import DownloadError
from .base import Context, Request, Resolved

HOSTS = ("www.dropbox.com", "dropbox.com")
SHARE_PREFIXES = ("/s/", "/sh/", "/scl/fi/", "/scl/fo/")


def is_share_link(url: str) -> bool:
    parts = urlsplit(url)
    return (parts.scheme == "https" and (parts.hostname or "") in HOSTS
            and parts.path.startswith(SHARE_PREFIXES))


def download_url(url: str) -> str:
    """`url` asking for the bytes (`dl=1`), other parameters untouched."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "raw" and v == "1" for k, v in pairs):
        return url  # raw=1 already serves the bytes
    if any(k == "dl" for k, _ in pairs):
        pairs = [(k, "1" if k == "dl" else v) for k, v in pairs]
    else:
        pairs.append(("dl", "1"))
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="/:")))


def _on_html(page: str, page_url: str) -> str:
    # dl=1 never answers with a page when the link works: say what it probably means.
    lower = page.lower()
    if "deleted" in lower or "not found" in lower or "doesn't exist" in lower or "does not exist" in lower:
        raise DownloadError(f"the Dropbox link {page_url} points at nothing any more (deleted or moved); "
                            "check the project's page for a new link and update the manifest.")
    raise DownloadError(f"Dropbox answered {page_url} with a web page instead of the file (the link may have "
                        "expired, or need a sign-in); open it in a browser to see why.")


class DropboxSource:
    """www.dropbox.com share links (files and shared folders, which download as a zip)."""

    name = "dropbox"

    def matches(self, url: str) -> bool:
        return is_share_link(url)

    def resolve(self, url: str, ctx: Context) -> Resolved:
        return Resolved([Request(download_url(url), on_html=_on_html)])
