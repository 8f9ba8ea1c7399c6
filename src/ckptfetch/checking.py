"""Checking a file on disk against its pins: stat, then the verified-state cache, then hashing.

The decision itself (size, then digests) is `pins.judge`; this module finds
the digests, hashing only what the cache cannot answer, and remembers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .hashing import hash_file
from .pins import Verdict, judge, judge_size
from .state import VerifiedCache
from .status import Check


def needed_algorithms(expect_hashes: dict[str, str], extra: Sequence[str] = ()) -> list[str]:
    """The digests to compute for a file: those its pins name (sha256 when none), plus `extra`."""
    return list(dict.fromkeys([*(list(expect_hashes) or ["sha256"]), *extra]))


def file_digests(
    dest: Path, rel: str, algorithms: Sequence[str], cache: VerifiedCache | None, trust_cache: bool = True
) -> dict[str, str] | None:
    """Digests of DIR/rel for `algorithms`, from the cache when the file is unchanged; None if unreadable."""
    path = dest / rel
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if cache is not None and trust_cache:
        cached = cache.lookup(rel, st)
        if all(a in cached for a in algorithms):
            return cached
    try:
        digests = hash_file(path, algorithms)
        st_after = path.stat()
    except OSError:
        return None
    if cache is not None and VerifiedCache.key(st) == VerifiedCache.key(st_after):
        cache.store(rel, st_after, digests)
    return digests


def _as_check(verdict: Verdict) -> tuple[Check, str]:
    return (Check.OK if verdict[0] else Check.FAILED), verdict[1]


def check_cached(dest: Path, rel: str, hashes: dict[str, str], size: int | None,
                 cache: VerifiedCache | None) -> tuple[Check, str] | None:
    """The answer without hashing (missing, wrong size, or settled by the cache); None when hashing is needed."""
    try:
        st = (dest / rel).stat()
    except FileNotFoundError:
        return Check.MISSING, ""
    except OSError:
        return None
    if (bad := judge_size(st.st_size, size)) is not None:
        return _as_check(bad)
    if cache is None or not hashes:
        return None
    verdict = judge(hashes, cache.lookup(rel, st))
    return _as_check(verdict) if verdict is not None else None


def check_file(
    dest: Path, rel: str, hashes: dict[str, str], size: int | None, cache: VerifiedCache | None,
    trust_cache: bool = True,
) -> tuple[Check, str]:
    """(OK | FAILED | MISSING, detail) for DIR/rel against its pins."""
    path = dest / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check.MISSING, ""
    except OSError as exc:
        return Check.FAILED, f"cannot read: {exc.strerror}"
    if not path.is_file():
        return Check.FAILED, "not a regular file"
    if (bad := judge_size(st.st_size, size)) is not None:
        return _as_check(bad)
    verdict = judge(hashes, file_digests(dest, rel, list(hashes), cache, trust_cache) if hashes else {})
    return _as_check(verdict) if verdict is not None else (Check.FAILED, "cannot read")


__all__ = ["check_cached", "check_file", "file_digests", "needed_algorithms"]
