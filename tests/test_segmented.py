"""Segmented downloads: several connections, one partial, every byte hashed once.

Piece sizes are shrunk so that a few MiB exercise the same paths as GiBs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from ckptfetch import hashing
from ckptfetch.download import Settings, download, engine, prefixhash, segmented
from ckptfetch.download.partial import partial_paths
from ckptfetch.errors import DownloadError, HashMismatch, Interrupted

from .conftest import blob, md5, sha256
from .httpserver import TestServer

SIZE = 5 * (1 << 20) + 777  # ~21 pieces of 256 KiB


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PROBE", 256 << 10)
    monkeypatch.setattr(segmented, "MIN_PIECE", 256 << 10)
    monkeypatch.setattr(segmented, "MAX_PIECE", 256 << 10)


@pytest.fixture
def seg(settings: Settings) -> Settings:
    settings.connections = 4
    settings.chunk_size = 64 << 10
    return settings


def get(server: TestServer, target: Path, settings: Settings, data: bytes, path: str = "/f.bin") -> dict[str, str]:
    return download([server.url + path], target, hashes={"md5": md5(data), "sha256": sha256(data)}, size=len(data),
                    settings=settings)


def ranges(server: TestServer) -> list[str]:
    return [r.headers.get("range", "") for r in server.requests if r.method == "GET"]


def test_pieces_over_several_connections(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.rate = 2 << 20  # per connection: the network, not the CPU, is the limit, so connections are added
    target = tmp_path / "f.bin"
    assert get(server, target, seg, data)["sha256"] == sha256(data)
    assert target.read_bytes() == data
    got = ranges(server)
    assert got[0] == f"bytes=0-{(256 << 10) - 1}"  # the probe
    assert len(got) == -(-SIZE // (256 << 10))  # one request per piece, nothing twice
    assert len({r.client[1] for r in server.requests}) > 1, "several connections were used"
    assert server.bytes_sent("/f.bin") == SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_every_byte_is_hashed_once(server: TestServer, seg: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    fed = []
    original = hashing.MultiHasher.update

    def spy(self: hashing.MultiHasher, chunk: bytes | memoryview) -> None:
        fed.append(len(chunk))
        original(self, chunk)

    monkeypatch.setattr(hashing.MultiHasher, "update", spy)
    get(server, tmp_path / "f.bin", seg, data)
    assert sum(fed) == SIZE


def test_small_file_is_one_request(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(100_000)
    server.add("/f.bin", data)
    get(server, tmp_path / "f.bin", seg, data)
    assert server.hits("/f.bin") == 1


def test_failed_piece_is_retried(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "status", status=200 - 200 + 500)  # the probe fails once: plain retry
    server.fault("/f.bin", "reset", at=10_000)
    server.fault("/f.bin", "short", at=50_000)
    server.fault("/f.bin", "status", status=503, retry_after="0")
    get(server, tmp_path / "f.bin", seg, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_server_refusing_ranges_midway_falls_back(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "reset", at=0)
    for _ in range(3):
        server.fault("/f.bin", "ignore_range")
    get(server, tmp_path / "f.bin", seg, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_changed_validator_midway_restarts_clean(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    old, new = blob(SIZE, 1), blob(SIZE, 2)
    server.add("/f.bin", old)
    server.fault("/f.bin", "reset", at=0)  # the probe is fine; let a piece fail first
    for _ in range(2):
        server.fault("/f.bin", "reset", at=1000)

    swapped = threading.Event()
    real_open = engine._Job._open

    def open_and_swap(self: engine._Job, headers: dict[str, str]) -> object:
        if not swapped.is_set() and len(server.requests) >= 3:
            swapped.set()
            server.replace("/f.bin", new)
        return real_open(self, headers)

    engine._Job._open = open_and_swap  # type: ignore[method-assign]
    try:
        target = tmp_path / "f.bin"
        download([server.url + "/f.bin"], target, settings=seg)  # unpinned: only the validator protects it
    finally:
        engine._Job._open = real_open  # type: ignore[method-assign]
    assert swapped.is_set()
    assert target.read_bytes() == new, "old and new bytes must never be spliced"


def test_resume_remembers_finished_pieces(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.rate = 512 << 10  # per connection: four of them take ~2.5 s
    target = tmp_path / "f.bin"
    threading.Timer(0.7, seg.cancel.set).start()
    with pytest.raises(Interrupted):
        get(server, target, seg, data)
    part, side = partial_paths(target)
    saved = json.loads(side.read_text())
    done = sum(p[2] - p[0] for p in saved["pieces"])
    assert 0 < done < SIZE
    assert part.stat().st_size == SIZE  # preallocated
    server.rate = None
    seg.cancel.clear()
    sent = -1
    while sent != server.bytes_sent("/f.bin"):  # let the server notice the dropped connections
        sent = server.bytes_sent("/f.bin")
        time.sleep(0.3)
    get(server, target, seg, data)
    assert target.read_bytes() == data
    # Only what was not saved as done crossed the network again.
    assert server.bytes_sent("/f.bin") - sent == SIZE - done


def test_corrupt_piece_fails_the_hash_and_never_reaches_the_target(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    for _ in range(60):
        server.fault("/f.bin", "wrong_bytes")
    target = tmp_path / "f.bin"
    with pytest.raises(HashMismatch):
        get(server, target, seg, data)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_piece_giving_up_is_a_clear_error(server: TestServer, seg: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "reset", at=0)  # probe ok after this
    for _ in range(200):
        server.fault("/f.bin", "status", status=503)
    with pytest.raises(DownloadError, match="giving up"):
        get(server, tmp_path / "f.bin", seg, data)
    assert not (tmp_path / "f.bin").exists()


def test_pieces_are_hashed_where_files_cannot_be_mapped(server: TestServer, seg: Settings, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The hasher reads the written prefix from a map of the file, or with pread where maps fail (some FUSE mounts)."""
    def no_maps(*args: object, **kwargs: object) -> None:
        raise OSError(19, "No such device")

    monkeypatch.setattr(prefixhash.mmap, "mmap", no_maps)
    data = blob(SIZE, seed=5)
    server.add("/f.bin", data)
    server.rate = 4 << 20  # the hasher follows the prefix over many reads
    assert get(server, tmp_path / "f.bin", seg, data) == {"md5": md5(data), "sha256": sha256(data)}
    assert (tmp_path / "f.bin").read_bytes() == data


def test_a_truncated_partial_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Reading past the end of a map would kill the process (SIGBUS): the reader checks the size first."""
    p = tmp_path / "part"
    p.write_bytes(b"x" * (1 << 20))
    fd = os.open(p, os.O_RDONLY)
    try:
        reader = prefixhash.PrefixReader(fd)
        h = hashing.MultiHasher(["md5"])
        assert reader.feed(h, 0, 4096) and reader.maps
        os.truncate(p, 4096)
        assert not reader.feed(h, 4096, 1 << 20)
    finally:
        os.close(fd)
