"""Writing manifests: `hash`, `add`, `lint` (and the round-trip edits `add` makes)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ckptfetch.manifest import load_manifest

from .conftest import REPO, blob, cli_env, invoke, md5, sha256
from .fakehub import FakeHub
from .httpserver import TestServer

# --- hash -------------------------------------------------------------------------------


def test_hash_lines_are_what_md5sum_and_sha256sum_check(tmp_path: Path) -> None:
    (tmp_path / "models" / "sub").mkdir(parents=True)
    (tmp_path / "models" / "a b.pth").write_bytes(blob(3000))
    (tmp_path / "models" / "sub" / "c.pth").write_bytes(blob(10, seed=2))
    (tmp_path / "models" / ".ckptfetch").mkdir()
    (tmp_path / "models" / ".ckptfetch" / "record.json").write_text("{}")
    r = invoke("hash", "models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{md5(blob(3000))}  models/a b.pth", f"{md5(blob(10, seed=2))}  models/sub/c.pth"]
    r2 = invoke("hash", "--algo", "sha256", "models/sub/c.pth", cwd=tmp_path)
    assert r2.stdout == f"{sha256(blob(10, seed=2))}  models/sub/c.pth\n"
    for tool, out in (("md5sum", r.stdout), ("sha256sum", r2.stdout)):
        if shutil.which(tool) is None:
            continue
        (tmp_path / "SUMS").write_text(out)
        check = subprocess.run([tool, "-c", "SUMS"], cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_hash_yaml_entries_paste_into_a_manifest(tmp_path: Path) -> None:
    data = blob(5000)
    (tmp_path / "models" / "x").mkdir(parents=True)
    (tmp_path / "models" / "x" / "w.pth").write_bytes(data)
    r = invoke("hash", "--yaml", "--root", "models", "models/x", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == {"x/w.pth": {"md5": md5(data), "sha256": sha256(data), "size": 5000}}
    assert invoke("hash", "--algo", "md5", "--algo", "sha1", "models", cwd=tmp_path).returncode == 2
    assert invoke("hash", "--yaml", "--root", "elsewhere", "models", cwd=tmp_path).returncode == 2


# --- add ----------------------------------------------------------------------------------

COMMENTED = """\
# My project's checkpoints -- a comment that must survive
ckptfetch: 1
name: mine
root: models

variants:
  minimal: ["small/*"]   # the small ones
  big:
  - big/b.pth

files:
  # The small model
  small/a.pth:
    url: "https://example.org/a.pth"     # quoted on purpose
    md5: 0123456789abcdef0123456789abcdef
  big/b.pth:
    url: https://example.org/b.pth
"""


def test_add_keeps_comments_order_and_quotes(server: TestServer, tmp_path: Path) -> None:
    data = blob(20_000, seed=7)
    url = server.add("/releases/new-model.pth", data)
    m = tmp_path / "mine.yaml"
    m.write_text(COMMENTED)
    r = invoke("add", str(m), url, "--variant", "big", "--path", "big/new.pth", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = m.read_text()
    old, new = COMMENTED.splitlines(), text.splitlines()
    assert [ln for ln in new if ln in old] == old, "every line of the file is still there, in order"
    added = [ln for ln in new if ln not in old]
    assert added == ["  - big/new.pth", "  big/new.pth:", f"    url: {url}", f"    md5: {md5(data)}",
                     f"    sha256: {sha256(data)}", "    size: 20000"]
    loaded = load_manifest(m)
    assert [e.path for e in loaded.select(["big"])] == ["big/b.pth", "big/new.pth"]
    assert (tmp_path / "models" / "big" / "new.pth").read_bytes() == data
    # Fetched once: `get` finds it in place, and `verify` agrees with the record add left.
    assert invoke("get", str(m), "--only", "big/new.pth", cwd=tmp_path).returncode == 0
    assert server.hits("/releases/new-model.pth") == 1
    assert invoke("verify", "models", cwd=tmp_path).stdout == "big/new.pth: OK\n"


def test_add_keeps_comments_where_they_belong(tmp_path: Path) -> None:
    """ruamel.yaml keeps the lines after a node with that node: an append must not leave them above itself."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "b.bin").write_bytes(b"bee")
    m = tmp_path / "m.yaml"
    m.write_text("ckptfetch: 1\nname: m\nroot: models   # r\n\n# The files, one per model\nfiles:\n"
                 "  a.bin:   # first\n    url: https://example.org/a.bin   # same line\n# trailing comment\n")
    url = (tmp_path / "src" / "b.bin").as_uri()
    r = invoke("add", str(m), url, "--variant", "small", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert m.read_text() == (
        "ckptfetch: 1\nname: m\nroot: models   # r\nvariants:\n  small:\n    - b.bin\n\n"
        "# The files, one per model\nfiles:\n  a.bin:   # first\n    url: https://example.org/a.bin   # same line\n"
        f"  b.bin:\n    url: {url}\n    md5: {md5(b'bee')}\n    sha256: {sha256(b'bee')}\n    size: 3\n"
        "# trailing comment\n")


def test_add_creates_a_manifest_and_refuses_a_second_entry(server: TestServer, tmp_path: Path) -> None:
    data = blob(1000, seed=3)
    url = server.add("/w/model.pth", data)
    m = tmp_path / "manifests" / "fresh.yaml"
    r = invoke("add", str(m), url, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["created"] and doc["key"] == "model.pth" and doc["md5"] == md5(data)
    assert yaml.safe_load(m.read_text()) == {"ckptfetch": 1, "name": "fresh", "files": {
        "model.pth": {"url": url, "md5": md5(data), "sha256": sha256(data), "size": 1000}}}
    r = invoke("add", str(m), url, cwd=tmp_path)
    assert r.returncode == 2 and "--replace" in r.stderr
    server.replace("/w/model.pth", blob(1200, seed=4))
    r = invoke("add", str(m), url, "--replace", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_manifest(m).files["model.pth"].integrity.size == 1200


def test_add_pins_a_hub_url_to_the_commit_it_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = blob(4096, seed=9)  # an LFS file: the Hub declares its sha256
    with FakeHub() as hub:
        repo = hub.add_repo("org/model", {"weights.bin": big})
        env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"))
        m = tmp_path / "hub.yaml"
        r = invoke("add", str(m), "hf://org/model/weights.bin", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        entry = yaml.safe_load(m.read_text())["files"]["weights.bin"]
        assert entry["url"] == f"hf://org/model@{repo.commit}/weights.bin"
        assert entry["sha256"] == hashlib.sha256(big).hexdigest() and entry["size"] == 4096
        hub.push("org/model", {"weights.bin": blob(4096, seed=10)})  # main moves on; the pin does not
        r = invoke("get", str(m), "--dest", str(tmp_path / "again"), env=env)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "again" / "weights.bin").read_bytes() == big


@pytest.mark.parametrize(("value", "quoted"), [
    ("0123456789", True), ("yes", True), ("1:20", True), ("ab: c", True), ("#x", True), ("plain.pth", False),
])
def test_add_writes_only_what_the_safe_loader_reads_back(server: TestServer, tmp_path: Path, value: str,
                                                         quoted: bool) -> None:
    """A key YAML 1.1 would read as a number, a boolean or a mapping is quoted (ruamel alone thinks in 1.2:
    `yes` and the base-60 `1:20` are strings there, a boolean and 80 to PyYAML's safe loader)."""
    url = server.add("/f.bin", b"bytes")
    m = tmp_path / "q.yaml"
    r = invoke("add", str(m), url, "--path", value, "--variant", value, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(m.read_text())
    assert list(data["files"]) == [value] and data["variants"] == {value: [value]}
    assert (f"'{value}':" in m.read_text()) == quoted


def test_add_refuses_what_it_cannot_name(server: TestServer, tmp_path: Path) -> None:
    m = tmp_path / "x.yaml"
    r = invoke("add", str(m), "https://drive.google.com/file/d/abc/view?usp=sharing", cwd=tmp_path)
    assert r.returncode == 2 and "--path" in r.stderr
    r = invoke("add", str(m), server.url + "/missing.bin", cwd=tmp_path)
    assert r.returncode == 1 and "404" in r.stderr
    assert not m.exists(), "nothing is written when the fetch fails"
    r = invoke("add", str(m), server.add("/ok.bin", b"ok"), "--path", "../up.bin", cwd=tmp_path)
    assert r.returncode == 2 and "`..`" in r.stderr
    r = invoke("add", "sam-pt", server.url + "/ok.bin", cwd=tmp_path)
    assert r.returncode == 2 and "FILE.yaml" in r.stderr and not (tmp_path / "sam-pt").exists()


def test_add_to_a_bundled_manifest_copy_keeps_everything_else(server: TestServer, tmp_path: Path) -> None:
    m = tmp_path / "sam-pt.yaml"
    shutil.copy(REPO / "manifests" / "sam-pt.yaml", m)
    before = load_manifest(m)
    url = server.add("/extra.pth", blob(100))
    r = invoke("add", str(m), url, "--path", "extra_ckpts/extra.pth", "--variant", "minimal",
               "--dest", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after = load_manifest(m)
    assert {k: v for k, v in after.files.items() if k != "extra_ckpts/extra.pth"} == before.files
    assert after.variants["minimal"] == (*before.variants["minimal"], "extra_ckpts/extra.pth")
    original = (REPO / "manifests" / "sam-pt.yaml").read_text().splitlines()
    assert [ln for ln in m.read_text().splitlines() if ln in original] == original


# --- lint ---------------------------------------------------------------------------------

FRAGILE = """\
ckptfetch: 1
name: fragile
variants:
  all: ["*"]
archives:
  unused:
    url: https://example.org/unused.zip
files:
  nothing.pth:
    url: https://example.org/nothing.pth
  weak-abcdef12.pth:
    url: https://example.org/weak-abcdef12.pth
  hub.bin:
    url: hf://org/repo/hub.bin
    sha256: {}
  pinned-hub.bin:
    url: hf://org/repo@{}/hub.bin
    md5: {}
  mirrors.bin:
    urls: [https://a.example.org/m.bin, https://a.example.org/mirror/m.bin]
    md5: {}
  insecure.bin:
    url: http://example.org/insecure.bin
  hand.pt:
    manual: Ask the authors.
""".format("a" * 64, "1a" * 20, "2b" * 16, "3c" * 16)


def test_lint_finds_each_fragile_spot_on_its_line(tmp_path: Path) -> None:
    m = tmp_path / "fragile.yaml"
    m.write_text(FRAGILE)
    r = invoke("lint", str(m), "--json")
    assert r.returncode == 0, r.stderr
    found = [(w["line"], w["code"], w["key"]) for w in json.loads(r.stdout)["warnings"]]
    assert found == [
        (6, "unused-archive", "unused"),
        (9, "unpinned", "nothing.pth"),
        (11, "weak-pin", "weak-abcdef12.pth"),
        (13, "hub-revision", "hub.bin"),
        (19, "one-host", "mirrors.bin"),
        (22, "unpinned", "insecure.bin"),
        (22, "insecure-url", "insecure.bin"),
        (24, "manual-unpinned", "hand.pt"),
    ]
    r = invoke("lint", str(m), "--strict")
    assert r.returncode == 1 and f"{m}:9: warning: [unpinned] nothing.pth" in r.stdout
    assert invoke("lint", "sam-pt", "--strict").returncode == 0


def test_lint_counts_a_lock_as_pinning_and_checks_variants_into_folders(tmp_path: Path) -> None:
    m = tmp_path / "locked.yaml"
    m.write_text("ckptfetch: 1\nname: locked\nvariants:\n  one: [hf/a.bin]\n  none: [hf/zzz.bin]\n"
                 "files:\n  hf/:\n    url: hf://org/repo/\n  b.bin:\n    url: https://example.org/b.bin\n")
    (tmp_path / "locked.lock.yaml").write_text(
        "ckptfetch-lock: 1\nmanifest: locked\nfiles:\n"
        f"  hf/a.bin:\n    sha256: {'a' * 64}\n    size: 1\n    commit: {'c' * 40}\n"
        f"  b.bin:\n    sha256: {'b' * 64}\n    size: 2\n")
    found = [(w["code"], w["key"]) for w in json.loads(invoke("lint", str(m), "--json").stdout)["warnings"]]
    assert found == [("empty-variant", "none")]


def test_a_broken_manifest_is_a_manifest_error_not_a_warning(tmp_path: Path) -> None:
    m = tmp_path / "bad.yaml"
    m.write_text("ckptfetch: 1\nname: bad\nvariants:\n  v: [nothing/*]\nfiles:\n  a.bin:\n    url: https://x.org/a\n")
    r = invoke("lint", str(m))
    assert r.returncode == 2 and "matches no file" in r.stderr
