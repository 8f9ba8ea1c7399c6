"""Hash algorithms, streaming multi-hashers and whole-file hashing."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from collections.abc import Iterable
from typing import Any, BinaryIO

ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
"""Supported algorithms and the length of their hex digests."""

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


def is_hex_digest(algo: str, value: str) -> bool:
    """True when `value` is a full hex digest for `algo`."""
    length = ALGORITHMS.get(algo)
    return length is not None and len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)


class ThreadedHasher:
    """Hashes on background threads (one per algorithm) so hashing overlaps I/O.

    hashlib releases the GIL on large buffers, so the socket reader, the file
    writer and each hash run on their own core. At most `max_pending` bytes
    wait in the queues, so memory stays flat. The first `INLINE` bytes are
    hashed by the caller: a small file is hashed sooner than threads start.

    >>> h = ThreadedHasher(["md5"]); h.update(b"abc"); h.hexdigests()["md5"]
    '900150983cd24fb0d6963f7d28e17f72'
    """

    INLINE = 8 << 20  # bytes hashed by the caller before the threads start

    def __init__(self, algorithms: Iterable[str], base: MultiHasher | None = None, max_pending: int = 8 << 20) -> None:
        names = list(dict.fromkeys(algorithms))
        if base is not None:
            # Continue from a hasher already fed with a prefix.
            self._hashes = dict(base._hashes)
            self.count = base.count
        else:
            self._hashes = {name: hashlib.new(name) for name in names}
            self.count = 0
        self._slots = max(2, max_pending // CHUNK)
        self._queues: list[queue.Queue[bytes | memoryview | None]] = []
        self._threads: list[threading.Thread] = []
        self._digests: dict[str, str] | None = None
        self._inline = self.count + self.INLINE  # hashed here up to this many bytes

    def _start(self) -> None:
        for name, h in self._hashes.items():
            q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=self._slots)
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
        if not self._threads:
            if self.count + len(data) <= self._inline:
                for h in self._hashes.values():
                    h.update(data)
                self.count += len(data)
                return
            self._start()
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


# --- hashes that URLs carry by convention ------------------------------------------

# torch hub (`HASH_REGEX = r'-([a-f0-9]*)\.'`, checked as sha256.startswith) and OpenMMLab
# (`publish_model.py` appends `-{sha256[:8]}`, releases often add `_YYYYMMDD`): a
# lowercase hex run of 8+ digits after the last `-`, right before the extension.
_NAME_PREFIX = re.compile(r"-([0-9a-f]{8,64})(?:_\d{8})?(?:\.[A-Za-z0-9]+)+$")
_FULL_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_from_url(url: str) -> tuple[str, str] | None:
    """A sha256 (or a prefix of one) that `url` carries by convention, with where it came from.

    A path segment of exactly 64 lowercase hex digits is a full sha256 (OpenAI
    CLIP's `.../models/<sha256>/ViT-B-16.pt`); otherwise a file name ending in
    `-<8+ hex digits>[_YYYYMMDD].ext` carries a prefix (torch hub, OpenMMLab).
    A run of digits only is a date or a counter, never taken for a hash.

    >>> sha256_from_url("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    ('f37072fd', 'file name')
    >>> sha256_from_url("https://h/rtmw3d-l_8xb64_cocktail14-384x288-794dbc78_20240626.pth")
    ('794dbc78', 'file name')
    >>> sha256_from_url("https://h/model-20240626.pth") is None
    True
    """
    from urllib.parse import unquote, urlsplit

    path = urlsplit(url).path
    segments = [unquote(s) for s in path.split("/") if s]
    for seg in segments[:-1]:
        if _FULL_SHA256.match(seg):
            return seg, "URL path"
    if not segments:
        return None
    m = _NAME_PREFIX.search(segments[-1])
    if m is None:
        return None
    prefix = m.group(1)
    if prefix.isdigit() or not any(c.isdigit() for c in prefix):
        return None  # all digits: a date or a step count; all letters: a word
    return prefix, "file name"
