"""Small pure helpers for resuming: Content-Range, If-Range, Retry-After."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes START-END/TOTAL` as (start, end, total); None when malformed.

    >>> parse_content_range("bytes 100-199/1000")
    (100, 199, 1000)
    """
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if end < start or (total is not None and end >= total):
        return None
    return start, end, total


def if_range_validator(etag: str | None, last_modified: str | None) -> str | None:
    """The value to send in If-Range: a strong ETag, else Last-Modified."""
    if etag and not etag.startswith("W/"):
        return etag
    if last_modified:
        return last_modified
    return None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """Transient HTTP statuses (README Guarantee 3): 408, 429 and 5xx."""
    return status in RETRYABLE_STATUS or 500 <= status <= 599
