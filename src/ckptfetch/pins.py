"""The one rule for "do these bytes match their pins?", shared by every path that checks a file.

`get`'s plan, the run's re-checks, `verify` (hashing, or answering from the
verified-state cache) and the fast `verify` entry path all come here. Pure
functions of sizes and digests, with no I/O and no imports, so the fast path
can use them without loading the library. A verdict is (ok, detail); callers
turn it into their status words (`checking` into `status.Check`).
"""

from __future__ import annotations

from collections.abc import Mapping

Verdict = tuple[bool, str]
"""(whether the file matches, why not / "unpinned" / "")."""

STRENGTH = ("sha512", "sha256", "sha1", "md5")
"""Algorithms, strongest first: a mismatch is reported in the strongest one."""


def first_mismatch(expected: Mapping[str, str], actual: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The (algo, expected, actual) of the first differing digest, strongest first.

    An expected digest shorter than the algorithm's is a prefix (a weak pin
    read from a file name) and matches every digest that starts with it.

    >>> first_mismatch({"sha256": "f37072fd"}, {"sha256": "f37072fd" + "0" * 56}) is None
    True
    """
    for algo in STRENGTH:
        if algo in expected and algo in actual:
            want = expected[algo].lower()
            if not want or not actual[algo].lower().startswith(want):
                return algo, expected[algo], actual[algo]  # an empty pin never matches
    return None


def judge_size(size_on_disk: int, pinned: int | None) -> Verdict | None:
    """A failed verdict when the size is wrong; None when it is fine (or not pinned)."""
    if pinned is not None and size_on_disk != pinned:
        return False, f"size {size_on_disk}, expected {pinned}"
    return None


def judge(hashes: Mapping[str, str], digests: Mapping[str, str] | None) -> Verdict | None:
    """The verdict for a file of the right size whose `digests` are known.

    None when `digests` lacks an algorithm `hashes` pins (hash the file, then ask again).

    >>> judge({"md5": "ab"}, {"md5": "ac"})
    (False, 'md5 ac, expected ab')
    """
    if not hashes:
        return True, "unpinned"
    if digests is None or not all(a in digests for a in hashes):
        return None
    bad = first_mismatch(hashes, digests)
    if bad is not None:
        return False, f"{bad[0]} {bad[2]}, expected {bad[1]}"
    return True, ""


__all__ = ["STRENGTH", "Verdict", "first_mismatch", "judge", "judge_size"]
