"""Google Drive share links: resolved to Drive's download request.

A share link (`https://drive.google.com/file/d/ID/view?usp=sharing`,
`open?id=ID`, `uc?id=ID`, `uc?export=download&id=ID`, the same on
docs.google.com, or drive.usercontent.google.com's `download?id=ID`) becomes `https://drive.google.com/uc?export=download&id=ID`.
Drive answers small files with the bytes; for large ones it shows a page
("can't scan this file for viruses") with a form whose action and hidden
inputs make the real download URL. The engine hands that page to `on_html`,
which returns the URL to fetch next, or explains a quota, permission or
not-found page in one sentence.

>>> file_id("https://drive.google.com/file/d/1AbC-_x9zQw/view?usp=sharing")
'1AbC-_x9zQw'
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

from ..errors import DownloadError
from .base import Context, Request, Resolved

HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
DOWNLOAD = "https://drive.google.com/uc?export=download&id={id}"
_ID = r"[A-Za-z0-9_-]{10,}"
# /file/d/ID/..., /file/u/0/d/ID/...: the viewer and edit pages of a file
_FILE_PATH = re.compile(rf"^/file(?:/u/\d+)?/d/({_ID})(?:/|$)")
# ?id=ID on /open, /uc, /u/0/uc, and drive.usercontent.google.com's /download
_ID_PATHS = re.compile(r"^(?:/u/\d+)?/(?:open|uc|download)/?$")


def file_id(url: str) -> str | None:
    """The Drive file id a share link names, or None if it names no single file."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in HOSTS:
        return None
    m = _FILE_PATH.match(parts.path)
    if m:
        return m.group(1)
    if parts.path.rstrip("/").endswith("/download") and parts.hostname != "drive.usercontent.google.com":
        return None
    if _ID_PATHS.match(parts.path):
        ids = parse_qs(parts.query).get("id", [])
        if ids and re.fullmatch(_ID, ids[0]):
            return ids[0]
    return None


class _Page(HTMLParser):
    """Collects what a Drive interstitial page offers: the download form and the error texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.in_form = False
        self.title = ""
        self.errors: list[str] = []
        self._capture: str | None = None  # "title" | "error" while inside one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form" and self.action is None:
            self.action = a.get("action", "")
            self.in_form = True
        elif tag == "input" and self.in_form and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "title":
            self._capture = "title"
        elif "uc-error-subcaption" in a.get("class", "").split() or "uc-error-caption" in a.get("class", "").split():
            self._capture = "error"
            self.errors.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        if tag in ("title", "p", "div", "span"):
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture == "title":
            self.title += data
        elif self._capture == "error":
            self.errors[-1] += data


def confirmation_url(page: str, page_url: str) -> str | None:
    """The real download URL an interstitial page points at, or None.

    Handles the current form (`<form id="download-form" action=...>` with
    hidden id/export/confirm/uuid inputs), the older
    `href="/uc?export=download&confirm=..."` link and a `"downloadUrl"` in
    the page's JSON, as gdown does.
    """
    parsed = _Page()
    parsed.feed(page)
    if parsed.action is not None:
        action = urljoin(page_url, html.unescape(parsed.action))
        parts = urlsplit(action)
        query = [*parse_qs(parts.query, keep_blank_values=True).items()]
        pairs = [(k, v) for k, vs in query for v in vs if k not in {n for n, _ in parsed.fields}]
        return urlunsplit(parts._replace(query=urlencode(pairs + parsed.fields)))
    m = re.search(r'href="(/uc\?export=download[^"]+)"', page)
    if m:
        return urljoin(page_url, html.unescape(m.group(1)))
    m = re.search(r'"downloadUrl":("[^"]+")', page)
    if m:
        try:
            return str(json.loads(m.group(1)))
        except ValueError:
            return None
    return None


def _is_error_page(page: str) -> bool:
    lower = page.lower()
    return "uc-error-subcaption" in lower or "too many users have viewed or downloaded" in lower


def explain(page: str, page_url: str, fid: str) -> str:
    """One sentence saying why Drive showed `page` instead of the file, and what to do."""
    parsed = _Page()
    parsed.feed(page)
    text = " ".join([parsed.title, *parsed.errors])
    lower = (text + " " + page[:200_000]).lower()
    viewer = f"https://drive.google.com/file/d/{fid}/view"
    host = urlsplit(page_url).hostname or ""
    if "too many users have viewed or downloaded" in lower or "quota exceeded" in lower:
        return (f"Google Drive's download quota for file {fid} is used up for now (\"Too many users have viewed or "
                f"downloaded this file recently\"); try again in a few hours (up to 24), or open {viewer} in a "
                "browser, make a copy in your own Drive and use that copy's link.")
    if host == "accounts.google.com" or "you need access" in lower or "servicelogin" in lower or "request access" in lower:
        return (f"Google Drive file {fid} is not shared publicly (Drive asks to sign in or request access); "
                "ask its owner to share it as \"Anyone with the link\", or download it in a browser and put it in place.")
    if "not found" in lower or "does not exist" in lower or "no longer available" in lower or "deleted" in lower:
        return (f"Google Drive has no file {fid} (it was deleted or the link is wrong); "
                "check the link on the project's page and update the manifest.")
    return (f"Google Drive answered file {fid} with a page ({' '.join(parsed.title.split()) or 'untitled'}) "
            f"instead of the file; open {viewer} in a browser to see why.")


class GoogleDriveSource:
    """drive.google.com / docs.google.com links that name one file."""

    name = "gdrive"

    def matches(self, url: str) -> bool:
        return file_id(url) is not None

    def resolve(self, url: str, ctx: Context) -> Resolved:
        fid = file_id(url)
        assert fid is not None  # matches() said so

        def on_html(page: str, page_url: str) -> str:
            # An error caption wins over any link on the same page; only Google's own pages may send us on.
            host = urlsplit(page_url).hostname or ""
            if not _is_error_page(page) and (host == "google.com" or host.endswith(".google.com")):
                nxt = confirmation_url(page, page_url)
                if nxt is not None:
                    return nxt
            raise DownloadError(explain(page, page_url, fid))

        return Resolved([Request(DOWNLOAD.format(id=fid), on_html=on_html)], meta={"gdrive_id": fid})
