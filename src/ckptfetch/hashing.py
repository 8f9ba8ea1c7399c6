"""Hash algorithms, streaming multi-hashers and whole-file hashing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
"""Supported algorithms and the length of their hex digests."""

STRENGTH = ("sha512", "sha256", "sha1", "md5")
CHUNK = 1 << 20


class MultiHasher:
    """Feeds the same bytes to several hash objects at once.

    >>> h = MultiHasher(["md5", "sha256"]); h.update(b"x"); sorted(h.hexdigests())
    ['md5', 'sha256']
    """

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._hashes = {name: hashlib.new(name) for name in dict.fromkeys(algorithms)}
        self.count = 0

    def update(self, data: bytes | memoryview) -> None:
        for h in self._hashes.values():
            h.update(data)
        self.count += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self._hashes.items()}

    def feed_file(self, f: BinaryIO, limit: int | None = None) -> None:
        """Read `f` from its position (up to `limit` bytes) into the hashes."""
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        remaining = limit
        while remaining is None or remaining > 0:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            n = f.readinto(view[:want])  # type: ignore[attr-defined]
            if not n:
                break
            self.update(view[:n])
            if remaining is not None:
                remaining -= n


def hash_file(path: str | os.PathLike[str], algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of a whole file for each algorithm, in one read."""
    hasher = MultiHasher(algorithms)
    with open(path, "rb", buffering=0) as f:
        hasher.feed_file(f)
    return hasher.hexdigests()


def first_mismatch(expected: Mapping[str, str], actual: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The (algo, expected, actual) of the first differing digest, strongest first."""
    for algo in STRENGTH:
        if algo in expected and algo in actual and expected[algo].lower() != actual[algo].lower():
            return algo, expected[algo], actual[algo]
    return None


def is_hex_digest(algo: str, value: str) -> bool:
    """True when `value` is a full hex digest for `algo`."""
    length = ALGORITHMS.get(algo)
    return length is not None and len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)


def strongest(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The strongest (algo, digest) pair in `hashes`, or None."""
    for algo in STRENGTH:
        if algo in hashes:
            return algo, hashes[algo]
    return None


def file_digest_matches(path: Path, hashes: Mapping[str, str], size: int | None) -> bool:
    """Whether the file at `path` has the given size and every given hash."""
    try:
        if size is not None and path.stat().st_size != size:
            return False
    except OSError:
        return False
    if not hashes:
        return path.is_file()
    return first_mismatch(hashes, hash_file(path, hashes)) is None


class ThreadedHasher:
    """Hashes on background threads (one per algorithm) so hashing overlaps I/O.

    hashlib releases the GIL on large buffers, so the socket reader, the file
    writer and each hash run on their own core. At most `max_pending` bytes
    wait in the queues, so memory stays flat.

    >>> h = ThreadedHasher(["md5"]); h.update(b"abc"); h.hexdigests()["md5"]
    '900150983cd24fb0d6963f7d28e17f72'
    """

    def __init__(self, algorithms: Iterable[str], base: MultiHasher | None = None, max_pending: int = 8 << 20) -> None:
        import queue
        import threading

        names = list(dict.fromkeys(algorithms))
        if base is not None:
            # Continue from a hasher already fed with a prefix.
            self._hashes = dict(base._hashes)
            self.count = base.count
        else:
            self._hashes = {name: hashlib.new(name) for name in names}
            self.count = 0
        slots = max(2, max_pending // CHUNK)
        self._queues: list[queue.Queue[bytes | memoryview | None]] = []
        self._threads: list[threading.Thread] = []
        self._digests: dict[str, str] | None = None
        for name, h in self._hashes.items():
            q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=slots)
            t = threading.Thread(target=self._run, args=(h, q), name=f"hash-{name}", daemon=True)
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    @staticmethod
    def _run(h: Any, q: Any) -> None:
        while (item := q.get()) is not None:
            h.update(item)

    def update(self, data: bytes | memoryview) -> None:
        """Queue `data` (which must not be modified afterwards) for every hash."""
        for q in self._queues:
            q.put(data)
        self.count += len(data)

    def close(self) -> None:
        """Stop the threads after the queued data is hashed."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues = []

    def hexdigests(self) -> dict[str, str]:
        if self._digests is None:
            self.close()
            self._digests = {name: h.hexdigest() for name, h in self._hashes.items()}
        return self._digests
