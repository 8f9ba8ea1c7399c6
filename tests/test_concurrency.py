"""Many processes at once (README Guarantee 8).

Ten `ckptfetch get` processes on one manifest and one DIR all exit 0 and each
file crosses the network once (server hit and byte counters), plain, archived
and segmented alike. Locks left by a killed process, by a crash half-way
through creating one, or by a host that stopped its heartbeat do not block the
next run; a live holder is waited for.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ckptfetch import proclock
from ckptfetch.compat import boot_id as _boot_id
from ckptfetch.compat import pid_namespace as _pid_namespace
from ckptfetch.compat import start_time as _start_time

from . import faultstats
from .conftest import blob, cli_env, run_cli, sha256
from .httpserver import TestServer
from .samples import make_archive

PROCS = 10


def lock_path(dest: Path, key: str) -> Path:
    return dest / ".ckptfetch/locks" / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".lock")


def test_ten_processes_fetch_each_file_once(server: TestServer, tmp_path: Path) -> None:
    files: dict[str, dict[str, object]] = {}
    sizes: dict[str, int] = {}
    for i in range(4):
        data = blob(200_000 + i, seed=i)
        server.add(f"/f{i}.bin", data)
        files[f"d{i % 2}/f{i}.bin"] = {"url": f"{server.url}/f{i}.bin", "sha256": sha256(data)}
        sizes[f"/f{i}.bin"] = len(data)
    big = blob(9 << 20, seed=99)  # above the 8 MiB probe: fetched in pieces over several connections
    server.add("/big.bin", big)
    files["big.bin"] = {"url": server.url + "/big.bin", "sha256": sha256(big), "size": len(big)}
    members = {f"m{i}.pth": blob(100_000, seed=50 + i) for i in range(3)}
    archive = make_archive("zip", members)
    server.add("/pack.zip", archive)
    for name, data in members.items():
        files[f"pack/{name}"] = {"archive": "pack", "member": name, "sha256": sha256(data)}
    m = tmp_path / "crowd.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "crowd", "files": files,
                             "archives": {"pack": {"url": server.url + "/pack.zip", "sha256": sha256(archive)}}}))
    server.delay = 0.1  # every response starts late, so the processes overlap
    dest = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--jobs", "3",
                               "--no-progress"], env=cli_env(CKPTFETCH_CONNECTIONS="4"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PROCS)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for path, size in sizes.items():
        assert server.hits(path) == 1, f"{path} was requested {server.hits(path)} times"
        assert server.bytes_sent(path) == size
    assert server.hits("/pack.zip") == 1
    assert server.bytes_sent("/big.bin") == len(big), "the segmented file crossed the network more than once"
    assert server.bytes_sent("/pack.zip") == len(archive)
    assert run_cli("verify", str(dest)).returncode == 0
    assert not list(dest.rglob("*.ckptfetch-partial*"))
    assert not list((dest / ".ckptfetch/locks").glob("*.lock")), "locks are removed when released"
    faultstats.count("concurrent processes on one DIR", PROCS)


def _manifest(server: TestServer, tmp_path: Path, size: int = 300_000) -> tuple[Path, bytes]:
    data = blob(size, seed=3)
    server.add("/f.bin", data)
    m = tmp_path / "one.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "one", "files": {
        "f.bin": {"url": server.url + "/f.bin", "sha256": sha256(data)}}}))
    return m, data


def test_lock_of_a_killed_process_does_not_block(server: TestServer, tmp_path: Path) -> None:
    m, data = _manifest(server, tmp_path)
    dest = tmp_path / "out"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)],
                            env=cli_env(CKPTFETCH_TEST_HOOKS="download-before-rename", CKPTFETCH_TEST_HOOKS_DIR=str(hooks)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (hooks / "download-before-rename").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    lock = lock_path(dest, "file:f.bin")
    assert lock.exists(), "the killed process held the file's lock"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.exists(), "a SIGKILLed process leaves its lock file behind"
    t0 = time.monotonic()
    r = run_cli("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 10
    assert (dest / "f.bin").read_bytes() == data
    assert not lock.exists()
    faultstats.count("stale locks recovered")


def _plant(dest: Path, owner: dict[str, object] | None, age: float) -> Path:
    lock = lock_path(dest, "file:f.bin")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps(owner) if owner is not None else "")
    t = time.time() - age
    os.utime(lock, (t, t))
    return lock


def test_stale_locks_of_every_kind_are_broken(server: TestServer, tmp_path: Path) -> None:
    m, data = _manifest(server, tmp_path)
    me = socket.gethostname()
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    plants = {
        "same host, dead pid": ({"host": me, "boot": _boot_id(), "pidns": _pid_namespace(), "pid": dead_pid.pid,
                                 "start": "1", "token": "x"}, 0),
        "same host, reused pid": ({"host": me, "boot": _boot_id(), "pidns": _pid_namespace(), "pid": os.getpid(),
                                   "start": "1", "token": "x"}, 0),
        "same host, other pid namespace, no heartbeat": ({"host": me, "boot": _boot_id(), "pidns": "pid:[1]", "pid": 1,
                                                          "start": "1", "token": "x"}, 1000),
        "same host, earlier boot": ({"host": me, "boot": "another-boot", "pid": os.getpid(), "start": "1", "token": "x"}, 0),
        "other host, no heartbeat": ({"host": "node-17", "boot": "b", "pid": 1, "start": "1", "token": "x"}, 1000),
        "half-written": (None, 60),
    }
    for n, (why, (owner, age)) in enumerate(plants.items()):
        dest = tmp_path / f"out{n}"
        _plant(dest, owner, age)
        t0 = time.monotonic()
        r = run_cli("get", str(m), "--dest", str(dest), timeout=30)
        assert r.returncode == 0, (why, r.stderr)
        assert time.monotonic() - t0 < 10, why
        assert (dest / "f.bin").read_bytes() == data
        faultstats.count("stale locks recovered")


def test_a_live_holder_is_waited_for(server: TestServer, tmp_path: Path) -> None:
    """A lock held by a live process here, or heart-beating on another host, is respected."""
    m, data = _manifest(server, tmp_path)
    dest = tmp_path / "out"
    lock = _plant(dest, {"host": socket.gethostname(), "boot": _boot_id(), "pidns": _pid_namespace(), "pid": os.getpid(),
                         "start": _start_time(os.getpid()), "token": "mine"}, 0)
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert proc.poll() is None and server.hits("/f.bin") == 0, "it must wait for the live holder"
    lock.unlink()  # the holder finishes
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (dest / "f.bin").read_bytes() == data

    # Another host, or a container of this host with its own pids (its pid 1 is not ours), that keeps its
    # heartbeat: waited for until the heartbeat is LOCK_STALE old.
    for n, other in enumerate(({"host": "node-17", "boot": "b", "pid": 1, "start": "1", "token": "x"},
                               {"host": socket.gethostname(), "boot": _boot_id(), "pidns": "pid:[1]", "pid": 999999,
                                "start": "1", "token": "x"})):
        dest2 = tmp_path / f"other{n}"
        _plant(dest2, other, 0)
        t0 = time.monotonic()
        r = run_cli("get", str(m), "--dest", str(dest2), env=cli_env(CKPTFETCH_LOCK_STALE="2"))
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 > 1.5, f"a fresh lock of {other['host']} must not be broken at once"


def test_one_heartbeat_thread_touches_every_held_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process holding many locks (one per file of a run) keeps each fresh with one thread, and stops on release."""
    monkeypatch.setattr(proclock, "LOCK_HEARTBEAT", 0.05)
    monkeypatch.setattr(proclock, "_heartbeat", proclock._Heartbeat())  # a thread of this test's own
    old = time.time() - 1000

    def beating() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "lock-heartbeat" and t.is_alive())

    before = beating()
    with proclock.locked(tmp_path, "file:a"), proclock.locked(tmp_path, "file:b"):
        locks = sorted((tmp_path / ".ckptfetch" / "locks").glob("*.lock"))
        assert len(locks) == 2
        for p in locks:
            os.utime(p, (old, old))
        deadline = time.monotonic() + 10
        while any(p.stat().st_mtime < old + 500 for p in locks):
            assert time.monotonic() < deadline, "a held lock was not touched"
            time.sleep(0.02)
        assert beating() - before == 1, "one heartbeat thread for every lock of the process"
        assert proclock._heartbeat.held == set(locks)
    assert not proclock._heartbeat.held and not any(p.exists() for p in locks)
