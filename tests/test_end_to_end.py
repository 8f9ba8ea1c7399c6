"""The real bundled sam-pt manifest, end to end through `--mirror` and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO, run_cli
from .httpserver import TestServer
from .samples import mirror_path, serve_manifest

SAM_PT = REPO / "manifests" / "sam-pt.yaml"


@pytest.fixture
def sam_pt(server: TestServer, tmp_path: Path) -> tuple[Path, dict[str, bytes], list[str]]:
    manifest, contents = serve_manifest(SAM_PT, server, tmp_path / "manifests")
    return manifest, contents, ["--mirror", f"https://={server.url}/"]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".ckptfetch" not in p.parts}


def test_minimal_then_everything(server: TestServer, tmp_path: Path, sam_pt: tuple[Path, dict[str, bytes], list[str]]) -> None:
    manifest, contents, mirror = sam_pt
    dest = tmp_path / "models"

    r = run_cli("get", str(manifest), "--minimal", "--dest", str(dest), *mirror)
    assert r.returncode == 0, r.stderr
    minimal = {"cotracker_ckpts/cotracker_stride_4_wind_8.pth", "samhq_ckpts/sam_hq_vit_h.pth"}
    assert files_under(dest) == minimal
    for p in minimal:
        assert (dest / p).read_bytes() == contents[p]

    r = run_cli("verify", str(dest))
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(f"{p}: OK" for p in minimal)

    r = run_cli("get", str(manifest), "--dest", str(dest), *mirror, "--jobs", "6")
    assert r.returncode == 0, r.stderr + r.stdout
    assert files_under(dest) == set(contents), "exactly the 25 listed files, nothing else"
    for p, data in contents.items():
        assert (dest / p).read_bytes() == data, p
    # Guarantee 9: only the files and .ckptfetch/; no partials, no cached archives left.
    assert {p.name for p in dest.iterdir()} - {".ckptfetch"} == {p.split("/")[0] for p in contents}
    assert not list(dest.rglob("*.ckptfetch-partial*"))
    assert not list((dest / ".ckptfetch").glob("archives/*"))
    # Each archive crossed the network once, however many files it yields.
    assert server.hits(mirror_path("https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip")) == 1
    # The minimal files were not fetched again.
    assert server.hits(mirror_path("https://dl.fbaipublicfiles.com/cotracker/cotracker_stride_4_wind_8.pth")) == 1

    r = run_cli("verify", str(dest))
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 25 and all(line.endswith(": OK") for line in r.stdout.splitlines())

    # A third run fetches nothing at all.
    before = len(server.requests)
    r = run_cli("get", str(manifest), "--dest", str(dest), *mirror)
    assert r.returncode == 0
    assert len(server.requests) == before


def test_corruption_is_caught_and_repaired(server: TestServer, tmp_path: Path, sam_pt: tuple[Path, dict[str, bytes], list[str]]) -> None:
    manifest, contents, mirror = sam_pt
    dest = tmp_path / "models"
    assert run_cli("get", str(manifest), "--dest", str(dest), *mirror, "--only", "sam_ckpts/*").returncode == 0
    victim = dest / "sam_ckpts/sam_vit_b_01ec64.pth"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    import os

    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells

    r = run_cli("verify", str(dest))
    assert r.returncode == 1
    assert "sam_ckpts/sam_vit_b_01ec64.pth: FAILED" in r.stdout.splitlines()
    r = run_cli("verify", str(dest), "-q")
    assert r.stdout.splitlines() == ["sam_ckpts/sam_vit_b_01ec64.pth: FAILED"]

    victim2 = dest / "sam_ckpts/sam_vit_l_0b3195.pth"
    victim2.unlink()
    r = run_cli("verify", str(dest), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["ok"] is False
    assert {f["path"]: f["status"] for f in doc["files"]}["sam_ckpts/sam_vit_l_0b3195.pth"] == "MISSING"

    hits = server.hits(mirror_path("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"))
    r = run_cli("get", str(manifest), "--dest", str(dest), *mirror, "--only", "sam_ckpts/*")
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == contents["sam_ckpts/sam_vit_b_01ec64.pth"]
    assert victim2.read_bytes() == contents["sam_ckpts/sam_vit_l_0b3195.pth"]
    # The good file was not fetched again.
    assert server.hits(mirror_path("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth")) == hits
    assert run_cli("verify", str(dest)).returncode == 0


def test_verify_strict_and_manifest(server: TestServer, tmp_path: Path, sam_pt: tuple[Path, dict[str, bytes], list[str]]) -> None:
    manifest, contents, mirror = sam_pt
    dest = tmp_path / "models"
    assert run_cli("get", str(manifest), "--dest", str(dest), *mirror, "--variant", "superglue").returncode == 0
    (dest / "stray.txt").write_text("x")
    assert run_cli("verify", str(dest)).returncode == 0
    r = run_cli("verify", str(dest), "--strict")
    assert r.returncode == 1 and "stray.txt: UNLISTED" in r.stdout
    r = run_cli("verify", str(dest), "--manifest", str(manifest))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert "superglue_ckpts/superpoint_v1.pth: OK" in lines
    assert "sam_ckpts/sam_vit_b_01ec64.pth: MISSING" in lines


def test_get_json_is_one_document(server: TestServer, tmp_path: Path, sam_pt: tuple[Path, dict[str, bytes], list[str]]) -> None:
    manifest, _, mirror = sam_pt
    r = run_cli("get", str(manifest), "--dest", str(tmp_path / "m"), *mirror, "--minimal", "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and {f["status"] for f in doc["files"]} == {"fetched"}


def test_dry_run_fetches_nothing(server: TestServer, tmp_path: Path, sam_pt: tuple[Path, dict[str, bytes], list[str]]) -> None:
    manifest, _, mirror = sam_pt
    r = run_cli("get", str(manifest), "--dest", str(tmp_path / "m"), *mirror, "--dry-run")
    assert r.returncode == 0
    assert "25 to fetch" in r.stdout
    assert {q.method for q in server.requests} <= {"HEAD"}, "a dry run only asks for sizes"
    assert not (tmp_path / "m").exists()
