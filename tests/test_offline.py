"""A true offline / air-gapped mode (README "Offline and air-gapped sites").

`--offline` (or CKPTFETCH_OFFLINE=1) uses only mirrors and local files: no
request reaches an original host, the Hub's API included. Folder listings and
Hub commits come from the lock file. `hf://` URLs follow a mirror of the
Hub's host like any other URL, keeping the revision.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import blob, cli_env, invoke
from .fakehub import FakeHub
from .httpserver import TestServer

WEIGHTS = blob(300_000, seed=11)
MODEL = blob(2_000_000, seed=12)
CONFIG = b'{"hidden_size": 8}\n'
DEEP = blob(5000, seed=13)

MANIFEST = """\
ckptfetch: 1
name: site
files:
  w.pth:
    url: https://dl.example.org/models/w.pth
  repo/:
    url: hf://org/model/
    include: ["*.json", "sub/*"]
  cache/model.safetensors:
    url: hf://org/model/model.safetensors
    layout: hf-cache
"""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub(page_size=2) as h:
        h.add_repo("org/model", {"model.safetensors": MODEL, "config.json": CONFIG, "sub/deep.bin": DEEP})
        yield h


def _env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), **extra)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "TORCH_HOME"):
        env.pop(var, None)
    return env


def _site(tmp_path: Path, hub: FakeHub, origin: TestServer) -> Path:
    """The manifest, locked once where the Hub (and the origin, through a mirror) are reachable."""
    origin.add("/dl.example.org/models/w.pth", WEIGHTS)
    m = tmp_path / "manifests" / "site.yaml"
    m.parent.mkdir()
    m.write_text(MANIFEST)
    r = invoke("lock", str(m), "--mirror", f"https://dl.example.org/={origin.url}/dl.example.org/",
               env=_env(hub, tmp_path))
    assert r.returncode == 0, r.stderr
    return m


def _mirror(hub: FakeHub, revision: str) -> TestServer:
    """What an air-gapped site serves: files at the paths their URLs have, the Hub's under resolve/<revision>/.

    Not started: use it as `with _mirror(...) as mirror:`."""
    srv = TestServer()
    srv.add("/dl.example.org/models/w.pth", WEIGHTS)
    for path, data in {"model.safetensors": MODEL, "config.json": CONFIG, "sub/deep.bin": DEEP}.items():
        srv.add(f"/hf/org/model/resolve/{revision}/{path}", data)
    return srv


def _mirrors(hub: FakeHub, mirror: TestServer) -> list[str]:
    return ["--mirror", f"https://dl.example.org/={mirror.url}/dl.example.org/",
            "--mirror", f"{hub.url}/={mirror.url}/hf/"]


@pytest.mark.parametrize("revision", ["main", "commit"])
def test_offline_get_asks_no_original_host(hub: FakeHub, server: TestServer, tmp_path: Path, revision: str) -> None:
    """The air-gapped recipe: lock where the Hub is reachable, mirror the files, then get --offline."""
    m = _site(tmp_path, hub, server)
    commit = hub.repos["model", "org/model"].commit
    with _mirror(hub, commit if revision == "commit" else "main") as mirror:
        asked_hub, asked_origin = len(hub.requests), len(server.requests)
        dest = tmp_path / "out"
        r = invoke("get", str(m), "--dest", str(dest), "--offline", *_mirrors(hub, mirror), env=_env(hub, tmp_path))
        assert r.returncode == 0, r.stderr
        assert len(hub.requests) == asked_hub and not hub.cdn.requests[asked_hub:], "no request reached the Hub"
        assert len(server.requests) == asked_origin, "no request reached the original host"
        assert (dest / "w.pth").read_bytes() == WEIGHTS
        assert (dest / "repo/config.json").read_bytes() == CONFIG and (dest / "repo/sub/deep.bin").read_bytes() == DEEP
        # huggingface_hub finds the hf-cache file offline
        code = ("import huggingface_hub, sys; "
                "print(huggingface_hub.hf_hub_download('org/model', 'model.safetensors', cache_dir=sys.argv[1]))")
        out = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True).stdout.strip()
        assert Path(out).read_bytes() == MODEL
        assert invoke("verify", str(dest), env=_env(hub, tmp_path)).returncode == 0


def test_the_environment_variable_and_its_bad_values(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    m = _site(tmp_path, hub, server)
    with _mirror(hub, "main") as mirror:
        asked = len(hub.requests)
        r = invoke("get", str(m), "--dest", str(tmp_path / "out"), *_mirrors(hub, mirror),
                   env=_env(hub, tmp_path, CKPTFETCH_OFFLINE="1"))
        assert r.returncode == 0, r.stderr
        assert len(hub.requests) == asked
        r = invoke("get", str(m), "--dest", str(tmp_path / "out"), env=_env(hub, tmp_path, CKPTFETCH_OFFLINE="maybe"))
        assert r.returncode == 2 and "CKPTFETCH_OFFLINE" in r.stderr


def test_offline_without_a_mirror_is_one_clear_error(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    m = _site(tmp_path, hub, server)
    asked = len(hub.requests)
    # --no-cache: `lock` put w.pth's bytes in this test's store, which would serve them offline (rightly)
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--offline", "--no-cache", env=_env(hub, tmp_path))
    assert r.returncode == 1
    assert "w.pth: offline, and no mirror serves https://dl.example.org/models/w.pth" in r.stderr
    assert "--mirror" in r.stderr and "Traceback" not in r.stderr
    assert len(hub.requests) == asked


def test_offline_folder_without_a_lock_names_what_is_missing(hub: FakeHub, tmp_path: Path) -> None:
    m = tmp_path / "site.yaml"
    m.write_text(MANIFEST)
    with _mirror(hub, "main") as mirror:
        r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--offline", *_mirrors(hub, mirror),
                   env=_env(hub, tmp_path))
        assert r.returncode == 1
        assert "repo/" in r.stderr and "never fetched here" in r.stderr and "ckptfetch lock" in r.stderr
        assert "hf-cache layout needs the Hub's commit" in r.stderr and "ckptfetch lock" in r.stderr
        assert not hub.requests, "offline: not even the Hub's API"
        assert (tmp_path / "out/w.pth").read_bytes() == WEIGHTS, "what can be fetched still is"


def test_wrong_bytes_on_the_mirror_fail_at_once_offline(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    """Online, the original is tried after a bad mirror; offline it is not (it used to cost 20 s of retries)."""
    m = _site(tmp_path, hub, server)
    with _mirror(hub, "main") as mirror:
        mirror.replace("/dl.example.org/models/w.pth", blob(300_000, seed=99))
        asked = len(server.requests)
        t0 = time.monotonic()
        r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--offline", "--no-cache", *_mirrors(hub, mirror),
                   env=_env(hub, tmp_path))
        assert r.returncode == 1 and "w.pth" in r.stderr and "mismatch" in r.stderr
        assert time.monotonic() - t0 < 10
        assert len(server.requests) == asked


def test_hf_urls_follow_a_mirror_of_the_hub_online_too(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    """A mirror of the Hub's host applies to hf:// URLs, tried first, keeping the revision."""
    m = tmp_path / "one.yaml"
    m.write_text("ckptfetch: 1\nname: one\nfiles:\n  config.json:\n    url: hf://org/model/config.json\n")
    server.add("/hf/org/model/resolve/main/config.json", CONFIG)
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--mirror", f"{hub.url}/={server.url}/hf/",
               env=_env(hub, tmp_path))
    assert r.returncode == 0, r.stderr
    assert [q.path for q in server.requests if q.method == "GET"] == ["/hf/org/model/resolve/main/config.json"]
    assert hashlib.sha256((tmp_path / "out/config.json").read_bytes()).hexdigest() == hashlib.sha256(CONFIG).hexdigest()
