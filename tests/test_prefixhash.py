"""Hashing a file that arrives in pieces (download/prefixhash.py): in order, every byte once.

Several writer threads fill the pieces of a real file in random-sized chunks
and at random speeds, as a segmented download's connections do; the hasher
takes the chunks at the front from memory and reads the rest back from the
file. Whatever the interleaving, the digest is the file's and no byte is
hashed twice.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from ckptfetch import hashing
from ckptfetch.download import prefixhash
from ckptfetch.download.prefixhash import PrefixHasher
from ckptfetch.download.segmented import Pieces

PIECE = 256 << 10


def fill(tmp_path: Path, data: bytes, writers: int, seed: int) -> tuple[PrefixHasher, bool]:
    """Write `data` into a preallocated file with `writers` threads while a PrefixHasher follows."""
    total = len(data)
    path = tmp_path / f"part{seed}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, total)
    pieces = Pieces(total, [[s, min(total, s + PIECE), s] for s in range(0, total, PIECE)])
    stop = threading.Event()
    hasher = PrefixHasher(fd, total, ["md5"], pieces.lock, pieces.prefix, stop)
    result: list[bool] = []
    follower = threading.Thread(target=lambda: result.append(hasher.run()))
    follower.start()

    def writer(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        while (i := pieces.take()) is not None:
            while pieces.list[i][2] < pieces.list[i][1]:
                at, end = pieces.list[i][2], pieces.list[i][1]
                chunk = data[at:min(end, at + rng.choice([1, 100, 4096, 65536, 200_000]))]
                os.pwrite(fd, chunk, at)
                pieces.wrote(i, chunk, hasher)
                if rng.random() < 0.05:
                    time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    follower.join(10)
    os.close(fd)
    return hasher, bool(result and result[0])


@pytest.mark.parametrize("writers", [1, 3, 8])
@pytest.mark.parametrize("queue", [64 << 10, 8 << 20], ids=["small-queue", "default-queue"])
def test_every_byte_is_hashed_once_in_order(writers: int, queue: int, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefixhash, "QUEUE_BYTES", queue)  # a small queue makes the front writer wait
    fed: list[int] = []
    original = hashing.MultiHasher.update

    def spy(self: hashing.MultiHasher, chunk: bytes | memoryview) -> None:
        fed.append(len(chunk))
        original(self, chunk)

    monkeypatch.setattr(hashing.MultiHasher, "update", spy)
    data = random.Random(writers).randbytes(3 * PIECE + 12345)
    hasher, done = fill(tmp_path, data, writers, writers)
    assert done
    assert hasher.hasher.hexdigests()["md5"] == hashlib.md5(data).hexdigest()
    assert sum(fed) == len(data)


def test_one_writer_at_the_front_is_hashed_from_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast server's one connection: nothing is read back from the file."""
    def no_reads(self: prefixhash.PrefixReader, *args: object) -> bool:
        raise AssertionError("read back although every byte came from the front")

    monkeypatch.setattr(prefixhash.PrefixReader, "feed", no_reads)
    data = random.Random(1).randbytes(5 * PIECE)
    hasher, done = fill(tmp_path, data, 1, 1)
    assert done and hasher.hasher.hexdigests()["md5"] == hashlib.md5(data).hexdigest()
