"""Crash and resume (README Guarantee 12): SIGKILL the real CLI, then run it again.

Kill points come two ways: at random times while a throttled server feeds a
plain file and an archive (so they land mid-download, mid-extraction or
between steps), and at named points reached through the test-only hooks in
`ckptfetch._testhooks` (CKPTFETCH_TEST_HOOKS): before and after a download's
rename, after the archive arrived, inside a member's extraction, before and
after a member's rename, before the record is written.

After every kill: no target holds wrong bytes and nothing is written outside
DIR. The next run asks each server path for exactly the bytes it lacks
(`Range: bytes=KEPT-`, or nothing at all when the partial is complete), and
the last run leaves DIR byte-identical with no partial, sidecar or cached
archive behind. Counts go to tests/faultstats.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import faultstats
from .conftest import blob, cli_env, run_cli, sha256
from .httpserver import TestServer
from .samples import make_archive

SLOW = os.environ.get("CKPTFETCH_SLOW") == "1"
ROUNDS = 12 if SLOW else 3
KILLS_PER_ROUND = 4
MEMBERS = {f"pack/m{i}.pth": blob(300_000 + i * 1000, seed=40 + i) for i in range(3)}
BIG = blob(1_500_000, seed=7)
ARCHIVE = make_archive("tar.gz", MEMBERS)  # random bytes: the archive is as big as its members
NAMED_POINTS = ["download-before-rename", "download-after-rename", "archive-downloaded", "extract-member",
                "extract-before-rename", "extract-after-rename", "record", "extract-member"]


def setup(server: TestServer, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    server.add("/big.bin", BIG)
    server.add("/pack.tgz", ARCHIVE)
    files: dict[str, dict[str, object]] = {"big.bin": {"url": server.url + "/big.bin", "sha256": sha256(BIG)}}
    expected = {"big.bin": BIG}
    for n, (member, data) in enumerate(MEMBERS.items()):
        files[f"ckpt/m{n}.pth"] = {"archive": "pack", "member": member, "sha256": sha256(data), "size": len(data)}
        expected[f"ckpt/m{n}.pth"] = data
    m = tmp_path / "crash.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "crash", "files": files,
                             "archives": {"pack": {"url": server.url + "/pack.tgz", "sha256": sha256(ARCHIVE)}}}))
    return m, expected


def partials(dest: Path) -> dict[str, tuple[Path, int]]:
    """Per server path: the partial that a resume continues, and the full size."""
    return {"/big.bin": (dest / "big.bin.ckptfetch-partial", len(BIG)),
            "/pack.tgz": (dest / ".ckptfetch/archives/crash--pack.ckptfetch-partial", len(ARCHIVE))}


def kept_bytes(dest: Path) -> dict[str, int | None]:
    """Bytes each path's next request must start from; None: no request at all is due."""
    out: dict[str, int | None] = {}
    for path, (part, total) in partials(dest).items():
        done = part.with_name(part.name.removesuffix(".ckptfetch-partial"))
        size = part.stat().st_size if part.exists() and part.with_name(part.name + ".json").exists() else 0
        out[path] = None if done.exists() or size == total else size
    if all((dest / f"ckpt/m{n}.pth").exists() for n in range(len(MEMBERS))):
        out["/pack.tgz"] = None  # every member is in place: the archive is not needed
    return out


def check_requests(server: TestServer, since: int, kept: dict[str, int | None]) -> None:
    """The first request of this run for each path asks only for what is missing."""
    for path, k in kept.items():
        reqs = [r for r in server.requests[since:] if r.path == path]
        if k is None:
            assert not reqs, f"{path}: requested again although everything was received"
        elif reqs:
            got = reqs[0].headers.get("range")
            if k:
                assert got == f"bytes={k}-", f"{path}: first request asked for {got!r}, {k} bytes were already received"
            else:  # from scratch: the whole file, or the probe for a segmented download
                assert got is None or got.startswith("bytes=0-"), f"{path}: fresh download asked for {got!r}"


def check_invariants(tmp_path: Path, dest: Path, expected: dict[str, bytes], before: set[str]) -> None:
    for rel, data in expected.items():
        if (dest / rel).exists():
            assert (dest / rel).read_bytes() == data, f"{rel} holds wrong bytes after a kill"
    allowed = [dest, *(tmp_path / b for b in before)]  # the manifest, the hooks' markers, other rounds' DIRs
    outside = {p for p in tmp_path.rglob("*") if not any(p.is_relative_to(a) for a in allowed)}
    assert not outside, f"written outside the destination: {outside}"


def resume_and_check(server: TestServer, m: Path, dest: Path, expected: dict[str, bytes]) -> dict[str, int | None]:
    """Run `get` again after a kill: it must succeed, ask only for missing bytes and finish byte-identical."""
    kept = kept_bytes(dest)
    since = len(server.requests)
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress")
    assert r.returncode == 0, r.stderr
    check_requests(server, since, kept)
    check_finished(dest, expected)
    return kept


def check_finished(dest: Path, expected: dict[str, bytes]) -> None:
    for rel, data in expected.items():
        assert (dest / rel).read_bytes() == data, rel
    left = [p for p in dest.rglob("*") if ".ckptfetch-partial" in p.name]
    assert not left, f"partials or sidecars left after a finished run: {left}"
    assert not list((dest / ".ckptfetch/archives").glob("*")), "the cached archive was not dropped"
    assert {p.name for p in dest.iterdir()} == {".ckptfetch", "big.bin", "ckpt"}
    assert run_cli("verify", str(dest)).returncode == 0


def start(m: Path, dest: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--no-progress"],
                            env=cli_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def settle(server: TestServer) -> None:
    """Wait until the server noticed the dead client (its counters stop moving)."""
    last = -1
    while (now := server.bytes_sent()) != last:
        last = now
        time.sleep(0.15)


def test_sigkill_at_random_times_then_resume(server: TestServer, tmp_path: Path) -> None:
    m, expected = setup(server, tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    rng = random.Random(20260505)
    server.rate = 1_500_000  # bytes/s per response: a full run takes about a second
    for round_ in range(ROUNDS):
        dest = tmp_path / f"dest{round_}"
        before.add(dest.name)
        for _ in range(KILLS_PER_ROUND):
            kept = kept_bytes(dest)
            since = len(server.requests)
            proc = start(m, dest)
            time.sleep(rng.uniform(0.25, 1.1))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            settle(server)
            check_requests(server, since, kept)
            check_invariants(tmp_path, dest, expected, before)
            faultstats.count("kill points (random times, SIGKILL)")
        resume_and_check(server, m, dest, expected)


@pytest.mark.parametrize("point", NAMED_POINTS, ids=[f"{p}-{i}" for i, p in enumerate(NAMED_POINTS)])
def test_sigkill_at_a_named_point_then_resume(point: str, server: TestServer, tmp_path: Path) -> None:
    m, expected = setup(server, tmp_path)
    before = {p.name for p in tmp_path.iterdir()} | {"hooks"}
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    dest = tmp_path / "dest"
    proc = start(m, dest, CKPTFETCH_TEST_HOOKS=point, CKPTFETCH_TEST_HOOKS_DIR=str(hooks))
    deadline = time.monotonic() + 30
    while not (hooks / point).exists():
        assert proc.poll() is None, f"the run ended before reaching {point}"
        assert time.monotonic() < deadline, f"{point} was never reached"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    settle(server)
    check_invariants(tmp_path, dest, expected, before)
    faultstats.count(f"kill points (named: {point.split('-')[0]})")
    sent = server.bytes_sent()
    kept = resume_and_check(server, m, dest, expected)
    if point != "download-before-rename" or kept["/pack.tgz"] is None:
        # Every point but the first is reached after the downloads it concerns completed.
        resent = server.bytes_sent() - sent
        assert resent <= sum(total - (k or 0) for (_, total), k in zip(partials(dest).values(), kept.values(), strict=True) if k is not None)


def test_sigkill_mid_segmented_download_resumes_every_piece(server: TestServer, tmp_path: Path) -> None:
    """Pieces over several connections: the next run asks each piece for exactly the bytes it lacks."""
    big = blob(9 << 20, seed=11)  # above the 8 MiB probe
    server.add("/seg.bin", big)
    server.rate = 1 << 20
    m = tmp_path / "seg.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "seg", "files": {"seg.bin": {"url": server.url + "/seg.bin",
                                                                                   "sha256": sha256(big)}}}))
    dest = tmp_path / "out"
    side = dest / "seg.bin.ckptfetch-partial.json"
    rng = random.Random(99)
    kills = 0
    for _ in range(3 if not SLOW else 10):
        if side.exists() and len(big) - sum(p[2] - p[0] for p in json.loads(side.read_text())["pieces"]) < (3 << 20):
            break  # too little left to land a kill mid-download
        proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)],
                                env=cli_env(CKPTFETCH_CONNECTIONS="4"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_done = sum(p[2] - p[0] for p in json.loads(side.read_text())["pieces"]) if side.exists() else 0
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline and proc.poll() is None
            try:
                pieces = json.loads(side.read_text()).get("pieces") or []
            except (OSError, ValueError):
                pieces = []
            if sum(p[2] - p[0] for p in pieces) > start_done + (512 << 10):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        settle(server)
        assert not (dest / "seg.bin").exists()
        kills += 1
        faultstats.count("kill points (random times, SIGKILL)")
    assert kills >= 3
    pieces = json.loads(side.read_text())["pieces"]
    kept = sum(p[2] - p[0] for p in pieces)
    server.rate = None
    sent = server.bytes_sent("/seg.bin")
    since = len(server.requests)
    r = run_cli("get", str(m), "--dest", str(dest), env=cli_env(CKPTFETCH_CONNECTIONS="4"))
    assert r.returncode == 0, r.stderr
    assert (dest / "seg.bin").read_bytes() == big
    asked = sorted(q.headers["range"] for q in server.requests[since:] if q.path == "/seg.bin")
    assert asked == sorted(f"bytes={pos}-{end - 1}" for _, end, pos in pieces if pos < end)
    assert server.bytes_sent("/seg.bin") - sent == len(big) - kept, "bytes already received were sent again"
    assert not list(dest.rglob("*.ckptfetch-partial*"))


@pytest.mark.parametrize("target_present", [True, False], ids=["target-present", "target-missing"])
def test_leftovers_of_a_kill_during_a_sidecar_save_are_removed(target_present: bool, server: TestServer,
                                                               tmp_path: Path) -> None:
    """A kill between writing the sidecar's temporary file and renaming it leaves `*.json.tmp` behind."""
    m, expected = setup(server, tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    if target_present:
        (dest / "big.bin").write_bytes(BIG)
    (dest / "big.bin.ckptfetch-partial").write_bytes(BIG[:1000])
    (dest / "big.bin.ckptfetch-partial.json.tmp").write_text('{"url": "http://half-writ')
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress")
    assert r.returncode == 0, r.stderr
    check_finished(dest, expected)



RESEND_KILLS = 20
RESEND_SIZE = 128 << 20  # a probe and 15 pieces of 8 MiB: every one of 16 connections has a piece


def kept_in_pieces(sidecar: Path) -> int:
    """Bytes a segmented partial keeps, by its sidecar (none before the sidecar was first saved)."""
    try:
        return sum(p[2] - p[0] for p in json.loads(sidecar.read_text())["pieces"])
    except FileNotFoundError:
        return 0


def sent_twice(server: TestServer, path: str, sidecar: Path) -> int:
    """Bytes the server sent for `path` that the partial does not keep: the next run asks for them again."""
    return server.bytes_sent(path) - kept_in_pieces(sidecar)


def test_sigkill_resends_at_most_4_mib_plus_5_percent(server: TestServer, tmp_path: Path) -> None:
    """What a kill -9 costs: the bytes that arrived were written, and the sidecar knew about them.

    A 128 MiB file over 16 connections is killed at random times of its
    download, 20 times in all (runs resume one another's partial). After
    each kill, the bytes the server sent that the partial does not keep are
    what the next run asks for again: at most 4 MiB + 5 % of the file.
    """
    big = random.Random(1616).randbytes(RESEND_SIZE)
    m = tmp_path / "big.yaml"
    env = cli_env(CKPTFETCH_CONNECTIONS="16")
    allowed = (4 << 20) + RESEND_SIZE // 20
    rng = random.Random(1717)
    resent: list[int] = []
    dest, path, wasted = tmp_path / "none", "", 0
    while len(resent) < RESEND_KILLS:
        side = dest / "big.bin.ckptfetch-partial.json"
        if not path or RESEND_SIZE - kept_in_pieces(side) < (48 << 20):  # too little left to land a kill in
            dest, path, wasted = tmp_path / f"k{len(resent)}", f"/big{len(resent)}.bin", 0  # a fresh download
            server.add(path, big)
            m.write_text(json.dumps({"ckptfetch": 1, "name": "big", "files": {"big.bin": {
                "url": server.url + path, "sha256": sha256(big)}}}))
            side = dest / "big.bin.ckptfetch-partial.json"
        server.rate = 1 << 20  # bytes/s per connection: 16 MiB/s over 16
        before = server.bytes_sent(path)
        proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--no-progress"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while server.bytes_sent(path) == before:  # the download has begun
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before its download began"
            assert time.monotonic() < deadline, "the download did not begin"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.3, 1.5))  # all 16 connections are open after ~0.7 s
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        settle(server)
        now = sent_twice(server, path, side)
        resent.append(now - wasted)
        wasted = now
        faultstats.count("kill points (random times, SIGKILL)")
    server.rate = None
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert (dest / "big.bin").read_bytes() == big
    assert server.bytes_sent(path) - wasted == RESEND_SIZE, "the last resume asked for more than it lacked"
    faultstats.observe("kill -9 of a 128 MiB download over 16 connections, bytes sent twice (KiB)",
                       [r // 1024 for r in resent])
    assert max(resent) <= allowed, f"sent again after a kill (KiB): {[r // 1024 for r in resent]}"
