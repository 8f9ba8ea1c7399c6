"""Hashed mirrors in folders and behind web servers (README "Clusters and air-gapped sites").

`mirror push` fills ROOT/sha256/<hex> and ROOT/manifests/NAME.lock.yaml; `get
--hashed-mirror ROOT` tries ROOT/sha256/<hex> first for every file whose
sha256 is known, from its pins, a lock beside the manifest, or the mirror's
lock. The worlds are real: a fake Hub and origin over HTTP, a folder mirror on
disk, an https mirror through the TLS proxy of tests/fakehosts.py. The S3 side
is tests/test_mirror_s3.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfetch.lock import load_lock

from .conftest import blob, cli_env, invoke, md5, sha256
from .fakehosts import FakeHosts
from .fakehub import FakeHub
from .httpserver import TestServer
from .s3server import free_ports, without_boto3

WEIGHTS = blob(300_000, seed=21)
MODEL = blob(1_500_000, seed=22)
CONFIG = b'{"hidden_size": 8}\n'
DEEP = blob(5000, seed=23)

# The world of a site: a plain https file, a Hub folder, an hf-cache file; only the Hub declares sha256s.
MANIFEST = """\
ckptfetch: 1
name: site
files:
  w.pth:
    url: https://dl.example.org/models/w.pth
    md5: {md5}
  repo/:
    url: hf://org/model/
    include: ["*.json", "sub/*"]
  cache/model.safetensors:
    url: hf://org/model/model.safetensors
    layout: hf-cache
"""


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(page_size=2) as h:
        h.add_repo("org/model", {"model.safetensors": MODEL, "config.json": CONFIG, "sub/deep.bin": DEEP})
        yield h


def _env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), **extra)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "TORCH_HOME"):
        env.pop(var, None)
    return env


def _manifest(folder: Path, text: str = MANIFEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    m = folder / "site.yaml"
    m.write_text(text.format(md5=md5(WEIGHTS)))
    return m


def _origin_mirror(origin: TestServer) -> list[str]:
    origin.add("/dl.example.org/models/w.pth", WEIGHTS)
    return ["--mirror", f"https://dl.example.org/={origin.url}/dl.example.org/"]


def _objects(root: Path) -> dict[str, int]:
    """Each object of a folder mirror and its mtime (an object written again would change it)."""
    return {p.name: p.stat().st_mtime_ns for p in (root / "sha256").iterdir()}


def test_push_to_a_folder_then_get_offline_from_it_with_nothing_but_the_manifest(
        hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    """The air-gapped recipe: push on the connected side; inside, the mirror's lock pins what the manifest does not."""
    m = _manifest(tmp_path / "connected")
    mirror = tmp_path / "mirror"
    env = _env(hub, tmp_path)
    r = invoke("mirror", "push", str(m), str(mirror), "--dest", str(tmp_path / "models"), *_origin_mirror(server),
               env=env)
    assert r.returncode == 0, r.stderr
    assert "4 uploaded" in r.stdout and f"wrote {mirror}/manifests/site.lock.yaml" in r.stdout
    for data in (WEIGHTS, MODEL, CONFIG, DEEP):
        assert (mirror / "sha256" / sha256(data)).read_bytes() == data
    lock = load_lock(mirror / "manifests" / "site.lock.yaml")
    commit = hub.repos["model", "org/model"].commit
    assert {k: (p.sha256, p.size) for k, p in lock.files.items()} == {
        "w.pth": (sha256(WEIGHTS), len(WEIGHTS)), "repo/config.json": (sha256(CONFIG), len(CONFIG)),
        "repo/sub/deep.bin": (sha256(DEEP), len(DEEP)), "cache/model.safetensors": (sha256(MODEL), len(MODEL))}
    assert lock.files["cache/model.safetensors"].commit == commit and lock.files["w.pth"].commit is None

    # A second push sends nothing and rewrites nothing.
    before, lock_mtime = _objects(mirror), (mirror / "manifests" / "site.lock.yaml").stat().st_mtime_ns
    r = invoke("mirror", "push", str(m), str(mirror), "--dest", str(tmp_path / "models"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {f["status"] for f in doc["files"]} == {"present"} and doc["locks"][0]["written"] is False
    assert _objects(mirror) == before and (mirror / "manifests" / "site.lock.yaml").stat().st_mtime_ns == lock_mtime

    # Inside: the same manifest, no lock beside it, no network.
    site = _manifest(tmp_path / "site")
    dest = tmp_path / "site-models"
    asked_hub, asked_origin = len(hub.requests), len(server.requests)
    r = invoke("get", str(site), "--dest", str(dest), "--offline", "--hashed-mirror", str(mirror), env=env)
    assert r.returncode == 0, r.stderr
    assert len(hub.requests) == asked_hub and len(server.requests) == asked_origin, "nothing but the mirror was asked"
    assert (dest / "w.pth").read_bytes() == WEIGHTS
    assert (dest / "repo/config.json").read_bytes() == CONFIG and (dest / "repo/sub/deep.bin").read_bytes() == DEEP
    code = ("import huggingface_hub, sys; "
            "print(huggingface_hub.hf_hub_download('org/model', 'model.safetensors', cache_dir=sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True).stdout.strip()
    assert Path(out).read_bytes() == MODEL
    assert invoke("verify", str(dest), env=env).returncode == 0

    # The installed folder pushes the same objects and the same lock from its record.
    again = tmp_path / "mirror2"
    r = invoke("mirror", "push", str(dest), str(again), env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(_objects(again)) == sorted(before)
    assert (again / "manifests/site.lock.yaml").read_text() == (mirror / "manifests/site.lock.yaml").read_text()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_members_of_an_archive_come_from_the_mirror_and_the_archive_is_not_downloaded(
        server: TestServer, tmp_path: Path) -> None:
    a, b = blob(40_000, seed=24), blob(50_000, seed=25)
    url = server.add("/pack.zip", _zip({"pack/a.bin": a, "pack/b.bin": b}))
    m = tmp_path / "pack.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "pack", "archives": {"pack": {"url": url}},
                             "files": {"a.bin": {"archive": "pack", "member": "pack/a.bin", "md5": md5(a)},
                                       "b.bin": {"archive": "pack", "member": "pack/b.bin", "md5": md5(b)}}}))
    mirror = tmp_path / "mirror"
    r = invoke("mirror", "push", str(m), str(mirror), "--dest", str(tmp_path / "models"))
    assert r.returncode == 0, r.stderr
    asked = server.hits("/pack.zip")
    dest = tmp_path / "site"
    r = invoke("get", str(m), "--dest", str(dest), "--hashed-mirror", mirror.as_uri(), "--json")
    assert r.returncode == 0, r.stderr
    assert server.hits("/pack.zip") == asked, "the archive was not downloaded again"
    assert (dest / "a.bin").read_bytes() == a and (dest / "b.bin").read_bytes() == b
    assert not (dest / ".ckptfetch" / "archives").exists() or not any((dest / ".ckptfetch" / "archives").iterdir())


def test_a_wrong_object_on_the_mirror_is_refused_and_the_next_source_used(server: TestServer, tmp_path: Path) -> None:
    right, other = blob(200_000, seed=26), blob(100_000, seed=27)
    urls = {"same-size.bin": server.add("/same-size.bin", right), "other-size.bin": server.add("/other-size.bin", other)}
    mirror = tmp_path / "mirror" / "sha256"
    mirror.mkdir(parents=True)
    (mirror / sha256(right)).write_bytes(blob(len(right), seed=99))  # right size, wrong bytes: refused by the hash
    (mirror / sha256(other)).write_bytes(b"short")  # wrong size: refused by the size
    m = tmp_path / "wrong.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "wrong", "files": {
        "same-size.bin": {"url": urls["same-size.bin"], "sha256": sha256(right)},
        "other-size.bin": {"url": urls["other-size.bin"], "sha256": sha256(other), "size": len(other)}}}))
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest), env=cli_env(CKPTFETCH_HASHED_MIRRORS=str(mirror.parent)))
    assert r.returncode == 0, r.stderr
    assert (dest / "same-size.bin").read_bytes() == right and (dest / "other-size.bin").read_bytes() == other
    assert server.hits("/same-size.bin") == 1 and server.hits("/other-size.bin") == 1
    # Offline there is no next source: one sentence naming what the mirror served (not the machine's store,
    # which holds the right bytes since the first get).
    r = invoke("get", str(m), "--dest", str(tmp_path / "out2"), "--offline", "--no-cache",
               "--hashed-mirror", str(mirror.parent))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "sha256" in r.stderr and sha256(right) in r.stderr


def test_an_https_mirror_serves_a_pushed_tree(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    """Any static web server over a pushed tree is a hashed mirror (here through a TLS proxy, as a site's would be)."""
    m = _manifest(tmp_path / "connected")
    tree = tmp_path / "tree"
    env = _env(hub, tmp_path)
    r = invoke("mirror", "push", str(m), str(tree), "--dest", str(tmp_path / "models"), *_origin_mirror(server),
               env=env)
    assert r.returncode == 0, r.stderr
    with FakeHosts(tmp_path / "tls", ["models.internal.example"]) as hosts:
        web = hosts["models.internal.example"]
        for path in tree.rglob("*"):
            if path.is_file():
                web.add(f"/ckpt/{path.relative_to(tree).as_posix()}", path.read_bytes())
        dest = tmp_path / "site-models"
        # Online, but the original hosts are behind the same proxy, which knows only the mirror: nothing else answers.
        site_env = _env(hub, tmp_path, **hosts.env)
        site_env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_ports(1)[0]}"
        asked_origin = len(server.requests)
        # --no-cache: a site machine has no store yet (this test's store holds what the push fetched)
        r = invoke("get", str(_manifest(tmp_path / "site")), "--dest", str(dest), "--no-cache",
                   "--hashed-mirror", "https://models.internal.example/ckpt/", env=site_env)
        assert r.returncode == 0, r.stderr
        assert len(server.requests) == asked_origin
        assert web.hits("/ckpt/manifests/site.lock.yaml") == 1
        for data in (WEIGHTS, MODEL, CONFIG, DEEP):
            assert web.hits(f"/ckpt/sha256/{sha256(data)}") == 1
    assert (dest / "w.pth").read_bytes() == WEIGHTS and (dest / "repo/sub/deep.bin").read_bytes() == DEEP


def test_a_failed_push_sends_what_is_good_and_leaves_the_lock_alone(server: TestServer, tmp_path: Path) -> None:
    good = blob(10_000, seed=28)
    m = tmp_path / "half.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "half", "files": {
        "good.bin": {"url": server.add("/good.bin", good), "md5": md5(good)},
        "gone.bin": {"url": f"{server.url}/gone.bin", "md5": "0" * 32}}}))
    mirror = tmp_path / "mirror"
    r = invoke("mirror", "push", str(m), str(mirror), "--dest", str(tmp_path / "models"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "gone.bin" in r.stderr and "lock was left as it was" in r.stderr
    assert (mirror / "sha256" / sha256(good)).read_bytes() == good
    assert not (mirror / "manifests").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["push", "{m}", "https://models.example.org/ckpt"], "read-only"),
    (["push", "{empty}", "{tmp}/mirror"], "without a ckptfetch record"),
    (["push", "{m}", "ftp://x/y"], "--hashed-mirror"),
])
def test_push_usage_errors_are_one_sentence(args: list[str], words: str, tmp_path: Path) -> None:
    m = tmp_path / "u.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "u", "files": {"a.bin": {"url": "https://example.org/a.bin"}}}))
    (tmp_path / "empty").mkdir()
    filled = [a.format(m=m, empty=tmp_path / "empty", tmp=tmp_path) for a in args]
    r = invoke("mirror", *filled)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr


def test_the_setting_from_pyproject_and_first_use_path(server: TestServer, tmp_path: Path) -> None:
    """`hashed-mirrors` is one more config key; `ckptfetch.path()` uses it like `get`."""
    data = blob(30_000, seed=29)
    mirror = tmp_path / "mirror"
    (mirror / "sha256").mkdir(parents=True)
    (mirror / "sha256" / sha256(data)).write_bytes(data)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.ckptfetch]\nhashed-mirrors = ["{mirror}"]\n')
    m = project / "p.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "p", "files": {
        "d.bin": {"url": "https://gone.example.org/d.bin", "sha256": sha256(data)}}}))
    r = invoke("config", "--json", cwd=project)
    row = next(x for x in json.loads(r.stdout)["settings"] if x["key"] == "hashed-mirrors")
    assert row["value"] == [str(mirror)] and row["origin"] == "project" and row["env"] == "CKPTFETCH_HASHED_MIRRORS"
    r = invoke("get", "p.yaml", "--dest", "out", "--offline", cwd=project)
    assert r.returncode == 0, r.stderr
    code = "import ckptfetch, sys; print(ckptfetch.path(sys.argv[1], 'd.bin', dest=sys.argv[2]))"
    done = subprocess.run([sys.executable, "-c", code, str(m), str(tmp_path / "lib")], cwd=project, text=True,
                          capture_output=True, env=cli_env(CKPTFETCH_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data
    shutil.rmtree(tmp_path / "lib")


def test_without_boto3_a_push_to_s3_names_the_extra_and_a_folder_still_works(server: TestServer, tmp_path: Path) -> None:
    data = blob(20_000, seed=30)
    m = tmp_path / "nb.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "nb", "files": {
        "d.bin": {"url": server.add("/d.bin", data), "md5": md5(data)}}}))
    env = cli_env(PYTHONPATH=without_boto3(tmp_path / "noboto"))
    r = subprocess.run([sys.executable, "-m", "ckptfetch", "mirror", "push", str(m), "s3://bucket/ckpt", "--dest",
                        str(tmp_path / "models")], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "pip install 'ckptfetch[s3]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert server.hits("/d.bin") == 0, "nothing is fetched for a target that cannot be written"
    r = subprocess.run([sys.executable, "-m", "ckptfetch", "mirror", "push", str(m), str(tmp_path / "mirror"),
                        "--dest", str(tmp_path / "models")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "mirror" / "sha256" / sha256(data)).read_bytes() == data
