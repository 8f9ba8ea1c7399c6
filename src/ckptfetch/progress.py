"""Progress reporting: the engine reports, the CLI renders.

The engine calls a `Reporter`; it never prints. `NullReporter` does nothing,
`TqdmReporter` draws one bar per active file plus a total.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Reporter(Protocol):
    """What the engine tells about its progress."""

    def start(self, label: str, total: int | None, initial: int = 0) -> None: ...
    def advance(self, label: str, n: int) -> None: ...
    def rewind(self, label: str, n: int) -> None: ...
    def finish(self, label: str, ok: bool) -> None: ...
    def note(self, label: str, message: str) -> None: ...


class NullReporter:
    """A reporter that ignores everything."""

    def start(self, label: str, total: int | None, initial: int = 0) -> None:
        pass

    def advance(self, label: str, n: int) -> None:
        pass

    def rewind(self, label: str, n: int) -> None:
        pass

    def finish(self, label: str, ok: bool) -> None:
        pass

    def note(self, label: str, message: str) -> None:
        pass


class TqdmReporter:
    """tqdm bars: one per active file and a total at the bottom."""

    def __init__(self, total_bytes: int | None, file: Any = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._file = file
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._total = tqdm(
            total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="total",
            position=0, file=file, dynamic_ncols=True, leave=True,
        )

    def start(self, label: str, total: int | None, initial: int = 0) -> None:
        with self._lock:
            old = self._bars.pop(label, None)
            if old is not None:
                old.close()
            self._bars[label] = self._tqdm(
                total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label if len(label) <= 40 else "…" + label[-39:], file=self._file,
                dynamic_ncols=True, leave=False,
            )
            if initial:
                # Bytes a resume finds already here are progress, not speed: moved, not `update`d, so tqdm's
                # rate counts only what crosses the network now.
                self._total.n += initial
                self._total.last_print_n = self._total.n
                self._total.refresh()

    def advance(self, label: str, n: int) -> None:
        with self._lock:
            bar = self._bars.get(label)
            if bar is not None:
                bar.update(n)
            self._total.update(n)

    def rewind(self, label: str, n: int) -> None:
        with self._lock:
            bar = self._bars.get(label)
            if bar is not None:
                bar.n = max(0, bar.n - n)
                bar.refresh()
            self._total.n = max(0, self._total.n - n)
            self._total.refresh()

    def finish(self, label: str, ok: bool) -> None:
        with self._lock:
            bar = self._bars.pop(label, None)
            if bar is not None:
                bar.close()

    def note(self, label: str, message: str) -> None:
        with self._lock:
            self._tqdm.write(f"{label}: {message}", file=self._file)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._total.close()
