"""Reuse before download (README "The store"): the HF and torch caches, and earlier destinations.

The Hugging Face cache is filled by the real huggingface_hub (`hf_hub_download`
against the local fake Hub, offline from the internet); torch's is what
`torch.hub` leaves: `$TORCH_HOME/hub/checkpoints/<file name of the URL>`.
Every candidate is verified against the file's pins before use, once: later
checkouts link it from the store without hashing again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfetch import api, checking, store
from ckptfetch.download import Settings

from .conftest import blob, cli_env, md5, run_cli, sha256
from .fakehub import FakeHub
from .httpserver import TestServer

WEIGHTS = blob(6000, seed=41)  # an LFS file (>= 1 KiB on the fake Hub): its blob is named by its sha256
CONFIG = b'{"hidden_size": 8}\n'  # a small git file
DEEP = blob(3000, seed=42)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "CKPTFETCH_MIRRORS"):
            monkeypatch.delenv(var, raising=False)
        h.add_repo("org/model", {"model.safetensors": WEIGHTS, "config.json": CONFIG, "sub/deep.bin": DEEP},
                   tags=("v1.0",))
        yield h


@pytest.fixture
def fast() -> Settings:
    return Settings(retries=2, backoff=0.01, backoff_max=0.02, connect_timeout=2, read_timeout=2)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files hashed whole (candidates and store objects; downloads hash as they stream)."""
    seen: list[str] = []
    for module in (checking, store):
        real = module.hash_file

        def counting(path: object, algorithms: object, real: object = real) -> dict[str, str]:
            seen.append(str(path))
            return real(path, algorithms)  # type: ignore[operator, no-any-return]

        monkeypatch.setattr(module, "hash_file", counting)
    return seen


def hf_hub_download(hub: FakeHub, cache: Path, *calls: dict[str, str]) -> list[str]:
    """What a user's `hf_hub_download(...)` calls leave in `cache` (the real huggingface_hub, in a fresh process)."""
    script = ("import json, sys\nfrom huggingface_hub import hf_hub_download\n"
              "print(json.dumps([hf_hub_download(**c) for c in json.loads(sys.argv[1])]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home-user"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    r = subprocess.run([sys.executable, "-c", script, json.dumps(list(calls))], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hub.requests.clear()
    hub.cdn.clear_log()
    return list(json.loads(r.stdout))


def manifest(tmp_path: Path, files: dict[str, dict[str, str]], name: str = "reuse", **top: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(json.dumps({"ckptfetch": 1, "name": name, **top, "files": files}))
    return p


def nothing_asked(hub: FakeHub) -> bool:
    return not hub.requests and not hub.cdn.requests


# --- the Hugging Face cache ------------------------------------------------------------------------


def test_an_lfs_blob_in_the_hf_cache_is_reused_and_verified_once(hub: FakeHub, tmp_path: Path, fast: Settings,
                                                                 hashes: list[str], store_dir: Path) -> None:
    [blob_path] = hf_hub_download(hub, tmp_path / "hf-cache", {"repo_id": "org/model", "filename": "model.safetensors"})
    m = manifest(tmp_path, {"w/model.safetensors": {"url": "hf://org/model/model.safetensors",
                                                    "sha256": sha256(WEIGHTS)}})
    r = run_cli("get", str(m), "--dest", str(tmp_path / "plan"), "--dry-run", "--json",
                env=cli_env(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "hf-cache")))
    assert json.loads(r.stdout)["files"][0]["origin"] == "hf-cache" and "reuse from HF cache" in r.stderr
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and (res.files[0].origin, res.files[0].link) == ("hf-cache", "hardlink")
    assert nothing_asked(hub), "not a byte, not even a metadata request"
    real_blob = Path(os.path.realpath(blob_path))
    obj = store_dir / "sha256" / sha256(WEIGHTS)[:2] / sha256(WEIGHTS)
    assert (tmp_path / "one/w/model.safetensors").stat().st_ino == real_blob.stat().st_ino == obj.stat().st_ino
    assert hashes == [str(real_blob)], "verified once"
    hashes.clear()
    res = api.fetch(m, tmp_path / "two", settings=fast)
    assert res.ok and res.files[0].origin == "store" and hashes == [] and nothing_asked(hub)


def test_small_files_are_found_through_the_snapshot_of_the_ref(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    """A git file's blob is not named by a content hash: its snapshot entry, at the commit the ref names."""
    hf_hub_download(hub, tmp_path / "hf-cache", {"repo_id": "org/model", "filename": "config.json"},
                    {"repo_id": "org/model", "filename": "sub/deep.bin", "revision": "v1.0"})
    m = manifest(tmp_path, {"config.json": {"url": "hf://org/model/config.json", "md5": md5(CONFIG)},
                            "deep.bin": {"url": "hf://org/model@v1.0/sub/deep.bin", "md5": md5(DEEP)}})
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and {f.origin for f in res.files} == {"hf-cache"}, [(f.path, f.origin, f.error) for f in res.files]
    assert nothing_asked(hub)
    assert (tmp_path / "one/config.json").read_bytes() == CONFIG and (tmp_path / "one/deep.bin").read_bytes() == DEEP


def test_the_sha256_the_hub_declares_finds_the_blob_of_an_unpinned_file(hub: FakeHub, tmp_path: Path,
                                                                         fast: Settings) -> None:
    hf_hub_download(hub, tmp_path / "hf-cache", {"repo_id": "org/model", "filename": "model.safetensors"})
    m = manifest(tmp_path, {"model.safetensors": {"url": "hf://org/model/model.safetensors"}})
    p = api.plan(m, tmp_path / "one")
    assert p.items[0].origin == "network", "nothing pins it before the Hub is asked"
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and res.files[0].origin == "hf-cache"
    assert [q.method for q in hub.requests] == ["HEAD"] and hub.cdn.requests == [], "metadata only, no bytes"


def test_an_hf_cache_destination_links_its_blobs_from_the_store(hub: FakeHub, tmp_path: Path, fast: Settings,
                                                                store_dir: Path) -> None:
    from .test_huggingface import read_back

    m = manifest(tmp_path, {"weights": {"url": "hf://org/model/model.safetensors"},
                            "config": {"url": "hf://org/model/config.json"}}, layout="hf-cache")
    assert api.fetch(m, tmp_path / "cache-a", settings=fast).ok
    assert len(hub.cdn.requests) == 1
    res = api.fetch(m, tmp_path / "cache-b", settings=fast)
    assert res.ok and {f.path: f.origin for f in res.files}["weights"] == "store"
    assert len(hub.cdn.requests) == 1, "the LFS blob came from the store"
    blob_b = tmp_path / "cache-b/models--org--model/blobs" / sha256(WEIGHTS)
    assert blob_b.stat().st_ino == (store_dir / "sha256" / sha256(WEIGHTS)[:2] / sha256(WEIGHTS)).stat().st_ino
    got = read_back(tmp_path / "cache-b", [{"fn": "file", "repo_id": "org/model", "filename": "model.safetensors"}])
    assert Path(got[0]).read_bytes() == WEIGHTS
    assert api.verify(tmp_path / "cache-b", strict=True).ok


def test_a_cache_file_that_does_not_match_is_never_used(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    [blob_path] = hf_hub_download(hub, tmp_path / "hf-cache", {"repo_id": "org/model", "filename": "model.safetensors"})
    real_blob = Path(os.path.realpath(blob_path))
    damaged = bytes([WEIGHTS[0] ^ 1]) + WEIGHTS[1:]
    real_blob.write_bytes(damaged)  # bit rot in the user's cache: the name still says the right sha256
    m = manifest(tmp_path, {"w.bin": {"url": "hf://org/model/model.safetensors", "sha256": sha256(WEIGHTS)}})
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and res.files[0].origin == "network" and len(hub.cdn.requests) == 1
    assert (tmp_path / "one/w.bin").read_bytes() == WEIGHTS
    assert res.notes == [f"{real_blob} does not match the pins it was found by; it was not used"]
    assert real_blob.read_bytes() == damaged, "the user's cache is not ours to change"


# --- torch's hub cache ---------------------------------------------------------------------------


def _torch_checkpoint(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "torch-home/hub/checkpoints" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_a_torch_hub_checkpoint_is_reused_by_name_and_hash_prefix(hub: FakeHub, server: TestServer, tmp_path: Path,
                                                                  fast: Settings, hashes: list[str]) -> None:
    name = f"resnet18-{sha256(WEIGHTS)[:8]}.pth"
    cached = _torch_checkpoint(tmp_path, name, WEIGHTS)
    server.add(f"/models/{name}", WEIGHTS)
    m = manifest(tmp_path, {"backbone.pth": {"url": f"{server.url}/models/{name}"}})  # a weak pin: the name's prefix
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and res.files[0].origin == "torch-hub" and server.requests == []
    assert (tmp_path / "one/backbone.pth").stat().st_ino == cached.stat().st_ino
    assert hashes == [str(cached)], "verified once"
    hashes.clear()
    assert api.fetch(m, tmp_path / "two", settings=fast).files[0].origin == "store" and hashes == []


def test_a_torch_checkpoint_with_other_bytes_is_not_used(hub: FakeHub, server: TestServer, tmp_path: Path,
                                                         fast: Settings) -> None:
    cached = _torch_checkpoint(tmp_path, "dinov2_vitb14.pth", b"something else entirely")
    server.add("/dinov2_vitb14.pth", WEIGHTS)
    m = manifest(tmp_path, {"dino.pth": {"url": f"{server.url}/dinov2_vitb14.pth", "md5": md5(WEIGHTS)}})
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and res.files[0].origin == "network" and server.hits("/dinov2_vitb14.pth") == 1
    assert res.notes == [f"{cached} does not match the pins it was found by; it was not used"]


def test_no_cache_does_not_look_in_the_framework_caches(hub: FakeHub, server: TestServer, tmp_path: Path,
                                                        fast: Settings) -> None:
    _torch_checkpoint(tmp_path, "dinov2_vitb14.pth", WEIGHTS)
    server.add("/dinov2_vitb14.pth", WEIGHTS)
    m = manifest(tmp_path, {"dino.pth": {"url": f"{server.url}/dinov2_vitb14.pth", "md5": md5(WEIGHTS)}})
    res = api.fetch(m, tmp_path / "one", settings=fast, no_cache=True)
    assert res.ok and res.files[0].origin == "network" and server.hits("/dinov2_vitb14.pth") == 1


def test_unpinned_files_are_never_taken_from_a_cache(hub: FakeHub, server: TestServer, tmp_path: Path,
                                                     fast: Settings) -> None:
    _torch_checkpoint(tmp_path, "weights.pth", WEIGHTS)
    server.add("/weights.pth", WEIGHTS)
    m = manifest(tmp_path, {"w.pth": {"url": f"{server.url}/weights.pth"}})  # nothing says which bytes are right
    res = api.fetch(m, tmp_path / "one", settings=fast)
    assert res.ok and res.files[0].origin == "network"


# --- earlier destinations ----------------------------------------------------------------------------


def test_reuse_from_an_earlier_destination(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    data = blob(40_000, seed=43)
    server.add("/a.bin", data)
    server.add("/b.bin", WEIGHTS)
    m = manifest(tmp_path, {"a.bin": {"url": f"{server.url}/a.bin", "md5": md5(data)},
                            "b.bin": {"url": f"{server.url}/b.bin", "md5": md5(WEIGHTS)}})
    first = tmp_path / "first"
    assert run_cli("get", str(m), "--dest", str(first), "--no-cache").returncode == 0
    (first / "b.bin").chmod(0o644)
    (first / "b.bin").write_bytes(b"x" * len(WEIGHTS))  # damaged since: must not be taken
    other = manifest(tmp_path, {"x/a.bin": {"url": f"{server.url}/a.bin", "md5": md5(data)},
                                "x/b.bin": {"url": f"{server.url}/b.bin", "md5": md5(WEIGHTS)}}, name="other")
    r = run_cli("get", str(other), "--dest", str(tmp_path / "second"), "--reuse-from", str(first), "--json")
    assert r.returncode == 0, r.stderr
    got = {f["path"]: f["origin"] for f in json.loads(r.stdout)["files"]}
    assert got == {"x/a.bin": "reuse-from", "x/b.bin": "network"}
    assert server.hits("/a.bin") == 1 and server.hits("/b.bin") == 2
    assert (tmp_path / "second/x/a.bin").stat().st_ino == (first / "a.bin").stat().st_ino, "shared, and in the store"
    assert any("does not match" in n for n in json.loads(r.stdout)["notes"])
    r = run_cli("get", str(other), "--dest", str(tmp_path / "third"), "--reuse-from", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "record.json" in r.stderr and "Traceback" not in r.stderr
