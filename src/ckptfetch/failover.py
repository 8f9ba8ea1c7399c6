"""Trying sources in order and collecting their errors: the one failover policy.

The run tries a file's URLs (mirrors first) and the engine tries the requests
a source resolved a URL into; both go through `first_success`, so "which
error does the user see" has one answer: the only error when there was one
source; the last hash mismatch when every source served wrong bytes (the
digests say it all); otherwise every source's error, numbered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import DownloadError, HashMismatch

T = TypeVar("T")
C = TypeVar("C")


def first_success(
    candidates: Iterable[C],
    attempt: Callable[[C], T],
    label: str,
    on_failure: Callable[[DownloadError], None] | None = None,
) -> T:
    """`attempt(c)` for each candidate in order until one returns; `DownloadError` when none does.

    Errors other than `DownloadError` (an interrupt, a bug) stop at once.
    `on_failure` hears each error that leads to the next candidate.
    """
    errors: list[DownloadError] = []
    for candidate in candidates:
        try:
            return attempt(candidate)
        except DownloadError as exc:
            errors.append(exc)
            if on_failure is not None:
                on_failure(exc)
    raise combined(errors, label)


def combined(errors: list[DownloadError], label: str) -> DownloadError:
    """The one error to report for a file whose every source failed."""
    if not errors:
        return DownloadError(f"{label}: no source to fetch it from")
    if len(errors) == 1:
        return errors[0]
    if all(isinstance(e, HashMismatch) for e in errors):
        return errors[-1]
    return DownloadError(f"{label}: every source failed. " + " ".join(f"[{i}] {e}" for i, e in enumerate(errors, 1)))


__all__ = ["combined", "first_success"]
