"""One large file over several connections, hashed exactly once.

The file is cut into ordered pieces; workers take the next unfinished piece,
fetch it with `Range` + `If-Range` and `pwrite` it into one preallocated
partial file. A hasher thread follows the contiguous written prefix
(`prefixhash.py`), so every byte is hashed once, in order, while the rest
still downloads. Piece positions are saved in the sidecar (every `SAVE_EVERY`
seconds, and whenever `save_every_bytes` more have been written), so a resume
continues each piece where it stopped and a kill costs little. A server that stops honouring ranges mid-way (or whose
validator changed) ends it with NO_RANGES: the engine goes on with one stream
from the contiguous prefix, where `If-Range` decides between resuming and
restarting.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import requests

from .. import compat
from ..errors import CkptfetchError, DownloadError, Interrupted
from . import http
from .http import Lost
from .prefixhash import PrefixHasher
from .resume import parse_content_range
from .settings import Settings
from .states import Action, Counters, Outcome, Step, decide

PROBE = 8 << 20  # the first request asks for this much; bigger files get pieces
MIN_PIECE = 8 << 20
MAX_PIECE = 64 << 20
SAVE_EVERY = 0.1  # seconds between sidecar saves at most
SAVE_BYTES = 2 << 20  # bytes written between two sidecar saves at most (or 1/40 of a big file): what a kill costs
START_CONNECTIONS = 1  # connections a segmented download starts with: enough for a fast server
RAMP_STEP = 2  # connections added per SAVE_EVERY tick while the network is the limit
RAMP_BELOW = 400 << 20  # bytes/s; above it one md5 core, not the network, is the limit
RAMP_AFTER = 0.25  # seconds from the start of a segmented download before the ramp looks at its speed
RAMP_CPU = 1.5  # cores this process keeps busy (a receiving and a hashing thread): the CPU is the limit


def piece_size(total: int, connections: int) -> int:
    """Pieces small enough that every connection gets several, within bounds."""
    return max(MIN_PIECE, min(MAX_PIECE, total // max(1, connections * 4)))


def plan_pieces(total: int, connections: int, first_end: int = 0) -> list[list[int]]:
    """[start, end, pos] triples covering [0, total); the first may be given."""
    pieces: list[list[int]] = []
    start = 0
    if first_end:
        pieces.append([0, first_end, 0])
        start = first_end
    size = piece_size(total, connections)
    while start < total:
        end = min(total, start + size)
        pieces.append([start, end, start])
        start = end
    return pieces


def save_every_bytes(total: int) -> int:
    """Bytes written between sidecar saves: few for a small file, 2.5 % of a big one (saves cost CPU)."""
    return max(SAVE_BYTES, total // 40)


def contiguous(pieces: Sequence[Sequence[int]]) -> int:
    """Length of the written prefix described by saved pieces."""
    for _start, end, pos in pieces:
        if pos < end:
            return int(pos)
    return int(pieces[-1][1]) if pieces else 0


@dataclass(frozen=True)
class Hooks:
    """What the segmented download needs from its job (the engine's `_Job`)."""

    open: Callable[[dict[str, str]], requests.Response | Lost]
    refused: Callable[[requests.Response], Lost]  # a retry for a non-2xx status, or raises DownloadError
    save: Callable[[list[list[int]]], None]
    pause: Callable[[int, float | None], None]  # back off after n failures in a row (with the server's Retry-After)
    advance: Callable[[int], None]
    slot: Callable[[], threading.Semaphore]  # the per-host connection cap


class Pieces:
    """The pieces of one file, shared by its workers: who fetches which, what is written, what is saved."""

    def __init__(self, total: int, pieces: list[list[int]]) -> None:
        self.total = total
        self.list = pieces
        self.lock = threading.Condition(threading.Lock())
        self.taken: set[int] = set()
        self.unsaved = 0  # bytes written since the last sidecar save
        self.save_due = threading.Event()  # wakes the coordinator: a save is due, or a worker ended
        self._save_every = save_every_bytes(total)

    def prefix(self) -> int:
        """End of the contiguous written prefix (call with the lock held)."""
        for _start, end, pos in self.list:
            if pos < end:
                return pos
        return self.total

    def take(self) -> int | None:
        """The first piece nobody fetches that still lacks bytes."""
        with self.lock:
            for i, (_, end, pos) in enumerate(self.list):
                if pos < end and i not in self.taken:
                    self.taken.add(i)
                    return i
        return None

    def wrote(self, i: int, data: bytes, hashing: PrefixHasher) -> None:
        """`data` is on disk at the position of piece `i`, which moves on (the hasher may take it at once)."""
        n = len(data)
        with self.lock:
            at = self.list[i][2]
            self.list[i][2] += n
            self.unsaved += n
            if self.unsaved >= self._save_every:
                self.save_due.set()
            hashing.wrote(at, data)  # wakes the hasher if it waits for bytes

    def snapshot(self) -> list[list[int]]:
        with self.lock:
            self.unsaved = 0
            return [list(p) for p in self.list]

    def done(self) -> int:
        """Bytes written so far across all pieces."""
        with self.lock:
            return sum(p[2] - p[0] for p in self.list)


class Segmented:
    """Runs the pieces of one file; `run()` ends COMPLETE with the digests of the whole file, or NO_RANGES."""

    def __init__(self, fd: int, validator: str | None, pieces: Pieces, algos: list[str], settings: Settings,
                 hooks: Hooks) -> None:
        self.fd = fd
        self.total = pieces.total
        self.validator = validator
        self.pieces = pieces
        self.settings = settings
        self.hooks = hooks
        self.abort = threading.Event()
        self.ending: BaseException | Step | None = None  # why the workers stopped early
        self.hashing = PrefixHasher(fd, self.total, algos, pieces.lock, pieces.prefix, self.abort)
        self.running = 0  # workers started and not yet ended

    def _end(self, why: BaseException | Step) -> None:
        """Stop every worker: an error, or a step that ends the segmented download (NO_RANGES)."""
        with self.pieces.lock:
            if self.ending is None or isinstance(why, Interrupted):
                self.ending = why
            self.abort.set()
            self.pieces.lock.notify_all()
        self.pieces.save_due.set()

    def _hash(self) -> None:
        """The hasher's thread: follows the written prefix (see prefixhash.py)."""
        if not self.hashing.run() and not self.abort.is_set():
            self._end(DownloadError("the partial file shrank while downloading"))

    # -- workers --------------------------------------------------------------------

    def _worker(self, first: requests.Response | None, capped: bool) -> None:
        """Fetch pieces in order. The first worker runs on its job's connection slot; the
        others take a slot of the per-host cap for each piece."""
        slot = self.hooks.slot() if capped else None
        try:
            if first is not None:
                with first:
                    step = self._stream(0, first)
                if step.outcome is Outcome.NO_RANGES:
                    self._end(step)
                    return
                self._piece(0)  # finishes piece 0 if the first response fell short
            while not self.abort.is_set():
                if slot is not None:
                    while not slot.acquire(timeout=0.2):
                        if self.abort.is_set():
                            return
                try:
                    i = self.pieces.take()
                    if i is None:
                        return
                    self._piece(i)
                finally:
                    if slot is not None:
                        slot.release()
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinator
            self._end(exc)
        finally:
            with self.pieces.lock:
                self.running -= 1
            self.pieces.save_due.set()  # the coordinator notices at once

    def _piece(self, i: int) -> None:
        """Fetch what piece `i` lacks, retrying on new connections as the backoff policy says."""
        piece = self.pieces.list[i]
        counters = Counters(best=piece[2])
        while not self.abort.is_set() and piece[2] < piece[1]:
            step = self._attempt(i)
            if step.outcome is Outcome.NO_RANGES:
                self._end(step)
                return
            if step.outcome is Outcome.COMPLETE or self.abort.is_set():
                return
            action, counters = decide(step, piece[2], counters, self.settings.retries)
            if action is Action.GIVE_UP:
                raise DownloadError(f"giving up on bytes {piece[2]}-{piece[1] - 1} after {counters.failures} "
                                    f"failed attempts: {step.reason}")
            self.hooks.pause(counters.failures, step.wait)

    def _attempt(self, i: int) -> Step:
        """One request for the rest of piece `i`."""
        _start, end, pos = self.pieces.list[i]
        headers = {"Range": f"bytes={pos}-{end - 1}"}
        if self.validator:
            headers["If-Range"] = self.validator
        resp = self.hooks.open(headers)
        if isinstance(resp, Lost):
            return Step(Outcome.LOST, resp.reason, resp.wait)
        with resp:
            if resp.status_code in (200, 416):
                return Step(Outcome.NO_RANGES, f"the server answered {resp.status_code} to a range request")
            if resp.status_code >= 300:
                lost = self.hooks.refused(resp)
                return Step(Outcome.LOST, lost.reason, lost.wait)
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if resp.status_code != 206 or cr is None or cr[0] != pos or cr[1] != end - 1 or cr[2] != self.total:
                return Step(Outcome.NO_RANGES, "the server sent a different range than asked")
            return self._stream(i, resp)

    def _stream(self, i: int, resp: requests.Response) -> Step:
        """Write the body of `resp` into piece `i` at its position, each chunk as it arrives."""
        piece = self.pieces.list[i]
        before = piece[2]
        body = http.Body(resp, self.settings)
        try:
            for chunk in body:
                if self.settings.cancel.is_set():
                    raise Interrupted()
                if self.abort.is_set():
                    return Step(Outcome.LOST, "stopped")
                n = len(chunk)
                if piece[2] + n > piece[1]:
                    return Step(Outcome.NO_RANGES, "the server sent more than the range asked for")
                view, at = memoryview(chunk), piece[2]
                while view:  # pwrite may write only part; the hasher reads back what is on disk
                    written = compat.pwrite(self.fd, view, at)
                    if not written:
                        raise OSError(28, "No space left on device")
                    view, at = view[written:], at + written
                self.pieces.wrote(i, chunk, self.hashing)
                self.hooks.advance(n)
        except http.CONNECTION_ERRORS as exc:
            return Step(Outcome.LOST, f"connection lost ({type(exc).__name__})", progressed=piece[2] > before)
        if body.too_slow:
            return Step(Outcome.SLOW, body.too_slow, progressed=piece[2] > before)
        if piece[2] < piece[1]:
            return Step(Outcome.LOST, "connection closed early", progressed=piece[2] > before)
        return Step(Outcome.COMPLETE)

    # -- the coordinator ----------------------------------------------------------------

    def run(self, first: requests.Response | None) -> Step:
        """Fetch every piece: COMPLETE with the digests, or NO_RANGES; raises Interrupted or DownloadError."""
        if first is not None:
            self.pieces.taken.add(0)
        lacking = sum(1 for p in self.pieces.list if p[2] < p[1])
        n_workers = min(self.settings.connections, max(1, lacking))
        hasher = threading.Thread(target=self._hash, name="hash-prefix", daemon=True)
        hasher.start()
        workers: list[threading.Thread] = []

        def add_workers(n: int) -> None:
            for _ in range(min(n, n_workers - len(workers))):
                k = len(workers)
                w = threading.Thread(target=self._worker, args=(first if k == 0 else None, k > 0), name=f"piece-{k}",
                                     daemon=True)
                workers.append(w)
                with self.pieces.lock:
                    self.running += 1
                w.start()

        add_workers(START_CONNECTIONS)
        try:
            self._coordinate(workers, n_workers, add_workers)
        except KeyboardInterrupt:
            self.settings.cancel.set()
            self.abort.set()
            for w in workers:
                w.join()
            raise
        finally:
            with self.pieces.lock:
                # Leaving early (an error, a cancel, or an exception right here): stop every
                # worker before the caller closes the file they write to.
                if self.ending is not None or self.settings.cancel.is_set() or any(w.is_alive() for w in workers):
                    self.abort.set()
                self.pieces.lock.notify_all()
            for w in workers:
                w.join()
            hasher.join()
            self._save()
        return self._result()

    def _coordinate(self, workers: list[threading.Thread], n_workers: int, add_workers: Callable[[int], None]) -> None:
        """Save progress and add connections until every worker ended.

        Start with one connection and add more only while the network is the limit: over two
        ticks in a row, the download was slower than RAMP_BELOW, hashing kept up and this
        process used less than RAMP_CPU cores. Otherwise the CPU is the bottleneck (on a fast
        server, or a busy machine) and more connections only cost CPU. The first
        RAMP_AFTER seconds do not count: a process's first download is slow while its code
        and buffers warm up. A per-connection limit (20 MB/s) gets all of them within a
        second.
        """
        started = last_save = last_tick = time.monotonic()
        last_done, last_cpu = self.pieces.done(), time.process_time()
        cores = min(RAMP_CPU, 0.75 * (os.cpu_count() or 1))
        was_slow = False
        while self.running:
            self.pieces.save_due.wait(SAVE_EVERY)
            self.pieces.save_due.clear()
            if self.settings.cancel.is_set():
                self.abort.set()
            now = time.monotonic()
            if len(workers) < n_workers and now - last_tick >= SAVE_EVERY:
                done, cpu = self.pieces.done(), time.process_time()
                slow = ((done - last_done) / (now - last_tick) < RAMP_BELOW and not self.hashing.lagging()
                        and (cpu - last_cpu) / (now - last_tick) < cores and now - started >= RAMP_AFTER)
                if slow and was_slow and not self.abort.is_set():
                    add_workers(RAMP_STEP)
                last_tick, last_done, last_cpu, was_slow = now, done, cpu, slow
            if now - last_save >= SAVE_EVERY or self.pieces.unsaved >= save_every_bytes(self.total):
                self._save()
                last_save = time.monotonic()

    def _result(self) -> Step:
        if self.settings.cancel.is_set() and not isinstance(self.ending, CkptfetchError):
            raise Interrupted()
        if isinstance(self.ending, BaseException):
            raise self.ending
        if self.ending is not None:
            return self.ending
        if self.pieces.prefix() != self.total or self.hashing.hashed != self.total:
            raise DownloadError("segmented download ended incomplete")
        return Step(Outcome.COMPLETE, digests=self.hashing.hasher.hexdigests())

    def _save(self) -> None:
        try:
            self.hooks.save(self.pieces.snapshot())
        except OSError:
            pass  # a full or failing disk: the last saved progress stands; a resume then fetches a bit more
