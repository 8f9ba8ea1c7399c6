"""Full disks and read-only destinations (README Guarantee 14).

DIR is a real 2 MiB tmpfs (mounted here; the tests skip, saying why, where
mounting is not allowed). A download or an extraction that runs out of space
ends with exit 1 and one message naming the file, the cause and what to do;
files that were correct before are untouched.

What happens to the partial is deliberate: a download's partial is KEPT (with
its sidecar) and the message says where and how big, so that after freeing
space the next run resumes with a Range request; an extracted member's partial
is REMOVED, as the cached archive makes it cheap to redo. A read-only DIR whose
files are all present still passes `get`; one that lacks a file fails cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import faultstats
from .conftest import blob, cli_env, run_cli, sha256
from .httpserver import TestServer
from .samples import make_archive

GOOD = blob(200_000, seed=1)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "small"
    d.mkdir()
    r = _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here ({r.stderr.strip() or r.returncode}); needs root with CAP_SYS_ADMIN")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def remount(d: Path, opts: str) -> None:
    r = _mount("-o", f"remount,{opts}", str(d))
    assert r.returncode == 0, r.stderr


def manifest(tmp_path: Path, server: TestServer, extra: dict[str, dict[str, object]],
             archives: dict[str, dict[str, object]] | None = None) -> Path:
    server.add("/good.bin", GOOD)
    files = {"good.bin": {"url": server.url + "/good.bin", "sha256": sha256(GOOD)}, **extra}
    m = tmp_path / "disk.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "disk", "files": files, "archives": archives or {}}))
    return m


def place_good(m: Path, dest: Path) -> tuple[int, int]:
    r = run_cli("get", str(m), "--dest", str(dest), "--only", "good.bin")
    assert r.returncode == 0, r.stderr
    st = (dest / "good.bin").stat()
    return st.st_ino, st.st_mtime_ns


def assert_good_untouched(dest: Path, before: tuple[int, int]) -> None:
    st = (dest / "good.bin").stat()
    assert (st.st_ino, st.st_mtime_ns) == before and (dest / "good.bin").read_bytes() == GOOD


def one_error(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert r.returncode == code, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.mark.parametrize("connections", ["1", "4"], ids=["one-stream", "segmented"])
def test_no_room_fails_before_downloading(connections: str, server: TestServer, tmp_path: Path, tmpfs: Path) -> None:
    big = blob(9 << 20, seed=2)
    server.add("/big.bin", big)
    m = manifest(tmp_path, server, {"big.bin": {"url": server.url + "/big.bin", "sha256": sha256(big)}})
    before = place_good(m, tmpfs)
    r = run_cli("get", str(m), "--dest", str(tmpfs), "--no-progress", env=cli_env(CKPTFETCH_CONNECTIONS=connections))
    message = one_error(r)
    assert message.startswith(f"error: big.bin: needs {len(big)} more bytes but {tmpfs} has only "), message
    assert "no space left on device" in message and "Free some space" in message
    assert_good_untouched(tmpfs, before)
    assert not (tmpfs / "big.bin").exists()
    part = tmpfs / "big.bin.ckptfetch-partial"
    assert not part.exists() or part.stat().st_blocks == 0, "nothing was written"
    faultstats.count("full-disk runs ending in one clean error")


def _fill(folder: Path) -> Path:
    """Eat the free space left, as another program would."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("connections", ["1", "4"], ids=["one-stream", "segmented"])
def test_disk_filling_up_keeps_the_partial_and_resumes_after_space_is_freed(
        connections: str, server: TestServer, tmp_path: Path, tmpfs: Path) -> None:
    remount(tmpfs, "size=12m")
    big = blob(9 << 20, seed=2)  # above the 8 MiB probe: with 4 connections it comes in pieces
    server.add("/big.bin", big)
    server.rate = 3 << 20
    m = manifest(tmp_path, server, {"big.bin": {"url": server.url + "/big.bin", "sha256": sha256(big)}})
    dest = tmpfs / "dest"
    before = place_good(m, dest)
    env = cli_env(CKPTFETCH_CONNECTIONS=connections)
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = dest / "big.bin.ckptfetch-partial"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_blocks * 512 > (1 << 20)):
        assert time.monotonic() < deadline and proc.poll() is None, "the download did not start"
        time.sleep(0.02)
    side = part.with_name(part.name + ".json")
    while sum(p[2] - p[0] for p in json.loads(side.read_text()).get("pieces") or [[0, 0, 1 << 20]]) < (1 << 20):
        assert time.monotonic() < deadline and proc.poll() is None, "no progress was saved"
        time.sleep(0.02)  # segmented: wait until the sidecar records some progress, as it would after a while
    filler = _fill(tmpfs)
    out, err = proc.communicate(timeout=60)
    message = one_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert message.startswith("error: big.bin: cannot write ") and "No space left on device" in message
    assert "Free some space" in message and "run the same command again" in message
    assert "was kept at" in message, "the message says the partial was kept, and where"
    assert_good_untouched(dest, before)
    assert not (dest / "big.bin").exists()
    assert part.exists() and part.with_name(part.name + ".json").exists(), "the partial is kept for the resume"
    faultstats.count("full-disk runs ending in one clean error")

    assert {p.name for p in dest.iterdir()} == {".ckptfetch", "good.bin", part.name, side.name}, "no stray files"
    filler.unlink()  # the user frees space
    server.rate = None
    time.sleep(0.3)
    sent = server.bytes_sent("/big.bin")
    since = len(server.requests)
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert (dest / "big.bin").read_bytes() == big
    assert_good_untouched(dest, before)
    assert server.bytes_sent("/big.bin") - sent < len(big) - (1 << 20), "the resume re-sent what was kept"
    assert any("range" in q.headers and not q.headers["range"].startswith("bytes=0-")
               for q in server.requests[since:] if q.path == "/big.bin")
    assert not list(dest.rglob("*.ckptfetch-partial*"))


def test_full_disk_during_extraction(server: TestServer, tmp_path: Path, tmpfs: Path) -> None:
    members = {f"m{i}.pth": blob(600_000, seed=10 + i) for i in range(2)}
    archive = make_archive("zip", members)
    server.add("/pack.zip", archive)
    m = manifest(tmp_path, server, {f"pack/{k}": {"archive": "pack", "member": k, "sha256": sha256(v)}
                                    for k, v in members.items()},
                 {"pack": {"url": server.url + "/pack.zip", "sha256": sha256(archive)}})
    before = place_good(m, tmpfs)
    r = run_cli("get", str(m), "--dest", str(tmpfs), "--no-progress")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert errors and all("No space left on device" in e and "Free some space" in e for e in errors), r.stderr
    assert any(e.startswith("error: pack/m") for e in errors)
    assert_good_untouched(tmpfs, before)
    assert not list(tmpfs.rglob("pack/*.ckptfetch-partial")), "an extracted member's partial is removed"
    faultstats.count("full-disk runs ending in one clean error")

    remount(tmpfs, "size=8m")
    r = run_cli("get", str(m), "--dest", str(tmpfs), "--no-progress")
    assert r.returncode == 0, r.stderr
    for k, v in members.items():
        assert (tmpfs / "pack" / k).read_bytes() == v
    assert server.hits("/pack.zip") == 1, "the cached archive was used, not fetched again"


def test_read_only_destination(server: TestServer, tmp_path: Path, tmpfs: Path) -> None:
    other = blob(100_000, seed=5)
    server.add("/other.bin", other)
    m = manifest(tmp_path, server, {"other.bin": {"url": server.url + "/other.bin", "sha256": sha256(other)}})
    before = place_good(m, tmpfs)
    remount(tmpfs, "ro")
    try:
        r = run_cli("get", str(m), "--dest", str(tmpfs), "--only", "good.bin")
        assert r.returncode == 0, "everything present: a read-only DIR is fine" + r.stderr
        assert run_cli("verify", str(tmpfs)).returncode == 0
        os.utime(m)  # a checkout touches the manifest: the record cannot take its new mtime, and need not
        r = run_cli("get", str(m), "--dest", str(tmpfs), "--only", "good.bin")
        assert r.returncode == 0, r.stderr
        assert run_cli("verify", str(tmpfs)).returncode == 0
        r = run_cli("get", str(m), "--dest", str(tmpfs), "--no-progress")
        message = one_error(r)
        assert "other.bin" in message and "Read-only file system" in message and "--dest" in message, message
        assert server.hits("/other.bin") == 0, "nothing is downloaded that cannot be written"
        assert_good_untouched(tmpfs, before)
        r = run_cli("get", str(m), "--dest", str(tmpfs / "sub"), "--no-progress")
        assert "Read-only file system" in one_error(r, code=2), "a destination that cannot be made: a usage error"
        faultstats.count("read-only runs ending in one clean error")
    finally:
        remount(tmpfs, "rw")
