"""Plain URLs (http, https, file): fetched as they are."""

from __future__ import annotations

from .base import Context, Request, Resolved


class PlainSource:
    """Any http://, https:// or file:// URL no other source claimed."""

    name = "plain"

    def matches(self, url: str) -> bool:
        return url.startswith(("http://", "https://", "file://"))

    def resolve(self, url: str, ctx: Context) -> Resolved:
        return Resolved([Request(url)])
