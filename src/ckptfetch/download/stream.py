"""One connection's body into the partial file, hashed on the way; and `file://` copies.

Segmented downloads (several connections) are in `segmented.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import requests

from ..errors import DownloadError, Interrupted
from ..hashing import MultiHasher, ThreadedHasher
from ..progress import Reporter
from . import http
from .flusher import Flusher
from .settings import Settings
from .states import Outcome, Step


def write_all(f: BinaryIO, data: bytes | memoryview) -> None:
    """Write every byte: an unbuffered write may write only part (a filling disk, a signal).

    The hash follows the bytes received, so a short write left unnoticed
    would put a file at the target that differs from what was verified.
    """
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(28, "No space left on device")
        view = view[n:]


def receive(resp: requests.Response, path: Path, offset: int, total: int | None, size: int | None,
            hasher: ThreadedHasher, settings: Settings, reporter: Reporter, label: str, shown: str) -> Step:
    """Append the body of `resp` to the partial at `path` from `offset`, hashing it.

    `total` is the file's size as the server declared it, `size` as the
    manifest pins it. Ends COMPLETE, LOST (the connection broke or closed
    early), SLOW (under the minimum speed) or STALE (more bytes than the
    server declared); raises for more bytes than pinned, a cancel, or a failed
    write (OSError).
    """
    received = 0
    cancel = settings.cancel
    advance = reporter.advance
    with open(path, "r+b" if offset else "wb", buffering=0) as f:
        f.seek(offset)
        f.truncate()
        flusher = Flusher(f.fileno())
        body = http.Body(resp, settings)
        try:
            for chunk in body:
                if cancel.is_set():
                    raise Interrupted()
                write_all(f, chunk)
                hasher.update(chunk)
                n = len(chunk)
                received += n
                flusher.wrote(n)
                advance(label, n)
                if total is not None and offset + received > total:
                    return Step(Outcome.STALE, f"{shown} sent more than the {total} bytes it declared")
                if size is not None and offset + received > size:
                    # No Content-Length (or a decoded stream): stop at the pinned size, not at a full disk.
                    f.truncate(0)
                    raise DownloadError(
                        f"{label}: {shown} sent more than the {size} bytes the manifest "
                        "expects; the download was discarded and the target was not touched."
                    )
        except http.CONNECTION_ERRORS as exc:
            return Step(Outcome.LOST, f"connection lost after {offset + received} bytes ({http.reason(exc)})",
                        progressed=received > 0)
        finally:
            flusher.close()
        if body.too_slow:
            return Step(Outcome.SLOW, body.too_slow, progressed=received > 0)
        os.fsync(f.fileno())
    if total is not None and offset + received < total:
        return Step(Outcome.LOST, f"connection closed early at {offset + received} of {total} bytes",
                    progressed=received > 0)
    return Step(Outcome.COMPLETE, progressed=received > 0, resumed=offset > 0, digests=hasher.hexdigests())


def hash_prefix(path: Path, length: int, algos: list[str]) -> MultiHasher | None:
    """A hasher fed with the first `length` bytes of `path`; None when the file is shorter."""
    hasher = MultiHasher(algos)
    with open(path, "rb", buffering=0) as f:
        hasher.feed_file(f, length)
    return hasher if hasher.count == length else None


def copy_file(source: Path, path: Path, algos: list[str], settings: Settings, reporter: Reporter,
              label: str) -> Step:
    """Copy a local file (a `file://` URL) to the partial at `path`, hashing it."""
    try:
        src = open(source, "rb", buffering=0)
    except OSError as exc:
        raise DownloadError(f"{label}: cannot read {source}: {exc.strerror or exc}") from None
    hasher = MultiHasher(algos)
    with src:
        total = os.fstat(src.fileno()).st_size
        reporter.start(label, total, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            while chunk := src.read(settings.chunk_size):
                if settings.cancel.is_set():
                    raise Interrupted()
                f.write(chunk)
                hasher.update(chunk)
                reporter.advance(label, len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return Step(Outcome.COMPLETE, digests=hasher.hexdigests())
