"""Segmented downloads start with a few connections and add more only while the download is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptfetch.download import Settings, download, engine, segmented

from .conftest import blob, md5
from .httpserver import TestServer

SIZE = 3 * (1 << 20) + 5


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PROBE", 128 << 10)
    monkeypatch.setattr(segmented, "MIN_PIECE", 128 << 10)
    monkeypatch.setattr(segmented, "MAX_PIECE", 128 << 10)


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the connection workers a segmented download starts."""
    started: list[int] = []
    original = segmented.Segmented._worker

    def counting(self: segmented.Segmented, *args: object) -> None:
        started.append(1)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(segmented.Segmented, "_worker", counting)
    return started


def fetch(server: TestServer, tmp_path: Path, settings: Settings, data: bytes) -> None:
    settings.connections = 6
    settings.chunk_size = 32 << 10
    target = tmp_path / "f.bin"
    digests = download([server.url + "/f.bin"], target, hashes={"md5": md5(data)}, size=len(data), settings=settings)
    assert digests["md5"] == md5(data) and target.read_bytes() == data


def test_a_fast_download_keeps_its_first_connections(server: TestServer, settings: Settings, tmp_path: Path,
                                                     workers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segmented, "RAMP_BELOW", 0)  # every download counts as fast
    data = blob(SIZE, 3)
    server.add("/f.bin", data)
    fetch(server, tmp_path, settings, data)
    assert len(workers) == segmented.START_CONNECTIONS
    assert server.bytes_sent("/f.bin") == SIZE  # the first connections fetched every piece, once


def test_a_per_connection_limit_brings_every_connection(server: TestServer, settings: Settings, tmp_path: Path,
                                                        workers: list[int]) -> None:
    server.rate = 2 << 20  # bytes/s per response, like nginx `limit_rate`
    data = blob(SIZE, 4)
    server.add("/f.bin", data)
    fetch(server, tmp_path, settings, data)
    assert len(workers) == 6
    assert server.bytes_sent("/f.bin") == SIZE
