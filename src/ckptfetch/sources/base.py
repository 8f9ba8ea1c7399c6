"""The types every source shares: what a resolver may use (`Context`), what it answers (`Resolved`), itself (`Source`).

Source plugins import this module, never the package `__init__`, which only
holds the ordered table of sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..download import Request, Settings

if TYPE_CHECKING:
    import requests


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


__all__ = ["Context", "Request", "Resolved", "Source"]
