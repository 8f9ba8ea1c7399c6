"""The one download engine: partial files, Range resume, retries, safe redirects."""

from .engine import Candidate, Request, Settings, download, make_session

__all__ = ["Candidate", "Request", "Settings", "download", "make_session"]
