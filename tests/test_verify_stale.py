"""`verify DIR` never passes stale files: the record is compared with the manifest it came from.

In CI `models/` often comes back from a cache; if the manifest's pins changed
since, the tests must not run on the old weights.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from .conftest import blob, invoke, md5
from .httpserver import TestServer


def _setup(server: TestServer, tmp_path: Path) -> tuple[Path, Path, dict[str, dict[str, object]]]:
    a, b = blob(3000, seed=1), blob(4000, seed=2)
    server.add("/a.bin", a)
    server.add("/b.bin", b)
    files: dict[str, dict[str, object]] = {
        "a.bin": {"url": server.url + "/a.bin", "md5": md5(a)},
        "sub/b.bin": {"url": server.url + "/b.bin", "md5": md5(b), "size": len(b)},
    }
    m = tmp_path / "demo.yaml"
    m.write_text(yaml.safe_dump({"ckptfetch": 1, "name": "demo", "files": files}))
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    return m, dest, files


def _rewrite(m: Path, files: dict[str, dict[str, object]]) -> None:
    m.write_text(yaml.safe_dump({"ckptfetch": 1, "name": "demo", "files": files}))


def test_a_changed_hash_in_the_manifest_fails_verify(server: TestServer, tmp_path: Path) -> None:
    m, dest, files = _setup(server, tmp_path)
    assert invoke("verify", str(dest)).returncode == 0
    new = blob(3000, seed=9)
    server.replace("/a.bin", new)
    files["a.bin"]["md5"] = md5(new)
    _rewrite(m, files)
    r = invoke("verify", str(dest))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["a.bin: FAILED", "sub/b.bin: OK"]
    assert f"a.bin: the manifest now expects md5 {md5(new)}" in r.stderr
    repair = f"ckptfetch get {m} --dest {dest}"
    assert f"run: {repair}" in r.stderr
    # --record-only keeps the old behaviour: the record alone
    assert invoke("verify", str(dest), "--record-only").returncode == 0
    # the printed command repairs it
    assert invoke(*shlex.split(repair)[1:]).returncode == 0
    assert (dest / "a.bin").read_bytes() == new
    r = invoke("verify", str(dest))
    assert r.returncode == 0, r.stderr


def test_a_changed_size_and_an_added_hash(server: TestServer, tmp_path: Path) -> None:
    m, dest, files = _setup(server, tmp_path)
    files["sub/b.bin"]["size"] = 4001
    _rewrite(m, files)
    r = invoke("verify", str(dest))
    assert r.returncode == 1 and "sub/b.bin: the manifest now expects 4001 bytes" in r.stderr
    # A new pin the record does not hold is checked on the bytes: a right one passes, a wrong one fails.
    files["sub/b.bin"]["size"] = 4000
    files["sub/b.bin"]["sha1"] = "0" * 40
    _rewrite(m, files)
    r = invoke("verify", str(dest))
    assert r.returncode == 1 and "sub/b.bin: FAILED" in r.stdout and "sha1" in r.stderr


def test_a_file_added_to_the_manifest_is_missing(server: TestServer, tmp_path: Path) -> None:
    m, dest, files = _setup(server, tmp_path)
    c = blob(100, seed=3)
    server.add("/c.bin", c)
    files["c.bin"] = {"url": server.url + "/c.bin", "md5": md5(c)}
    _rewrite(m, files)
    r = invoke("verify", str(dest))
    assert r.returncode == 1
    assert "c.bin: MISSING" in r.stdout and "c.bin: added to the manifest since the last `get`" in r.stderr
    assert invoke("get", str(m), "--dest", str(dest)).returncode == 0
    assert invoke("verify", str(dest)).returncode == 0


def test_the_manifest_is_found_by_name_when_it_moved(server: TestServer, tmp_path: Path) -> None:
    m, dest, files = _setup(server, tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    files["a.bin"]["md5"] = "0" * 32
    (moved / "demo.yaml").write_text(yaml.safe_dump({"ckptfetch": 1, "name": "demo", "files": files}))
    m.unlink()
    r = invoke("verify", str(dest), env={**_env(), "CKPTFETCH_MANIFESTS": str(moved)})
    assert r.returncode == 1 and "a.bin: the manifest now expects md5 " + "0" * 32 in r.stderr
    assert "run: ckptfetch get demo --dest" in r.stderr, "found by name: the command names it so"
    # nowhere to be found: the record alone
    assert invoke("verify", str(dest)).returncode == 0


def test_quiet_verify_prints_nothing_when_all_is_well(server: TestServer, tmp_path: Path) -> None:
    m, dest, _ = _setup(server, tmp_path)
    for args in (["verify", str(dest), "-q"], ["verify", str(dest), "-q", "--full"]):
        r = invoke(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), args
    (dest / "a.bin").write_bytes(b"tampered")
    r = invoke("verify", str(dest), "-q")
    assert r.returncode == 1 and r.stdout == "a.bin: FAILED\n"
    assert f"run: ckptfetch get {m} --dest {dest}" in r.stderr


def _env() -> dict[str, str]:
    from .conftest import cli_env

    return cli_env()
