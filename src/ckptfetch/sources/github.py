"""GitHub file links: `blob/` pages become the raw file.

`https://github.com/O/R/blob/REF/PATH` is the HTML page showing a file;
`https://github.com/O/R/raw/REF/PATH` is the file itself. GitHub redirects
`raw/` to raw.githubusercontent.com, or to its LFS media host for files kept in
Git LFS (where raw.githubusercontent.com would serve the small pointer file
instead), so `raw/` is the form we ask for. `raw/` links and
raw.githubusercontent.com links are fetched as they are.

>>> raw_url("https://github.com/o/r/blob/v1.0/weights/m.pth?raw=false")
'https://github.com/o/r/raw/v1.0/weights/m.pth'
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .base import Context, Request, Resolved

_BLOB = re.compile(r"^/([^/]+)/([^/]+)/blob/(.+)$")


def raw_url(url: str) -> str | None:
    """The raw-file URL for a github.com `blob/` link, or None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != "https" or (parts.hostname or "") not in ("github.com", "www.github.com"):
        return None
    m = _BLOB.match(parts.path)
    if not m:
        return None
    owner, repo, rest = m.groups()
    # ?raw=true / ?plain=1 only matter to the page; the raw file needs none of them.
    return urlunsplit(("https", "github.com", f"/{owner}/{repo}/raw/{rest}", "", ""))


class GitHubSource:
    """github.com `blob/` links, fetched as raw files."""

    name = "github"

    def matches(self, url: str) -> bool:
        return raw_url(url) is not None

    def resolve(self, url: str, ctx: Context) -> Resolved:
        raw = raw_url(url)
        assert raw is not None
        return Resolved([Request(raw)])
