"""The import-light `verify` path: it answers only when everything is OK from the cache."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
import yaml

import ckptfetch
from ckptfetch import fastverify, state

from .conftest import blob, md5, run_cli
from .httpserver import TestServer


@pytest.fixture
def installed(server: TestServer, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    contents = {"a.bin": blob(3000, 1), "sub/b.bin": blob(5000, 2)}
    files = {rel: {"url": server.add(f"/{rel}", data), "md5": md5(data)} for rel, data in contents.items()}
    man = tmp_path / "fv.yaml"
    man.write_text(yaml.safe_dump({"ckptfetch": 1, "name": "fv", "files": files}))
    dest = tmp_path / "models"
    assert ckptfetch.fetch(str(man), dest).ok
    return dest, contents


def test_constants_match_state() -> None:
    from ckptfetch.hashing import ALGORITHMS

    assert (fastverify.STATE_DIR, fastverify.RECORD, fastverify.CACHE) == (state.STATE_DIR, state.RECORD, state.CACHE)
    assert set(fastverify.ALGORITHMS) == set(ALGORITHMS)


def test_a_lock_file_beside_the_manifest_is_left_to_the_full_verify(installed: tuple[Path, dict[str, bytes]]) -> None:
    """A lock's pins win over the record's; only the full verify reads it."""
    dest, _ = installed
    assert fastverify.all_ok_from_cache(str(dest)) is not None
    (dest.parent / "fv.lock.yaml").write_text("lock: 1\n")
    assert fastverify.all_ok_from_cache(str(dest)) is None


def test_files_a_layout_placed_elsewhere_are_answered_where_they_are(
        installed: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    dest, _ = installed
    sdir = dest / state.STATE_DIR
    rec = json.loads((sdir / state.RECORD).read_text())
    pins = rec["manifests"]["fv"]["files"].pop("sub/b.bin")
    rec["manifests"]["fv"]["files"]["logical-name"] = {**pins, "at": "sub/b.bin", "commit": "c" * 40}
    (sdir / state.RECORD).write_text(json.dumps(rec))
    assert fastverify.all_ok_from_cache(str(dest)) == ["a.bin", "logical-name"]
    assert fastverify.run(str(dest), quiet=False)
    fast = capsys.readouterr()
    from ckptfetch.report import print_verify

    # The record was edited by hand to put a file under a logical name its manifest does not have: compare
    # with the full verify of the record alone (without --record-only it reports sub/b.bin as MISSING).
    print_verify(ckptfetch.verify(dest, record_only=True), quiet=False, as_json=False)
    assert capsys.readouterr() == fast


@pytest.mark.parametrize("text", ["models", "models/", "./models", "a//b/./c/", "/abs/x/", ".", "./", "//net/x", "///x",
                                  "a/../b", "../x"])
def test_shown_is_str_of_path(text: str) -> None:
    assert fastverify.shown(text) == str(PurePosixPath(text))


def test_all_ok_answers_like_the_full_verify(installed: tuple[Path, dict[str, bytes]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    dest, _ = installed
    assert fastverify.all_ok_from_cache(str(dest)) == ["a.bin", "sub/b.bin"]
    assert fastverify.run(str(dest), quiet=False)
    fast = capsys.readouterr()
    from ckptfetch.report import print_verify

    print_verify(ckptfetch.verify(dest), quiet=False, as_json=False)
    assert capsys.readouterr() == fast
    assert fast.out == "a.bin: OK\nsub/b.bin: OK\n"
    assert fastverify.run(str(dest), quiet=True)
    assert capsys.readouterr().out == ""


def test_edit_in_place_with_mtime_restored_is_not_answered(installed: tuple[Path, dict[str, bytes]]) -> None:
    dest, _ = installed
    victim = dest / "sub/b.bin"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only ctime changed
    assert fastverify.all_ok_from_cache(str(dest)) is None
    result = ckptfetch.verify(dest)
    assert {i.path: i.status for i in result.items} == {"a.bin": "OK", "sub/b.bin": "FAILED"}


@pytest.mark.parametrize("change", ["missing", "no-cache", "stale-digest", "record-edited", "not-a-dir", "unpinned"])
def test_anything_unusual_falls_back(installed: tuple[Path, dict[str, bytes]], change: str) -> None:
    dest, _ = installed
    sdir = dest / state.STATE_DIR
    if change == "missing":
        (dest / "a.bin").unlink()
    elif change == "no-cache":
        (sdir / state.CACHE).unlink()
    elif change == "stale-digest":
        import sqlite3

        with sqlite3.connect(sdir / state.CACHE) as conn:
            conn.execute("UPDATE verified SET digests = ? WHERE path = 'a.bin'", ('{"md5": "' + "0" * 32 + '"}',))
        conn.close()
    elif change == "record-edited":
        import json

        rec = json.loads((sdir / state.RECORD).read_text())
        rec["manifests"]["fv"]["files"]["a.bin"]["md5"] = "f" * 32
        (sdir / state.RECORD).write_text(json.dumps(rec))
    elif change == "unpinned":
        import json

        rec = json.loads((sdir / state.RECORD).read_text())
        rec["manifests"]["fv"]["files"]["a.bin"] = {"size": 3000}
        (sdir / state.RECORD).write_text(json.dumps(rec))
    elif change == "not-a-dir":
        assert not fastverify.run(str(dest / "a.bin"), quiet=False)
        return
    assert fastverify.all_ok_from_cache(str(dest)) is None
    assert not fastverify.run(str(dest), quiet=False)


def test_cli_output_and_exit_code_unchanged(installed: tuple[Path, dict[str, bytes]]) -> None:
    dest, _ = installed
    fast = run_cli("verify", str(dest) + "/")
    full = run_cli("verify", str(dest), "--full")
    assert (fast.returncode, fast.stdout, fast.stderr) == (full.returncode, full.stdout, full.stderr) == (
        0, "a.bin: OK\nsub/b.bin: OK\n", f"ckptfetch: 2 files in {dest}: 2 OK\n")
    (dest / "a.bin").write_bytes(b"x" * 3000)
    r = run_cli("verify", str(dest))
    assert r.returncode == 1 and "a.bin: FAILED" in r.stdout
