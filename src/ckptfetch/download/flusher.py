"""Background writeback while a download runs, so the final fsync is short."""

from __future__ import annotations

import threading

from .. import compat


class Flusher:
    """Starts writing dirty pages of `fd` back every `every` bytes, on its own thread.

    The thread starts with the first writeback: a file smaller than `every`
    (most files of a many-file run) costs no thread at all.
    """

    def __init__(self, fd: int, every: int = 64 << 20) -> None:
        self._fd = fd
        self._every = every
        self._pending = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                compat.start_writeback(self._fd)
            except OSError:
                return  # the final fsync reports real errors

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flush", daemon=True)
                self._thread.start()
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
