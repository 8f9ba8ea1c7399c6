"""Hugging Face Hub files through the real engine, against a fake Hub whose CDN is a second local host."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfetch import api
from ckptfetch.download import Settings
from ckptfetch.errors import ManifestError, UsageError
from ckptfetch.sources import huggingface as hf

from .conftest import blob, cli_env, run_cli, sha256
from .fakehub import FakeHub, git_blob_id

TOKEN = "hf_test_token_123"
BIG = blob(6000, seed=1)
CONFIG = b'{"hidden_size": 8}\n'
NESTED = blob(3000, seed=2)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub(page_size=2, token=TOKEN) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token file of the user's
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "TORCH_HOME",
                    "CKPTFETCH_MIRRORS"):
            monkeypatch.delenv(var, raising=False)
        h.add_repo("org/model", {"model.safetensors": BIG, "config.json": CONFIG, "sub/dir/deep.bin": NESTED},
                   tags=("v1.0",))
        yield h


@pytest.fixture
def fast() -> Settings:
    return Settings(retries=2, backoff=0.01, backoff_max=0.02, connect_timeout=2, read_timeout=2)


def manifest(tmp_path: Path, body: str, name: str = "hub") -> Path:
    d = tmp_path / "manifests"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(f"ckptfetch: 1\nname: {name}\n" + body)
    return p


def env_for(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), **extra)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "TORCH_HOME"):
        if var not in extra:
            env.pop(var, None)
    return env


# --- URLs ---------------------------------------------------------------------------------


def test_url_forms(hub: FakeHub) -> None:
    f = hf.parse("hf://org/model/sub/dir/deep.bin")
    assert f == hf.HubFile("model", "org/model", "main", "sub/dir/deep.bin", hub.url)
    f = hf.parse("hf://datasets/org/data@v2/train/a.parquet")
    assert f is not None and (f.repo_type, f.repo_id, f.revision, f.path) == ("dataset", "org/data", "v2", "train/a.parquet")
    f = hf.parse("hf://spaces/org/demo/app.py")
    assert f is not None and f.repo_type == "space"
    for url in ("hf://org/model@refs%2Fpr%2F1/a.bin", "hf://org/model@refs/pr/1/a.bin"):
        f = hf.parse(url)
        assert f is not None and (f.revision, f.path) == ("refs/pr/1", "a.bin"), url
    assert hf.parse("hf://org/model@refs%2Fpr%2F1/a.bin").resolve_url().endswith("/resolve/refs%2Fpr%2F1/a.bin")  # type: ignore[union-attr]
    # The Hub's own resolve URLs, on huggingface.co (sent to HF_ENDPOINT when set) or on HF_ENDPOINT itself.
    f = hf.parse("https://huggingface.co/lkeab/hq-sam/resolve/67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2/sam_hq_vit_b.pth")
    assert f is not None and (f.repo_id, f.revision, f.path, f.endpoint) == (
        "lkeab/hq-sam", "67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2", "sam_hq_vit_b.pth", hub.url)
    assert hf.parse(f"{hub.url}/datasets/org/data/resolve/main/x.bin") is not None
    assert hf.parse("https://example.org/org/model/resolve/main/x.bin") is None
    assert hf.parse("https://huggingface.co/org/model/blob/main/x.bin") is None
    assert hf.parse("hf://just-one-name") is None
    c = "0123456789abcdef0123456789abcdef01234567"
    assert hf.at_commit("hf://datasets/org/data@v2/a/b.bin", c) == f"hf://datasets/org/data@{c}/a/b.bin"
    assert hf.at_commit("https://huggingface.co/o/r/resolve/main/x/resolve/y.bin", c) == \
        f"https://huggingface.co/o/r/resolve/{c}/x/resolve/y.bin"
    assert hf.at_commit("https://example.org/o/r/resolve/main/y.bin", c) == "https://example.org/o/r/resolve/main/y.bin"
    # Nothing that could climb out of a cache folder (refs/<revision>, snapshots/<commit>/<path>).
    for bad in ("hf://org/model@..%2F..%2Fx/a.bin", "hf://org/model/../../a.bin", "hf://org/model/a//b.bin",
                "hf://org/model@./a.bin", f"{hub.url}/org/model/resolve/main/..%2F..%2Fa.bin"):
        assert hf.parse(bad) is None, bad
    assert hf.parse("hf://org/model/") == hf.HubFile("model", "org/model", "main", "", hub.url)  # the whole repo


def test_unsafe_hub_url_is_refused(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    m = manifest(tmp_path, "layout: hf-cache\nfiles:\n  x:\n    url: hf://org/model@..%2F..%2F..%2Fescape/config.json\n")
    with pytest.raises(UsageError, match="hf-cache layout only places Hugging Face files"):
        api.fetch(m, tmp_path / "cache", settings=fast)
    m = manifest(tmp_path, "files:\n  x:\n    url: hf://org/model/../config.json\n")
    r = api.fetch(m, tmp_path / "models", settings=fast)
    assert not r.ok and "does not name a file of a Hugging Face repo" in (r.files[0].error or "")
    assert not (tmp_path / "escape").exists() and hub.requests == []


def test_token_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert hf.token() is None
    (tmp_path / "token").write_text("hf_from_home\n")
    assert hf.token() == "hf_from_home"
    (tmp_path / "other").write_text("hf_from_path")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "other"))
    assert hf.token() == "hf_from_path"
    monkeypatch.setenv("HF_TOKEN", " hf_from_env ")
    assert hf.token() == "hf_from_env"


# --- single files -----------------------------------------------------------------------


def test_single_files_verified_with_the_hub_sha256(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    m = manifest(tmp_path, "files:\n  w.safetensors:\n    url: hf://org/model/model.safetensors\n"
                           "  config.json:\n    url: hf://org/model/config.json\n")
    dest = tmp_path / "models"
    r = api.fetch(m, dest, settings=fast)
    assert r.ok, r.files
    assert (dest / "w.safetensors").read_bytes() == BIG
    assert (dest / "config.json").read_bytes() == CONFIG
    commit = hub.repos["model", "org/model"].commit
    big = r.files[0]
    assert big.digests["sha256"] == sha256(BIG)
    assert big.meta["commit"] == commit and big.meta["etag"] == sha256(BIG) and big.meta["size"] == str(len(BIG))
    assert big.meta["repo_id"] == "org/model" and big.meta["repo_type"] == "model" and big.meta["revision"] == "main"
    assert r.files[1].meta["etag"] == git_blob_id(CONFIG)
    # The metadata request did not follow the redirect; the download used the resolve URL pinned to the commit.
    heads = [q for q in hub.requests if q.method == "HEAD"]
    assert {q.path for q in heads} == {"/org/model/resolve/main/model.safetensors", "/org/model/resolve/main/config.json"}
    assert any(q.path == f"/org/model/resolve/{commit}/model.safetensors" and q.method == "GET" for q in hub.requests)
    record = json.loads((dest / ".ckptfetch" / "record.json").read_text())["manifests"]["hub"]["files"]
    assert record["w.safetensors"]["sha256"] == sha256(BIG) and record["w.safetensors"]["commit"] == commit
    assert api.verify(dest).ok


def test_dataset_revision_and_resolve_url_forms(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    data = blob(2500, seed=7)
    hub.add_repo("org/data", {"train/part-0.bin": data}, repo_type="dataset", tags=("v2",))
    old_commit = hub.repos["model", "org/model"].commit
    new = blob(4000, seed=9)
    hub.push("org/model", {"model.safetensors": new})  # main moves on; the tag and the commit stay
    hub.push("org/model", {"pr.bin": b"from a pull request"}, branch="refs/pr/1")
    m = manifest(tmp_path, f"""files:
  data.bin:
    url: hf://datasets/org/data@v2/train/part-0.bin
  tagged.bin:
    url: hf://org/model@v1.0/model.safetensors
  head.bin:
    url: hf://org/model/model.safetensors
  pinned.bin:
    url: {hub.url}/org/model/resolve/{old_commit}/model.safetensors
  pr.bin:
    url: hf://org/model@refs%2Fpr%2F1/pr.bin
""")
    dest = tmp_path / "models"
    r = api.fetch(m, dest, settings=fast)
    assert r.ok, [f.error for f in r.files]
    assert (dest / "data.bin").read_bytes() == data
    assert (dest / "tagged.bin").read_bytes() == BIG
    assert (dest / "head.bin").read_bytes() == new
    assert (dest / "pinned.bin").read_bytes() == BIG
    assert (dest / "pr.bin").read_bytes() == b"from a pull request"
    by = {f.path: f for f in r.files}
    assert by["data.bin"].meta["repo_type"] == "dataset"
    assert by["pinned.bin"].digests["sha256"] == sha256(BIG)  # a plain Hub URL gets the Hub's checks too
    assert any(q.path == "/datasets/org/data/resolve/v2/train/part-0.bin" for q in hub.requests)


def test_lfs_sha256_checked_without_a_manifest_hash(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    hub.serve_wrong_bytes("org/model", "model.safetensors")
    m = manifest(tmp_path, "files:\n  w.bin:\n    url: hf://org/model/model.safetensors\n")
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "w.bin").write_bytes(b"an older file the user had")
    r = api.fetch(m, dest, settings=fast, force=True)
    assert not r.ok
    assert "sha256 mismatch" in (r.files[0].error or "")
    assert (dest / "w.bin").read_bytes() == b"an older file the user had"
    assert not list(dest.glob("*.ckptfetch-partial*"))


def test_manifest_hash_disagreeing_with_the_hub_fails_before_download(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    m = manifest(tmp_path, f"files:\n  w.bin:\n    url: hf://org/model/model.safetensors\n    sha256: {'a' * 64}\n")
    r = api.fetch(m, tmp_path / "models", settings=fast)
    assert not r.ok and "declares sha256" in (r.files[0].error or "") and "Nothing was downloaded" in (r.files[0].error or "")
    assert hub.cdn.requests == []


@pytest.mark.parametrize("error, wanted", [
    ("hf://org/model/missing.bin", "has no file 'missing.bin'"),
    ("hf://org/model@nope/config.json", "has no revision 'nope'"),
    ("hf://org/unknown/config.json", "was not found or you have no access"),
])
def test_not_found_messages(hub: FakeHub, tmp_path: Path, fast: Settings, error: str, wanted: str) -> None:
    m = manifest(tmp_path, f"files:\n  x.bin:\n    url: {error}\n")
    r = api.fetch(m, tmp_path / "models", settings=fast)
    assert wanted in (r.files[0].error or "")


# --- tokens and gated repos ----------------------------------------------------------------


GATED = blob(9 << 20, seed=3)  # bigger than the engine's first probe: fetched in pieces, each via the Hub


def gated_setup(hub: FakeHub, tmp_path: Path) -> Path:
    hub.add_repo("org/gated", {"weights.bin": GATED, "README.md": b"licence"}, gated=True)
    return manifest(tmp_path, "files:\n  weights.bin:\n    url: hf://org/gated/weights.bin\n"
                              "  README.md:\n    url: hf://org/gated/README.md\n", name="gated")


def test_gated_repo_without_token_says_what_to_do(hub: FakeHub, tmp_path: Path) -> None:
    m = gated_setup(hub, tmp_path)
    r = run_cli("get", str(m), "--dest", str(tmp_path / "models"), env=env_for(hub, tmp_path))
    assert r.returncode == 1
    assert f"accept its licence at {hub.url}/org/gated" in r.stderr and "HF_TOKEN" in r.stderr
    assert "Traceback" not in r.stderr
    assert hub.cdn.requests == []


def test_hub_errors_name_the_target_path_the_user_asked_for(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"weights.bin": GATED}, gated=True)
    m = manifest(tmp_path, "files:\n  ckpt/gated-weights.bin:\n    url: hf://org/gated/weights.bin\n", name="named")
    r = run_cli("get", str(m), "--dest", str(tmp_path / "models"), env=env_for(hub, tmp_path))
    assert r.returncode == 1
    assert "error: ckpt/gated-weights.bin: repo org/gated is gated" in r.stderr, r.stderr


def test_gated_repo_with_wrong_token(hub: FakeHub, tmp_path: Path) -> None:
    m = gated_setup(hub, tmp_path)
    r = run_cli("get", str(m), "--dest", str(tmp_path / "models"), env=env_for(hub, tmp_path, HF_TOKEN="hf_wrong_secret"))
    assert r.returncode == 1 and "is gated" in r.stderr and "no access yet" in r.stderr
    assert "hf_wrong_secret" not in r.stdout + r.stderr
    r = run_cli("--debug", "get", str(m), "--dest", str(tmp_path / "models"), env=env_for(hub, tmp_path, HF_TOKEN="hf_invalid"))
    assert r.returncode == 1 and "rejected your token" in r.stderr
    assert "hf_invalid" not in r.stdout + r.stderr


@pytest.mark.parametrize("how", ["env", "home-file", "token-path"])
def test_token_reaches_the_hub_and_never_the_cdn(hub: FakeHub, tmp_path: Path, how: str) -> None:
    m = gated_setup(hub, tmp_path)
    extra: dict[str, str] = {}
    if how == "env":
        extra["HF_TOKEN"] = TOKEN
    elif how == "home-file":
        (tmp_path / "hf-home").mkdir()
        (tmp_path / "hf-home" / "token").write_text(TOKEN + "\n")
    else:
        (tmp_path / "tok").write_text(TOKEN)
        extra["HF_TOKEN_PATH"] = str(tmp_path / "tok")
    dest = tmp_path / "models"
    r = run_cli("get", str(m), "--dest", str(dest), "--json", env=env_for(hub, tmp_path, **extra))
    assert r.returncode == 0, r.stderr
    assert (dest / "weights.bin").read_bytes() == GATED
    assert TOKEN not in r.stdout + r.stderr
    assert hub.hub_auth() and all(a == f"Bearer {TOKEN}" for a in hub.hub_auth())
    assert len([q for q in hub.cdn.requests if "Range" in q.headers]) >= 2, "pieces, each redirected to the CDN"
    assert all(a is None for a in hub.cdn_auth()), "the token must never reach the CDN host"


# --- folders ------------------------------------------------------------------------------


@pytest.fixture
def folder_repo(hub: FakeHub) -> dict[str, bytes]:
    files = {
        "checkpoints/hf/pipeline.yaml": b"pipeline: 1\n",
        "checkpoints/hf/ss_generator.ckpt": blob(4000, seed=11),
        "checkpoints/hf/slat_generator.ckpt": blob(3000, seed=12),
        "checkpoints/hf/sub/decoder.ckpt": blob(2000, seed=13),
        "checkpoints/hf/notes.txt": b"not wanted",
        "checkpoints/other/x.ckpt": blob(1500, seed=14),
        "README.md": b"readme",
    }
    hub.add_repo("org/sam3d", files, gated=True)
    return files


FOLDER = """files:
  ckpt/hf/:
    url: hf://org/sam3d/checkpoints/hf/
    include: ["*.ckpt", "*.yaml"]
  extra.bin:
    url: hf://org/model/config.json
variants:
  hf: ["ckpt/hf/"]
  one: ["ckpt/hf/pipeline.yaml"]
"""


def test_folder_entry_lists_every_page_and_filters(hub: FakeHub, folder_repo: dict[str, bytes], tmp_path: Path,
                                                   fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    m = manifest(tmp_path, FOLDER)
    dest = tmp_path / "models"
    r = api.fetch(m, dest, variants=["hf"], settings=fast)
    assert r.ok, [f.error for f in r.files]
    wanted = {"ckpt/hf/pipeline.yaml", "ckpt/hf/ss_generator.ckpt", "ckpt/hf/slat_generator.ckpt",
              "ckpt/hf/sub/decoder.ckpt"}
    assert {f.path for f in r.files} == wanted
    for key in wanted:
        assert (dest / key).read_bytes() == folder_repo["checkpoints/" + key[len("ckpt/"):]]
    assert not (dest / "ckpt/hf/notes.txt").exists() and not (dest / "extra.bin").exists()
    tree_calls = [q.path for q in hub.requests if "/tree/" in q.path]
    assert len(tree_calls) >= 3 and any("cursor=" in p for p in tree_calls), "the listing was paginated"
    commit = hub.repos["model", "org/sam3d"].commit
    assert all(commit in q.path for q in hub.requests if "/resolve/" in q.path), "every file from the listed commit"
    # The tree's LFS sha256 pinned the big files; the record lists each file.
    rec = json.loads((dest / ".ckptfetch/record.json").read_text())["manifests"]["hub"]["files"]
    assert rec["ckpt/hf/ss_generator.ckpt"]["sha256"] == sha256(folder_repo["checkpoints/hf/ss_generator.ckpt"])
    assert rec["ckpt/hf/sub/decoder.ckpt"]["parent"] == "ckpt/hf/"
    assert api.verify(dest).ok
    by_manifest = {i.path: i.status for i in api.verify(dest, manifests=[m]).items}  # folders from the record, offline
    assert by_manifest == {**dict.fromkeys(wanted, "OK"), "extra.bin": "MISSING"}
    assert api.verify(dest, strict=True).ok

    r = api.fetch(m, dest, variants=["one"], settings=fast)  # a variant naming one file of the folder
    assert [(f.path, f.status) for f in r.files] == [("ckpt/hf/pipeline.yaml", "present")]
    # --only works per file; a second run fetches nothing.
    hub.cdn.clear_log()
    r = api.fetch(m, dest, only=["ckpt/hf/*.ckpt"], settings=fast)
    assert {f.path for f in r.files} == {"ckpt/hf/ss_generator.ckpt", "ckpt/hf/slat_generator.ckpt", "ckpt/hf/sub/decoder.ckpt"}
    assert all(f.status == "present" for f in r.files) and hub.cdn.requests == []


def test_folder_tree_pins_catch_wrong_bytes(hub: FakeHub, folder_repo: dict[str, bytes], tmp_path: Path,
                                            fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    repo = hub.repos["model", "org/sam3d"]
    data = folder_repo["checkpoints/hf/ss_generator.ckpt"]
    hub.cdn.add(hub.cdn_path(repo, sha256(data)), b"X" + data[1:])
    r = api.fetch(manifest(tmp_path, FOLDER), tmp_path / "models", only=["ckpt/hf/ss_*"], settings=fast)
    assert not r.ok and "sha256 mismatch" in (r.files[0].error or "")
    assert not (tmp_path / "models/ckpt/hf/ss_generator.ckpt").exists()


def test_show_stays_offline_with_folder_entries(tmp_path: Path) -> None:
    m = manifest(tmp_path, FOLDER)
    env = cli_env(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path))
    r = run_cli("show", str(m), "--json", env=env)
    assert r.returncode == 0, r.stderr
    files = {f["path"]: f for f in json.loads(r.stdout)["files"]}
    assert files["ckpt/hf/"]["folder"] is True and files["ckpt/hf/"]["state"] == "folder"
    assert files["ckpt/hf/"]["include"] == ["*.ckpt", "*.yaml"]


# --- layouts --------------------------------------------------------------------------------


CACHE = """layout: hf-cache
files:
  weights:
    url: hf://org/model/model.safetensors
  config:
    url: hf://org/model/config.json
  deep:
    url: hf://org/model@v1.0/sub/dir/deep.bin
  data:
    url: hf://datasets/org/data/train/part-0.bin
"""


def read_back(cache: Path, calls: list[dict[str, str]]) -> list[str]:
    """Paths huggingface_hub returns for `calls`, offline, with HF_HUB_CACHE=cache (in a fresh process)."""
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from huggingface_hub import hf_hub_download, snapshot_download\n"
        "out = []\n"
        "for c in json.loads(sys.argv[1]):\n"
        "    fn = c.pop('fn')\n"
        "    out.append(hf_hub_download(**c) if fn == 'file' else snapshot_download(**c))\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home-readback"),
               HF_HUB_DISABLE_TELEMETRY="1")
    r = subprocess.run([sys.executable, "-c", script, json.dumps(calls)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def test_hf_cache_layout_is_what_huggingface_hub_reads_offline(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    data = blob(2500, seed=7)
    hub.add_repo("org/data", {"train/part-0.bin": data}, repo_type="dataset")
    commit = hub.repos["model", "org/model"].commit
    m = manifest(tmp_path, CACHE)
    cache = tmp_path / "hub-cache"
    r = api.fetch(m, cache, settings=fast)
    assert r.ok, [f.error for f in r.files]
    repo = cache / "models--org--model"
    assert (repo / "refs" / "main").read_bytes() == commit.encode()  # no newline
    assert (repo / "refs" / "v1.0").read_bytes() == commit.encode()
    assert (repo / "blobs" / sha256(BIG)).read_bytes() == BIG
    assert (repo / "blobs" / git_blob_id(CONFIG)).read_bytes() == CONFIG
    link = repo / "snapshots" / commit / "model.safetensors"
    assert link.is_symlink() and os.readlink(link) == f"../../blobs/{sha256(BIG)}"
    deep = repo / "snapshots" / commit / "sub" / "dir" / "deep.bin"
    assert os.readlink(deep) == f"../../../../blobs/{sha256(NESTED)}"
    assert (cache / "datasets--org--data" / "snapshots").is_dir()

    got = read_back(cache, [
        {"fn": "file", "repo_id": "org/model", "filename": "model.safetensors"},
        {"fn": "file", "repo_id": "org/model", "filename": "config.json", "revision": commit},
        {"fn": "file", "repo_id": "org/model", "filename": "sub/dir/deep.bin", "revision": "v1.0"},
        {"fn": "file", "repo_id": "org/data", "filename": "train/part-0.bin", "repo_type": "dataset"},
        {"fn": "snapshot", "repo_id": "org/model"},
    ])
    assert Path(got[0]).read_bytes() == BIG
    assert Path(got[1]).read_bytes() == CONFIG
    assert Path(got[2]).read_bytes() == NESTED
    assert Path(got[3]).read_bytes() == data
    snap = Path(got[4])
    assert snap == repo / "snapshots" / commit
    assert (snap / "model.safetensors").read_bytes() == BIG and (snap / "sub/dir/deep.bin").read_bytes() == NESTED

    # verify checks the blobs through the links; the cache's own files are not UNLISTED.
    res = api.verify(cache, strict=True)
    assert res.ok, res.items
    assert {i.path for i in res.items} == {"weights", "config", "deep", "data"}
    stray = repo / "snapshots" / commit / "stray.txt"
    stray.write_text("not ours")
    assert [(i.path, i.status) for i in api.verify(cache, strict=True).items if i.status != "OK"] == [
        (stray.relative_to(cache).as_posix(), "UNLISTED")]
    stray.unlink()
    assert api.verify(cache, manifests=[m], strict=True).ok
    # A second run finds everything in place and downloads nothing.
    hub.cdn.clear_log()
    again = api.fetch(m, cache, settings=fast)
    assert all(f.status == "present" for f in again.files) and hub.cdn.requests == []
    # A link pointing at another blob, or a damaged blob, fails verification.
    os.replace(repo / "blobs" / git_blob_id(CONFIG), repo / "blobs" / "moved")
    os.symlink("../../blobs/moved", link.with_name("tmp"))
    os.replace(link.with_name("tmp"), repo / "snapshots" / commit / "config.json")
    (repo / "blobs" / sha256(BIG)).write_bytes(b"x" * len(BIG))
    res = api.verify(cache, full=True)
    status = {i.path: i.status for i in res.items}
    assert status["weights"] == "FAILED" and status["config"] == "FAILED" and status["deep"] == "OK"


def test_hf_cache_commit_revision_writes_no_ref_and_copies_without_symlinks(
    hub: FakeHub, tmp_path: Path, fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = hub.repos["model", "org/model"].commit
    m = manifest(tmp_path, f"layout: hf-cache\nfiles:\n  w:\n    url: hf://org/model@{commit}/model.safetensors\n")

    def no_symlinks(*a: object, **k: object) -> None:
        raise OSError("symlinks are not available here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    cache = tmp_path / "cache"
    assert api.fetch(m, cache, settings=fast).ok
    repo = cache / "models--org--model"
    assert not (repo / "refs").exists(), "huggingface_hub writes no ref for a commit revision"
    snap = repo / "snapshots" / commit / "model.safetensors"
    assert not snap.is_symlink() and snap.read_bytes() == BIG
    got = read_back(cache, [{"fn": "file", "repo_id": "org/model", "filename": "model.safetensors", "revision": commit}])
    assert Path(got[0]).read_bytes() == BIG
    assert api.verify(cache, strict=True).ok


def test_layout_flag_defaults_to_the_framework_caches(hub: FakeHub, tmp_path: Path) -> None:
    plain = blob(2048, seed=5)
    hub.cdn.add("/weights/resnet18-weights.pth", plain)
    m = manifest(tmp_path, f"files:\n  weights:\n    url: hf://org/model/model.safetensors\n"
                           f"  resnet:\n    url: {hub.cdn.url}/weights/resnet18-weights.pth\n    layout: torch-hub\n")
    cache, torch_home = tmp_path / "hfc", tmp_path / "torch"
    env = env_for(hub, tmp_path, HF_HUB_CACHE=str(cache), TORCH_HOME=str(torch_home))
    r = run_cli("get", str(m), "--layout", "hf-cache", env=env)
    assert r.returncode == 0, r.stderr
    commit = hub.repos["model", "org/model"].commit
    assert (cache / "models--org--model" / "snapshots" / commit / "model.safetensors").read_bytes() == BIG
    assert (cache / "checkpoints" / "resnet18-weights.pth").read_bytes() == plain  # its own layout, same DEST
    r = run_cli("verify", str(cache), "--strict", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("get", str(m), "--layout", "torch-hub", "--only", "resnet", env=env)
    assert r.returncode == 0, r.stderr
    assert (torch_home / "hub" / "checkpoints" / "resnet18-weights.pth").read_bytes() == plain
    assert "HF_HUB_CACHE" in run_cli("get", "--help", env=env).stdout


def test_torch_hub_layout_and_hf_cache_refuses_plain_urls(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    data = blob(1500, seed=4)
    hub.cdn.add("/dinov2/dinov2_vitl14_reg4_pretrain.pth", data)
    m = manifest(tmp_path, f"layout: torch-hub\nfiles:\n  dinov2:\n    url: {hub.cdn.url}/dinov2/dinov2_vitl14_reg4_pretrain.pth\n"
                           "  cfg:\n    url: hf://org/model/config.json\n")
    dest = tmp_path / "torch-hub"
    r = api.fetch(m, dest, settings=fast)
    assert r.ok
    assert (dest / "checkpoints" / "dinov2_vitl14_reg4_pretrain.pth").read_bytes() == data
    assert (dest / "checkpoints" / "config.json").read_bytes() == CONFIG
    assert api.verify(dest, strict=True).ok
    (dest / "checkpoints" / "config.json").write_bytes(b"{}")
    assert not api.verify(dest, full=True).ok
    with pytest.raises(UsageError, match="hf-cache layout only places Hugging Face files"):
        api.fetch(m, tmp_path / "x", layout="hf-cache", settings=fast)


# --- lock files --------------------------------------------------------------------------


def test_lock_writes_is_stable_and_is_enforced(hub: FakeHub, folder_repo: dict[str, bytes], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, fast: Settings) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.cdn.add("/plain/extra.bin", b"plain bytes")
    body = FOLDER.replace("variants:", f"  plain.bin:\n    url: {hub.cdn.url}/plain/extra.bin\nvariants:")
    m = manifest(tmp_path, body)
    lock_file = m.with_name("hub.lock.yaml")
    from ckptfetch.lock import load_lock
    from ckptfetch.lockmaker import make_lock

    res = make_lock(m, settings=fast)
    assert res.path == lock_file and res.changed
    commit = hub.repos["model", "org/sam3d"].commit
    lock = load_lock(lock_file)
    big = folder_repo["checkpoints/hf/ss_generator.ckpt"]
    assert lock.files["ckpt/hf/ss_generator.ckpt"].sha256 == sha256(big)
    assert lock.files["ckpt/hf/ss_generator.ckpt"].commit == commit
    assert lock.files["ckpt/hf/pipeline.yaml"].sha256 == sha256(b"pipeline: 1\n")  # hashed from the bytes
    assert lock.files["plain.bin"].sha256 == sha256(b"plain bytes") and lock.files["plain.bin"].commit is None
    assert set(lock.files) == {"ckpt/hf/pipeline.yaml", "ckpt/hf/ss_generator.ckpt", "ckpt/hf/slat_generator.ckpt",
                               "ckpt/hf/sub/decoder.ckpt", "extra.bin", "plain.bin"}
    lfs = {hub.cdn_path(hub.repos["model", "org/sam3d"], sha256(folder_repo[p])) for p in folder_repo if p.endswith(".ckpt")}
    assert not any(q.path.split("?")[0] in lfs for q in hub.cdn.requests), "LFS files were pinned from metadata"
    text = lock_file.read_bytes()
    mtime = lock_file.stat().st_mtime_ns
    r = run_cli("lock", str(m), env=env_for(hub, tmp_path, HF_TOKEN=TOKEN))
    assert r.returncode == 0, r.stderr
    assert "unchanged" in r.stdout
    assert lock_file.read_bytes() == text and lock_file.stat().st_mtime_ns == mtime

    # The Hub moves on; `get` still fetches the locked commit, listing folders from the lock.
    hub.push("org/sam3d", {"checkpoints/hf/ss_generator.ckpt": blob(4100, seed=99), "checkpoints/hf/new.yaml": b"n"})
    hub.requests.clear()
    dest = tmp_path / "models"
    r = api.fetch(m, dest, settings=fast)
    assert r.ok, [f.error for f in r.files]
    assert (dest / "ckpt/hf/ss_generator.ckpt").read_bytes() == big
    assert not (dest / "ckpt/hf/new.yaml").exists()
    assert not [q for q in hub.requests if "/tree/" in q.path], "folders were listed from the lock"
    assert api.verify(dest).ok and api.verify(dest, manifests=[m]).ok

    # A lock pin the bytes do not match fails `verify`, and `get` does not accept the file.
    tampered = text.decode().replace(sha256(b"plain bytes"), "f" * 64)
    lock_file.write_text(tampered)
    res_v = api.verify(dest)
    assert {i.path: i.status for i in res_v.items}["plain.bin"] == "FAILED"
    (dest / "plain.bin").unlink()
    r2 = api.fetch(m, dest, settings=fast)
    assert not r2.ok and "sha256 mismatch" in next(f.error for f in r2.files if f.path == "plain.bin")  # type: ignore[operator]


def test_lock_contradicting_the_manifest_is_an_error(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    m = manifest(tmp_path, f"files:\n  c.json:\n    url: hf://org/model/config.json\n    sha256: {sha256(CONFIG)}\n")
    lock_file = m.with_name("hub.lock.yaml")
    lock_file.write_text(f"ckptfetch-lock: 1\nmanifest: hub\nfiles:\n  c.json:\n    sha256: {'b' * 64}\n    size: 3\n")
    with pytest.raises(ManifestError, match=r"hub.lock.yaml:4: c.json: the lock pins sha256"):
        api.plan(m, tmp_path / "models")
    lock_file.write_text("ckptfetch-lock: 1\nmanifest: hub\nfiles:\n  c.json:\n    sha265: x\n")
    with pytest.raises(ManifestError, match=r"hub.lock.yaml:5: unknown key `sha265`.*did you mean `sha256`"):
        api.plan(m, tmp_path / "models")
    lock_file.write_text(f"ckptfetch-lock: 1\nmanifest: hub\nfiles:\n  other.bin:\n    sha256: {'b' * 64}\n    size: 3\n")
    with pytest.raises(ManifestError, match="c.json is not in the lock file"):
        api.plan(m, tmp_path / "models")
    r = run_cli("get", str(m), "--dest", str(tmp_path / "models"), env=env_for(hub, tmp_path))
    assert r.returncode == 2 and "lock" in r.stderr


def test_cli_lock_json(hub: FakeHub, tmp_path: Path) -> None:
    m = manifest(tmp_path, "files:\n  w:\n    url: hf://org/model/model.safetensors\n")
    out = tmp_path / "elsewhere" / "w.lock.yaml"
    r = run_cli("lock", str(m), "--output", str(out), "--json", env=env_for(hub, tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changed"] and doc["from_metadata"] == ["w"] and doc["from_bytes"] == []
    assert doc["files"]["w"] == {"sha256": sha256(BIG), "size": len(BIG), "commit": hub.repos["model", "org/model"].commit}
    from ckptfetch.lock import load_lock

    assert load_lock(out).files["w"].sha256 == sha256(BIG)
    assert not m.with_name("hub.lock.yaml").exists(), "--output only"


def test_hf_cache_entries_sharing_a_blob_download_it_once(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    m = manifest(tmp_path, "layout: hf-cache\nfiles:\n  weights:\n    url: hf://org/model/model.safetensors\n"
                           "  whole/:\n    url: hf://org/model/\n")
    cache = tmp_path / "cache"
    r = api.fetch(m, cache, jobs=4, settings=fast)
    assert r.ok, [f.error for f in r.files]
    assert {f.path for f in r.files} == {"weights", "whole/model.safetensors", "whole/config.json", "whole/sub/dir/deep.bin"}
    lfs = hub.cdn_path(hub.repos["model", "org/model"], sha256(BIG))
    assert sum(1 for q in hub.cdn.requests if q.path.split("?")[0] == lfs) == 1
    assert api.verify(cache, strict=True).ok


def test_lock_the_bundled_sam_pt_through_a_mirror(tmp_path: Path) -> None:
    """Archives, md5-pinned files and huggingface.co URLs behind a plain mirror: every file pinned from its bytes."""
    from ckptfetch.lock import load_lock
    from ckptfetch.lockmaker import make_lock

    from .conftest import REPO
    from .httpserver import TestServer
    from .samples import serve_manifest

    with TestServer() as server:
        copy, contents = serve_manifest(REPO / "manifests" / "sam-pt.yaml", server, tmp_path / "manifests")
        mirrors = [("https://", f"{server.url}/")]
        fast = Settings(retries=1, backoff=0.01, backoff_max=0.02, connect_timeout=2, read_timeout=2)
        res = make_lock(copy, mirrors=mirrors, settings=fast)
        lock = load_lock(res.path)
        assert set(lock.files) == set(contents)
        for key, data in contents.items():
            assert (lock.files[key].sha256, lock.files[key].size) == (sha256(data), len(data)), key
        hq = "samhq_ckpts/sam_hq_vit_b.pth"
        assert lock.files[hq].commit == "67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2"  # from the URL itself
        text = res.path.read_bytes()
        assert not make_lock(copy, mirrors=mirrors, settings=fast).changed and res.path.read_bytes() == text
        dest = tmp_path / "models"
        r = api.fetch(copy, dest, mirrors=mirrors, variants=["minimal"], settings=fast)
        assert r.ok, [f.error for f in r.files]
        assert api.verify(dest).ok


def test_metadata_read_from_a_redirect_on_the_hub_host(tmp_path: Path, fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub whose file store shares its host: the metadata is on the redirect, which is not followed for it."""
    with FakeHub(cdn_on_hub=True) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        h.add_repo("org/model", {"model.safetensors": BIG})
        r = api.fetch(manifest(tmp_path, "files:\n  w:\n    url: hf://org/model/model.safetensors\n"), tmp_path / "m",
                      settings=fast)
        assert r.ok and r.files[0].meta["etag"] == sha256(BIG) and r.files[0].digests["sha256"] == sha256(BIG)
        assert not [q for q in h.requests if q.method == "HEAD" and q.path.startswith("/cdn/")]
        assert (tmp_path / "m" / "w").read_bytes() == BIG


def test_a_gated_folder_does_not_stop_the_other_files(hub: FakeHub, folder_repo: dict[str, bytes], tmp_path: Path) -> None:
    m = manifest(tmp_path, FOLDER)
    dest = tmp_path / "models"
    r = run_cli("get", str(m), "--dest", str(dest), "--json", env=env_for(hub, tmp_path))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    status = {f["path"]: (f["status"], f["error"]) for f in doc["files"]}
    assert status["extra.bin"] == ("fetched", None)
    assert status["ckpt/hf/"][0] == "failed" and f"accept its licence at {hub.url}/org/sam3d" in status["ckpt/hf/"][1]
    assert "(no token was set)" in r.stderr
    assert (dest / "extra.bin").read_bytes() == CONFIG and not (dest / "ckpt").exists()


def test_huggingface_hub_online_finds_the_cache_complete(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    """huggingface_hub talking to the same Hub takes our files as its own: nothing is downloaded again."""
    import subprocess
    import sys

    m = manifest(tmp_path, "layout: hf-cache\nfiles:\n  whole/:\n    url: hf://org/model/\n")
    cache = tmp_path / "cache"
    assert api.fetch(m, cache, settings=fast).ok
    hub.cdn.clear_log()
    hub.requests.clear()
    script = ("import json\nfrom huggingface_hub import hf_hub_download, snapshot_download\n"
              "print(json.dumps([hf_hub_download('org/model', 'model.safetensors'), snapshot_download('org/model')]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "readback-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    file_path, snap = json.loads(r.stdout)
    assert Path(file_path).read_bytes() == BIG and (Path(snap) / "sub/dir/deep.bin").read_bytes() == NESTED
    assert hub.requests, "huggingface_hub did ask the Hub"
    assert hub.cdn.requests == [], "and downloaded nothing: the blobs and links were already right"
    assert not [q for q in hub.requests if q.method == "GET" and "/resolve/" in q.path]
    res = api.verify(cache, strict=True)  # its .locks/, CACHEDIR.TAG and tree cache are not ours to flag
    assert res.ok, [i for i in res.items if i.status != "OK"]


def test_hub_hiccups_are_retried_and_an_interrupted_blob_resumes(hub: FakeHub, tmp_path: Path, fast: Settings) -> None:
    data = blob(3 << 20, seed=21)
    repo = hub.add_repo("org/big", {"w.bin": data, "config.json": CONFIG})
    hub.fail("/org/big/resolve/main/w.bin", 503, 502)
    hub.fail("/api/models/org/big/revision/main", 500)
    hub.fail("/api/models/org/big/tree/" + repo.commit, 429)
    lfs = hub.cdn_path(repo, sha256(data))
    hub.cdn.fault(lfs, "short", at=(3 << 19) + 123)  # the CDN closes the connection half-way
    m = manifest(tmp_path, "layout: hf-cache\nfiles:\n  w:\n    url: hf://org/big/w.bin\n"
                           "  all/:\n    url: hf://org/big/\n")
    cache = tmp_path / "cache"
    r = api.fetch(m, cache, settings=fast)
    assert r.ok, [f.error for f in r.files]
    assert not any(hub.failures.values()), "every 5xx/429 was met and retried"
    ranges = [q.headers.get("Range") for q in hub.cdn.requests if q.path.startswith(lfs)]
    assert len(ranges) == 2 and ranges[1] is not None and ranges[1].startswith("bytes=1"), ranges
    assert not list(cache.rglob("*.ckptfetch-partial*"))
    assert (cache / "models--org--big" / "blobs" / sha256(data)).read_bytes() == data
    assert api.verify(cache, strict=True).ok


def test_bundled_sam_pt_hub_urls_get_the_hub_checks(hub: FakeHub, tmp_path: Path) -> None:
    """sam-pt's huggingface.co URLs pinned to commits, served by HF_ENDPOINT: md5 and the Hub's sha256 both checked."""
    from .conftest import REPO
    from .httpserver import TestServer
    from .samples import serve_manifest

    with TestServer() as unused:
        copy, contents = serve_manifest(REPO / "manifests" / "sam-pt.yaml", unused, tmp_path / "manifests")
    hq = {k: v for k, v in contents.items() if k.startswith("samhq_ckpts/")}
    first, second = "67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2", "a3a77cd0a2e5e50eaa76faccf61b964732d9b35f"
    hub.add_repo("lkeab/hq-sam", {f"sam_hq_vit_{s}.pth": hq[f"samhq_ckpts/sam_hq_vit_{s}.pth"] for s in "bhl"},
                 commit=first)
    hub.push("lkeab/hq-sam", {"sam_hq_vit_tiny.pth": hq["samhq_ckpts/sam_hq_vit_t.pth"]}, commit=second)
    dest = tmp_path / "models"
    r = run_cli("get", str(copy), "--only", "samhq_ckpts/*", "--dest", str(dest), "--json", env=env_for(hub, tmp_path))
    assert r.returncode == 0, r.stderr
    for f in json.loads(r.stdout)["files"]:
        assert f["meta"]["repo_id"] == "lkeab/hq-sam" and f["digests"]["sha256"] == sha256(hq[f["path"]])
        assert set(f["digests"]) == {"md5", "sha256"}
        assert (dest / f["path"]).read_bytes() == hq[f["path"]]
    heads = {q.path for q in hub.requests if q.method == "HEAD"}
    assert f"/lkeab/hq-sam/resolve/{first}/sam_hq_vit_b.pth" in heads
    assert f"/lkeab/hq-sam/resolve/{second}/sam_hq_vit_tiny.pth" in heads
