"""The one download engine: partial files, Range resume, retries, safe redirects."""

from .engine import Settings, download, make_session

__all__ = ["Settings", "download", "make_session"]
