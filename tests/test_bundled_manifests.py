"""The bundled manifests for the seed systems: they load, show, and fetch through --mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ckptfetch.manifest import load_manifest

from .conftest import REPO, blob, run_cli, sha256
from .httpserver import TestServer

MANIFESTS = REPO / "manifests"
BUNDLED = ["sam-pt", "sam-3d-objects", "rtmpose3d", "medical-backbones", "3dfeatprobe"]
CLIP_SHA256 = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"


def test_every_bundled_manifest_is_listed_without_error() -> None:
    r = run_cli("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["manifests"]}
    assert set(BUNDLED) <= set(rows)
    for name in BUNDLED:
        assert "error" not in rows[name], rows[name]
    assert {p.stem for p in MANIFESTS.glob("*.yaml")} == set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_show_every_bundled_manifest(name: str, tmp_path: Path) -> None:
    r = run_cli("show", name, "--dest", str(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("show", name, "--json", "--dest", str(tmp_path)).stdout)
    m = load_manifest(MANIFESTS / f"{name}.yaml")
    assert [f["path"] for f in doc["files"]] == list(m.files)
    # Folder entries are listed from the Hub only when fetched; every other file is missing from an empty DEST.
    assert all(f["state"] == ("folder" if f["folder"] else "missing") for f in doc["files"])


def test_rtmpose3d_is_pinned_by_its_file_names() -> None:
    m = load_manifest(MANIFESTS / "rtmpose3d.yaml")
    assert {k: (e.integrity.weak, e.urls[0]) for k, e in m.files.items()} == {
        "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth":
            ("235e8209", "hf://rbarac/rtmpose3d/rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth"),
        "rtmw3d-l_8xb64_cocktail14-384x288-794dbc78_20240626.pth":
            ("794dbc78", "hf://rbarac/rtmpose3d/rtmw3d-l_8xb64_cocktail14-384x288-794dbc78_20240626.pth"),
        "rtmw3d-x_8xb64_cocktail14-384x288-b0a0eab7_20240626.pth":
            ("b0a0eab7", "hf://rbarac/rtmpose3d/rtmw3d-x_8xb64_cocktail14-384x288-b0a0eab7_20240626.pth"),
    }
    assert [e.path for e in m.select(["minimal"])] == list(m.files)[:2]


def test_sam_pt_md5_prefixed_names_are_not_read_as_sha256() -> None:
    m = load_manifest(MANIFESTS / "sam-pt.yaml")
    assert all(e.integrity.weak is None for e in m.files.values())
    assert m.files["sam_ckpts/sam_vit_b_01ec64.pth"].integrity.checks == {"md5": "01ec64d29a2fca3f0661936605ae66f8"}


def test_sam_3d_objects_entries() -> None:
    m = load_manifest(MANIFESTS / "sam-3d-objects.yaml")
    f = m.files
    assert f["checkpoints/hf/"].folder and f["checkpoints/hf/"].urls == ("hf://facebook/sam-3d-objects/checkpoints/hf/",)
    assert f["checkpoints/hf/"].layout == "plain" and f["checkpoints/hf/"].include == ()
    assert (f["moge-vitl/model.pt"].urls, f["moge-vitl/model.pt"].layout) == (("hf://Ruicheng/moge-vitl/model.pt",), "hf-cache")
    dino = f["checkpoints/dinov2_vitl14_reg4_pretrain.pth"]
    assert dino.layout == "torch-hub" and dino.integrity.pin_level == "unpinned"
    assert dino.urls == ("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",)


def test_medical_backbones_entries() -> None:
    m = load_manifest(MANIFESTS / "medical-backbones.yaml")
    f = m.files
    assert m.root == "ckpt"
    assert (f["ViT-B-16.pt"].integrity.weak, f["ViT-B-16.pt"].integrity.weak_origin) == (CLIP_SHA256, "URL path")
    assert f["checkpoints/resnet18-f37072fd.pth"].integrity.weak == "f37072fd"
    assert f["dinov2_vitb14_pretrain.pth"].integrity.pin_level == "unpinned"
    unimed = f["unimed_clip_vit_b16.pt"]
    assert unimed.kind == "manual" and unimed.manual_url is not None and "sharepoint.com" in unimed.manual_url
    hub = {k: e.urls[0] for k, e in f.items() if e.folder}
    assert hub == {
        "biomedclip/": "hf://microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224/",
        "biomedbert-text-config/": "hf://microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract/",
        "metaclip/": "hf://timm/vit_base_patch16_clip_224.metaclip_400m/",
        "clipseg/": "hf://CIDAS/clipseg-rd64-refined/",
    }
    assert all(f[k].layout == "hf-cache" for k in hub)
    assert "open_clip_pytorch_model.bin" in f["biomedclip/"].include and f["metaclip/"].include == ()


def test_3dfeatprobe_has_one_variant_per_backbone() -> None:
    m = load_manifest(MANIFESTS / "3dfeatprobe.yaml")
    repos = {e.urls[0].removeprefix("hf://").rstrip("/") for e in m.files.values()}
    expected = (
        {f"facebook/dinov2-{s}" for s in ("small", "base", "large", "giant")}
        | {f"facebook/dinov2-with-registers-{s}" for s in ("small", "base", "large", "giant")}
        | {f"timm/vit_{s}_patch16_dinov3.lvd1689m" for s in ("small", "small_plus", "base", "large", "huge_plus", "7b")}
        | {"openai/clip-vit-large-patch14", "openai/clip-vit-base-patch16", "openai/clip-vit-base-patch32"}
        | {f"facebook/vit-mae-{s}" for s in ("base", "large", "huge")}
        | {"facebook/VGGT-1B"}
    )
    assert repos == expected
    assert all(e.folder and e.layout == "hf-cache" and e.include for e in m.files.values())
    for key in m.files:
        assert [e.path for e in m.select([key.rstrip("/")])] == [key]
    assert [e.path for e in m.select(["minimal"])] == ["dinov2-base/", "clip-vit-base-patch16/", "mae-base/"]
    assert len(m.select(["dinov3"])) == 6


# --- fetching through --mirror with synthetic bytes ----------------------------------------------


def mirrored_copy(name: str, keys: list[str], server: TestServer, out: Path, prefix: str = "") -> tuple[Path, dict[str, bytes]]:
    """A copy of bundled manifest `name` whose `keys` are served by `server` and pinned to synthetic bytes.

    hf:// URLs are served under /hf/ORG/REPO/PATH, other URLs under /HOST/PATH (`--mirror https://=SERVER/`).
    The copy pins each served file by an explicit sha256 of its synthetic bytes, which takes the place
    of the real file's sha256 (prefix) carried in its URL.
    """
    doc = yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())
    contents: dict[str, bytes] = {}
    for n, key in enumerate(keys):
        entry = doc["files"][key]
        data = blob(30_000 + n, seed=100 + n)
        contents[key] = data
        url = entry["url"]
        path = "/hf/" + url.removeprefix("hf://") if url.startswith("hf://") else "/" + url.removeprefix("https://")
        server.add(path, data)
        entry["sha256"] = sha256(data)
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{name}.yaml"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy, contents


def mirrors(server: TestServer) -> list[str]:
    return ["--mirror", f"hf://={server.url}/hf/", "--mirror", f"https://={server.url}/"]


def test_rtmpose3d_through_a_mirror(server: TestServer, tmp_path: Path) -> None:
    keys = list(load_manifest(MANIFESTS / "rtmpose3d.yaml").files)
    manifest, contents = mirrored_copy("rtmpose3d", keys, server, tmp_path / "m")
    dest = tmp_path / "checkpoints"
    r = run_cli("get", str(manifest), "--minimal", "--dest", str(dest), *mirrors(server))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in dest.iterdir()} == {".ckptfetch", *keys[:2]}
    r = run_cli("get", str(manifest), "--dest", str(dest), *mirrors(server))
    assert r.returncode == 0, r.stderr
    for key, data in contents.items():
        assert (dest / key).read_bytes() == data
    assert run_cli("verify", str(dest)).returncode == 0


def test_rtmpose3d_file_name_pins_reject_other_bytes(server: TestServer, tmp_path: Path) -> None:
    """The real manifest, served bytes whose sha256 does not start with the prefix in the file name."""
    key = "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth"
    data = blob(10_000, seed=5)
    server.add(f"/hf/rbarac/rtmpose3d/{key}", data)
    dest = tmp_path / "checkpoints"
    r = run_cli("get", "rtmpose3d", "--only", key, "--dest", str(dest), "--mirror", f"hf://={server.url}/hf/")
    assert r.returncode == 1
    assert "expected a digest starting with 235e8209" in r.stderr and sha256(data) in r.stderr
    assert not (dest / key).exists()


def test_medical_backbones_files_through_a_mirror_and_the_manual_one(server: TestServer, tmp_path: Path) -> None:
    keys = ["ViT-B-16.pt", "dinov2_vitb14_pretrain.pth", "checkpoints/resnet18-f37072fd.pth"]
    manifest, contents = mirrored_copy("medical-backbones", keys, server, tmp_path / "m")
    dest = tmp_path / "ckpt"
    only = [a for k in keys for a in ("--only", k)]
    r = run_cli("get", str(manifest), *only, "--dest", str(dest), *mirrors(server))
    assert r.returncode == 0, r.stderr
    for key, data in contents.items():
        assert (dest / key).read_bytes() == data
    assert server.hits(f"/openaipublic.azureedge.net/clip/models/{CLIP_SHA256}/ViT-B-16.pt") == 1

    # UniMed-CLIP: instructions and the page, exit 1; then present and verified, exit 0.
    r = run_cli("get", str(manifest), "--variant", "unimed-clip", "--dest", str(dest), *mirrors(server))
    assert r.returncode == 1
    assert "unimed_clip_vit_b16.pt is missing and must be fetched by hand" in r.stderr
    assert "get it from https://mbzuaiac-my.sharepoint.com/" in r.stderr
    (dest / "unimed_clip_vit_b16.pt").write_bytes(b"a checkpoint saved from the browser")
    r = run_cli("get", str(manifest), "--variant", "unimed-clip", "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    r = run_cli("verify", str(dest))
    assert r.returncode == 0 and "unimed_clip_vit_b16.pt: OK" in r.stdout


def test_sam_3d_objects_dinov2_through_a_mirror(server: TestServer, tmp_path: Path) -> None:
    key = "checkpoints/dinov2_vitl14_reg4_pretrain.pth"
    manifest, contents = mirrored_copy("sam-3d-objects", [key], server, tmp_path / "m")
    dest = tmp_path / "sam3d"
    r = run_cli("get", str(manifest), "--variant", "dinov2", "--dest", str(dest), *mirrors(server))
    assert r.returncode == 0, r.stderr
    # torch hub's layout: DEST/checkpoints/<file name of the URL>, which is also the key.
    assert (dest / "checkpoints/dinov2_vitl14_reg4_pretrain.pth").read_bytes() == contents[key]
    assert run_cli("verify", str(dest)).returncode == 0
