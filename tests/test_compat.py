"""Every portability fallback in `compat`, forced on this Linux machine.

Each test switches one capability off (as macOS or Windows lack it) and runs
the real code path that uses it: a segmented download without `preadv` /
`pwrite`, the free-space check without `statvfs`, writeback without
`sync_file_range` or `fdatasync`, durable renames without folder fsync, locks
without `/proc` or `kill(pid, 0)`, the hf-cache layout without symlinks, and
placing files from the store without reflinks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ckptfetch import compat, proclock
from ckptfetch.download import Settings, download

from .conftest import blob, md5, sha256
from .httpserver import TestServer


def _segmented(server: TestServer, tmp_path: Path, settings: Settings) -> None:
    data = blob(20 << 20, seed=7)
    server.add("/big.bin", data)
    settings.connections = 4
    target = tmp_path / "big.bin"
    digests = download([server.url + "/big.bin"], target, hashes={"md5": md5(data)}, size=len(data),
                       algorithms=["sha256"], settings=settings)
    assert target.read_bytes() == data and digests["sha256"] == sha256(data)
    ranges = [r.headers.get("range") for r in server.requests if r.method == "GET"]
    assert len(ranges) > 2, "the file must come in several pieces"


def test_segmented_download_without_positional_io(server: TestServer, tmp_path: Path, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has neither preadv nor pwrite: seek + read/write under a per-file lock instead."""
    monkeypatch.setattr(compat, "HAVE_PREADV", False)
    monkeypatch.setattr(compat, "HAVE_PWRITE", False)
    _segmented(server, tmp_path, settings)


def test_positional_io_fallbacks_read_and_write_where_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "HAVE_PREADV", False)
    monkeypatch.setattr(compat, "HAVE_PWRITE", False)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | compat.O_BINARY, 0o644)
    try:
        os.ftruncate(fd, 10)
        assert compat.pwrite(fd, b"abc", 5) == 3
        buf = bytearray(4)
        assert compat.pread_into(fd, memoryview(buf), 4) == 4
        assert bytes(buf) == b"\0abc"
    finally:
        os.close(fd)


def test_free_space_without_statvfs(server: TestServer, tmp_path: Path, settings: Settings,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with_statvfs = compat.free_bytes(tmp_path)
    monkeypatch.setattr(compat, "HAVE_STATVFS", False)
    without = compat.free_bytes(tmp_path)
    assert without == shutil.disk_usage(tmp_path).free
    assert abs(without - with_statvfs) < 256 << 20  # the same filesystem, give or take other writers
    _segmented(server, tmp_path, settings)


def test_writeback_without_sync_file_range_or_fdatasync(server: TestServer, tmp_path: Path, settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS: no sync_file_range and no fdatasync; fsync stands in."""
    calls: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(compat, "HAVE_SYNC_FILE_RANGE", False)
    monkeypatch.delattr(os, "fdatasync", raising=False)
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    fd = os.open(tmp_path / "w", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 4096)
        compat.start_writeback(fd)
    finally:
        os.close(fd)
    assert calls == ["fsync"]
    _segmented(server, tmp_path, settings)


def test_no_folder_fsync(server: TestServer, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows cannot open a folder to fsync it: renames are left to the filesystem's journal."""
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(compat, "HAVE_DIR_FSYNC", False)
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    compat.fsync_dir(tmp_path)
    assert str(tmp_path) not in opened
    _segmented(server, tmp_path, settings)


def _plant(tmp_path: Path, holder: dict[str, object], age: float) -> Path:
    path = tmp_path / "x.lock"
    path.write_text(json.dumps(holder))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def _me() -> dict[str, object]:
    return {"host": socket.gethostname(), "boot": compat.boot_id(), "pidns": compat.pid_namespace(),
            "pid": os.getpid(), "start": compat.start_time(os.getpid()), "token": "t"}


def test_locks_without_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no /proc: no boot id, start time or pid namespace; kill(pid, 0) still tells a dead holder."""
    monkeypatch.setattr(compat, "HAVE_PROC", False)
    assert (compat.boot_id(), compat.start_time(os.getpid()), compat.pid_namespace()) == ("", "", "")
    me = _me()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert proclock._stale(_plant(tmp_path, {**me, "pid": dead.pid}, 0), me), "a dead holder here is stale at once"
    assert not proclock._stale(_plant(tmp_path, me, 0), me), "a live holder with a fresh heartbeat is not"
    assert proclock._stale(_plant(tmp_path, me, proclock.LOCK_STALE + 5), me), "a holder that stopped beating is"


def test_locks_without_kill0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows: whether a pid lives cannot be asked safely; only the heartbeat decides."""
    monkeypatch.setattr(compat, "HAVE_KILL0", False)
    me = _me()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert compat.pid_alive(dead.pid) is None
    assert not proclock._stale(_plant(tmp_path, {**me, "pid": dead.pid}, 0), me), "fresh heartbeat: wait"
    assert proclock._stale(_plant(tmp_path, {**me, "pid": dead.pid}, proclock.LOCK_STALE + 5), me)


def test_symlink_fallback_reports_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where symlinks are unavailable `compat.symlink` says so and the caller copies (see
    test_huggingface.py::test_hf_cache_commit_revision_writes_no_ref_and_copies_without_symlinks for the layout)."""
    assert compat.symlink("target", tmp_path / "a") and os.readlink(tmp_path / "a") == "target"
    monkeypatch.setattr(compat, "HAVE_SYMLINKS", False)
    assert not compat.symlink("target", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_without_reflinks_files_from_the_store_are_hardlinked_or_copied(server: TestServer, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux without FICLONE support, macOS off APFS, Windows: `--link auto` hard-links, `--link reflink` copies.

    (tests/test_store.py::test_reflinks_on_a_copy_on_write_filesystem clones for real on an XFS image.)
    """
    from ckptfetch import api

    src = tmp_path / "src"
    src.write_bytes(b"abc")
    monkeypatch.setattr(compat, "HAVE_REFLINK", False)
    assert not compat.reflink(src, tmp_path / "clone") and not (tmp_path / "clone").exists()
    data = blob(100_000, seed=9)
    server.add("/w.bin", data)
    m = tmp_path / "m.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "m", "files": {"w.bin": {"url": server.url + "/w.bin",
                                                                              "md5": md5(data)}}}))
    assert api.fetch(m, tmp_path / "one").ok
    assert [f.link for f in api.fetch(m, tmp_path / "two", link="auto").files] == ["hardlink"]
    assert [f.link for f in api.fetch(m, tmp_path / "three", link="reflink").files] == ["copy"]
    assert (tmp_path / "three/w.bin").read_bytes() == data and server.hits("/w.bin") == 1


def test_windows_file_name_rules_are_a_manifest_error_there_and_a_lint_warning_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows `a:b` would write into an NTFS stream of `a`, and `NUL.bin` nowhere: such a target is refused."""
    from ckptfetch.errors import ManifestError
    from ckptfetch.linting import lint
    from ckptfetch.manifest import load_manifest

    m = tmp_path / "win.yaml"
    m.write_text("ckptfetch: 1\nname: win\nfiles:\n  ok.bin:\n    url: https://example.org/ok.bin\n    md5: "
                 f"{'a' * 32}\n  'weights/w:stream.bin':\n    url: https://example.org/w.bin\n    md5: {'b' * 32}\n")
    assert set(load_manifest(m).files) == {"ok.bin", "weights/w:stream.bin"}, "a legal name here"
    found = [(f.code, f.key, f.line) for f in lint(m).findings]
    assert found == [("not-portable", "weights/w:stream.bin", 7)]
    monkeypatch.setattr(compat, "WINDOWS_NAMES", True)
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    assert "win.yaml:7" in str(info.value) and "contains : (Windows does not allow" in str(info.value)
    m.write_text(m.read_text().replace("w:stream.bin", "NUL.bin"))
    with pytest.raises(ManifestError, match="names 'NUL.bin', a device on Windows"):
        load_manifest(m)
