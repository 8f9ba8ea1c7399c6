"""The one download engine: partial files, Range resume, retries, safe redirects.

The names below load on first use: `request`, `settings` and `partial`
(what sources, plans and extraction name) never import requests; `session`,
`http`, `engine`, `segmented` and `stream` do, when a byte must move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Candidate", "Request", "Settings", "download", "make_session"]

_HOME = {"Candidate": "request", "Request": "request", "Settings": "settings", "make_session": "session",
         "download": "engine"}

if TYPE_CHECKING:
    from .engine import download
    from .request import Candidate, Request
    from .session import make_session
    from .settings import Settings


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
