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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import DownloadError
from ..urls import redact

if TYPE_CHECKING:
    import requests

    from ..download import Request, Settings


@dataclass
class Context:
    """What a resolver may use: the run's pooled session and engine settings, and the file's name for messages."""

    session: requests.Session
    settings: Settings
    label: str | None = None  # the target path, so a source's errors name the file the user asked for


@dataclass
class Resolved:
    """How to fetch one file, and what the source knows about it."""

    requests: list[Request]
    hashes: dict[str, str] = field(default_factory=dict)  # pins learned from the source, checked like the manifest's
    size: int | None = None
    meta: dict[str, str] = field(default_factory=dict)  # e.g. {"commit": ..., "etag": ...}


class Source(Protocol):
    """A resolver for one family of URLs."""

    name: str

    def matches(self, url: str) -> bool:
        """Whether this source handles `url`."""
        ...

    def resolve(self, url: str, ctx: Context) -> Resolved:
        """The requests for `url`; raises `DownloadError` with a plain message when it cannot."""
        ...


def _sources() -> Sequence[Source]:
    from .dropbox import DropboxSource
    from .gdrive import GoogleDriveSource
    from .github import GitHubSource
    from .http import PlainSource
    from .huggingface import HubSource
    from .s3 import S3Source

    return (HubSource(), S3Source(), GoogleDriveSource(), DropboxSource(), GitHubSource(), PlainSource())


def source_for(url: str) -> Source:
    """The first source that claims `url`."""
    for source in _sources():
        if source.matches(url):
            return source
    raise DownloadError(f"no source knows how to fetch {redact(url)}")


def resolve(url: str, ctx: Context) -> Resolved:
    """Resolve `url` with the source that claims it."""
    return source_for(url).resolve(url, ctx)


__all__ = ["Context", "Resolved", "Source", "resolve", "source_for"]
