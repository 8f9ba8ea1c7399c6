"""Plans that say what they will cost, and honest exits (README "Commands": the plan).

The plan shows each file's size and the total to download, asking the
sources for sizes the manifest does not pin (all at once, within a short
budget); a partial download that will be resumed says so; a dry run that
cannot complete its plan exits 1; an unusable destination is a usage error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ckptfetch.download.partial import Sidecar, partial_paths

from .conftest import blob, cli_env, invoke, md5
from .fakehub import FakeHub
from .httpserver import TestServer

MiB = 1 << 20


def _manifest(tmp_path: Path, files: dict[str, dict[str, object]], **top: object) -> Path:
    m = tmp_path / "costs.yaml"
    m.write_text(yaml.safe_dump({"ckptfetch": 1, "name": "costs", **top, "files": files}))
    return m


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub(page_size=2) as h:
        h.add_repo("org/model", {"model.safetensors": blob(3 * MiB, seed=4), "config.json": b"{}\n"})
        yield h


def _env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_TOKEN", None)
    return env


def test_the_plan_learns_sizes_from_the_sources(server: TestServer, hub: FakeHub, tmp_path: Path) -> None:
    a, b = blob(2 * MiB, seed=1), blob(MiB // 2, seed=2)
    server.add("/a.bin", a)
    server.add("/b.bin", b)
    m = _manifest(tmp_path, {
        "a.bin": {"url": server.url + "/a.bin", "md5": md5(a)},        # no size: HEAD asks the server
        "b.bin": {"url": server.url + "/b.bin", "size": len(b)},         # pinned: nothing to ask
        "model.safetensors": {"url": "hf://org/model/model.safetensors"},  # the Hub's metadata says
    })
    t0 = time.monotonic()
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--dry-run", env=_env(hub, tmp_path))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 10
    lines = r.stdout.splitlines()
    assert "3 to fetch (5.5 MiB)" in lines[0]
    assert "  fetch a.bin  2.0 MiB" in lines and "  fetch b.bin  512.0 KiB" in lines
    assert "  fetch model.safetensors  3.0 MiB" in lines
    assert [q.method for q in server.requests] == ["HEAD"], "only the unpinned plain file is asked, with a HEAD"
    doc = json.loads(invoke("get", str(m), "--dest", str(tmp_path / "out"), "--dry-run", "--json",
                            env=_env(hub, tmp_path)).stdout)
    assert {f["path"]: f["size"] for f in doc["files"]} == {"a.bin": len(a), "b.bin": len(b), "model.safetensors": 3 * MiB}


def test_a_run_of_many_unsized_files_asks_no_size_first(server: TestServer, tmp_path: Path) -> None:
    """One round of requests for the sizes is worth it; a HEAD more per file for hundreds of files is not.

    `get` asks only when at most MAX_PROBES (32) files lack a size; `--dry-run` always asks.
    """
    files = {}
    for i in range(40):
        data = blob(1000 + i, seed=100 + i)
        server.add(f"/f{i}.bin", data)
        files[f"f{i}.bin"] = {"url": f"{server.url}/f{i}.bin", "md5": md5(data)}
    m = _manifest(tmp_path, files)
    r = invoke("get", str(m), "--dest", str(tmp_path / "dry"), "--dry-run", "--no-cache")
    assert r.returncode == 0, r.stderr
    assert [q.method for q in server.requests].count("HEAD") == 40
    assert "40 to fetch (" in r.stdout and "size unknown" not in r.stdout
    server.requests.clear()
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--no-cache")
    assert r.returncode == 0, r.stderr
    assert sorted(q.method for q in server.requests) == ["GET"] * 40, "the download learns the sizes itself"
    assert "40 sizes unknown" in r.stdout
    few = _manifest(tmp_path, dict(list(files.items())[:3]))
    server.requests.clear()
    r = invoke("get", str(few), "--dest", str(tmp_path / "few"), "--no-cache")
    assert r.returncode == 0, r.stderr
    assert sorted(q.method for q in server.requests) == ["GET"] * 3 + ["HEAD"] * 3
    assert "3 to fetch (" in r.stdout and "size unknown" not in r.stdout


def test_a_slow_source_does_not_hold_the_plan(server: TestServer, tmp_path: Path) -> None:
    a = blob(1000, seed=3)
    server.add("/fast.bin", a)
    with TestServer() as slow:
        slow.add("/slow.bin", a)
        slow.delay = 20  # answers nothing for 20 s
        m = _manifest(tmp_path, {"slow.bin": {"url": slow.url + "/slow.bin"},
                                 "fast.bin": {"url": server.url + "/fast.bin"}})
        t0 = time.monotonic()
        r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--dry-run")
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 6, "sizes are learned within a budget, not waited for"
        slow.delay = 0
    assert "  fetch slow.bin  size unknown" in r.stdout.splitlines()
    assert "(at least 1000 B; 1 size unknown)" in r.stdout


def test_a_partial_that_will_be_resumed_says_so(server: TestServer, tmp_path: Path) -> None:
    data = blob(4 * MiB, seed=5)
    server.add("/big.bin", data)
    m = _manifest(tmp_path, {"big.bin": {"url": server.url + "/big.bin", "md5": md5(data), "size": len(data)}})
    dest = tmp_path / "out"
    dest.mkdir()
    part, side = partial_paths(dest / "big.bin")
    part.write_bytes(data[: 3 * MiB])
    Sidecar(server.url + "/big.bin", server.etag("/big.bin"), len(data),
             {"hashes": {"md5": md5(data)}, "size": len(data)}).save(side)
    r = invoke("get", str(m), "--dest", str(dest), "--dry-run")
    assert r.returncode == 0
    assert "  fetch big.bin  4.0 MiB (resume: 3.0 MiB here)" in r.stdout.splitlines()
    assert "1 to fetch (1.0 MiB to download; 3.0 MiB already here)" in r.stdout
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert server.bytes_sent("/big.bin") == MiB, "only the missing part crossed the network"


def test_a_dry_run_that_cannot_complete_its_plan_exits_1(hub: FakeHub, tmp_path: Path) -> None:
    m = _manifest(tmp_path, {"gone/": {"url": "hf://org/missing-repo/"},
                             "config.json": {"url": "hf://org/model/config.json"}})
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--dry-run", env=_env(hub, tmp_path))
    assert r.returncode == 1
    assert "cannot list gone/" in r.stdout and "error:" in r.stderr and "org/missing-repo" in r.stderr


def test_folders_are_listed_side_by_side(hub: FakeHub, tmp_path: Path) -> None:
    """Each listing is a far request or two; six folders must not take six times as long."""
    for n in range(6):
        hub.add_repo(f"org/f{n}", {"a.json": b"{}\n", "b.json": b"[]\n"})
    m = _manifest(tmp_path, {f"f{n}/": {"url": f"hf://org/f{n}/"} for n in range(6)})
    hub.api_delay = 0.4
    t0 = time.monotonic()
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--dry-run", env=_env(hub, tmp_path))
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "12 to fetch" in r.stdout
    assert took < 6 * 2 * 0.4, f"listed one after another ({took:.1f} s)"


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("under", ["", "/sub"])
def test_a_file_in_the_way_of_the_destination_is_a_usage_error(server: TestServer, tmp_path: Path, dry_run: bool,
                                                                under: str) -> None:
    server.add("/a.bin", b"a")
    m = _manifest(tmp_path, {"a.bin": {"url": server.url + "/a.bin"}})
    (tmp_path / "taken").write_text("not a folder")
    r = invoke("get", str(m), "--dest", str(tmp_path / "taken") + under, *(["--dry-run"] if dry_run else []))
    assert r.returncode == 2, r.stderr
    assert str(tmp_path / "taken") in r.stderr and "--dest" in r.stderr
    assert "is a file" in r.stderr if not under else "file in the way" in r.stderr
    assert "fetch a.bin" not in r.stdout and "corrupt" not in r.stdout, "no plan for a destination that cannot be"
    assert not [q for q in server.requests if q.method == "GET"]
