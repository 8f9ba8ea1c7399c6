"""Hashing a file that arrives in pieces, in order, exactly once, while it downloads.

The hasher follows the contiguous written prefix. Bytes written right at the
front of what is hashed come straight from the worker that received them (the
usual case for a fast server, where one connection is at the front); bytes
written ahead of it by other connections are read back from the file when
the prefix reaches them, through a map of each block (no copy), else with
pread. The front worker waits when `QUEUE_BYTES` are queued: past that, the
hash (one core) is the bottleneck, and the worker's connection may as well
slow down.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable

from .. import compat
from ..hashing import MultiHasher

HASH_CHUNK = 4 << 20  # bytes read back and hashed at a time
QUEUE_BYTES = 8 << 20  # bytes handed over by the front worker that may wait for the hasher


class PrefixReader:
    """Reads the written prefix back for the hasher: through a read-only map of the file, else with pread.

    Hashing straight from a map saves copying every byte into a buffer first.
    Each block is mapped and unmapped on its own, so mapped pages never pile up
    in the process's memory.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.maps = True  # until mapping fails once (a file system without maps)
        self._buf = memoryview(bytearray(0))

    def feed(self, hasher: MultiHasher, start: int, end: int) -> bool:
        """Hash bytes [start, end) of the file; False when the file is shorter (someone truncated it)."""
        if os.fstat(self.fd).st_size < end:  # a map read past the end would be a crash (SIGBUS), not an error
            return False
        if self.maps:
            base = start - start % mmap.ALLOCATIONGRANULARITY
            try:
                block = mmap.mmap(self.fd, end - base, access=mmap.ACCESS_READ, offset=base)
            except (OSError, ValueError, OverflowError):
                self.maps = False
            else:
                with block, memoryview(block) as view, view[start - base:] as part:
                    hasher.update(part)
                return True
        if len(self._buf) < HASH_CHUNK:
            self._buf = memoryview(bytearray(HASH_CHUNK))
        while start < end:
            n = compat.pread_into(self.fd, self._buf[: min(HASH_CHUNK, end - start)], start)
            if n <= 0:
                return False
            hasher.update(self._buf[:n])
            start += n
        return True


class PrefixHasher:
    """Hashes [0, total) in order as the prefix grows (see the module's docstring).

    `lock` is the pieces' condition and `prefix()` (called with it held) the
    end of the contiguous written prefix; `stop` ends the hashing early. Each
    side wakes the other only when it sleeps: a busy hand-over costs no
    system call.
    """

    def __init__(self, fd: int, total: int, algos: list[str], lock: threading.Condition,
                 prefix: Callable[[], int], stop: threading.Event) -> None:
        self.total = total
        self.hasher = MultiHasher(algos)
        self.reader = PrefixReader(fd)
        self.lock = lock
        self.prefix = prefix
        self.stop = stop
        self.hashed = 0  # bytes hashed
        self.next = 0  # bytes hashed, queued or being read back
        self.queue: list[bytes] = []
        self.queued = 0
        self.idle = False  # the hasher sleeps, waiting for bytes
        self.full = False  # the front worker sleeps, waiting for room in the queue
        self.waited = False  # the front worker waited for the hasher since the last look

    def wrote(self, at: int, data: bytes) -> None:
        """`data` was just written at `at` (call with the lock held, after the prefix took it in).

        Bytes right at the front of what is hashed are queued instead of read
        back later; the caller waits here while the queue is full.
        """
        if at == self.next:
            self.next += len(data)
            self.queue.append(data)  # in order: only the bytes at `next` are ever queued, and under the lock
            self.queued += len(data)
        if self.idle:
            self.lock.notify_all()
        while self.queued > QUEUE_BYTES and not self.stop.is_set():
            self.full = self.waited = True
            self.lock.wait(0.2)

    def run(self) -> bool:
        """Hash until the whole file is hashed (True) or `stop` is set; False when the file shrank."""
        while True:
            with self.lock:
                step = self._next_step()
            if step is None:
                return self.hashed >= self.total
            if isinstance(step, list):
                for chunk in step:
                    self.hasher.update(chunk)
                    self.hashed += len(chunk)
            else:
                if not self.reader.feed(self.hasher, *step):
                    return False
                self.hashed = step[1]

    def _next_step(self) -> list[bytes] | tuple[int, int] | None:
        """What to hash next: the queued chunks, a range to read back, or None (done or stopped)."""
        while not self.stop.is_set() and self.hashed < self.total:
            if self.queue:
                chunks, self.queue, self.queued = self.queue, [], 0
                if self.full:
                    self.full = False
                    self.lock.notify_all()
                return chunks
            limit = self.prefix()
            if limit > self.next:  # written ahead by another connection: read the file back
                start, self.next = self.next, min(limit, self.next + HASH_CHUNK)
                return start, self.next
            self.idle = True
            self.lock.wait(0.5)
            self.idle = False
        return None

    def lagging(self) -> bool:
        """Whether hashing, not the network, held the download back since the last call."""
        with self.lock:
            waited, self.waited = self.waited, False
            return waited or self.prefix() - self.hashed > 2 * QUEUE_BYTES
