"""Sources: small resolvers that turn a manifest URL into plain HTTP requests.

Each source recognises its own URLs (`matches`) and answers `resolve` with a
`Resolved`: the requests the one download engine tries in order, plus what the
source learned about the file on the way (pins such as the sha256 a hub
declares, and metadata such as a resolved commit). No source has a download
loop of its own; whatever it needs to fetch goes through `ckptfetch.download`.

Sources are tried in the order of `SOURCES`; `plain` (http, https, file) is
last and takes whatever no other source claimed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DownloadError
from ..urls import redact
from .base import Context, Resolved, Source
from .dropbox import DropboxSource
from .gdrive import GoogleDriveSource
from .github import GitHubSource
from .http import PlainSource
from .huggingface import HubSource
from .s3 import S3Source

SOURCES: Sequence[Source] = (HubSource(), S3Source(), GoogleDriveSource(), DropboxSource(), GitHubSource(), PlainSource())
"""Tried in this order; the first whose `matches` claims a URL resolves it."""


def source_for(url: str) -> Source:
    """The first source that claims `url`."""
    for source in SOURCES:
        if source.matches(url):
            return source
    raise DownloadError(f"no source knows how to fetch {redact(url)}")


def resolve(url: str, ctx: Context) -> Resolved:
    """Resolve `url` with the source that claims it."""
    return source_for(url).resolve(url, ctx)


__all__ = ["SOURCES", "Context", "Resolved", "Source", "resolve", "source_for"]
