"""The background writeback that keeps the final fsync short."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ckptfetch import compat
from ckptfetch.download import flusher


def test_writeback_starter_is_async_on_linux_and_harmless(tmp_path: Path) -> None:
    start = compat.start_writeback
    if sys.platform.startswith("linux"):
        assert compat._sync_file_range() is not None
    p = tmp_path / "f"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * (1 << 20))
        start(fd)  # returns without raising; the data stays as written
        os.fsync(fd)
    finally:
        os.close(fd)
    assert p.read_bytes() == b"x" * (1 << 20)


def test_flusher_wakes_every_n_bytes_and_stops(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    calls: list[int] = []
    woke = threading.Event()

    def fake(fd: int) -> None:
        calls.append(fd)
        woke.set()

    monkeypatch.setattr(compat, "start_writeback", fake)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fl = flusher.Flusher(fd, every=1000)
        fl.wrote(999)
        assert not woke.wait(0.1)
        fl.wrote(1)
        assert woke.wait(5)
        fl.close()
        assert calls == [fd]
    finally:
        os.close(fd)
