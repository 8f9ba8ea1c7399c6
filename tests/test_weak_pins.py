"""Hashes that URLs carry by convention: torch hub / OpenMMLab file names, OpenAI CLIP paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ckptfetch.errors import DownloadError
from ckptfetch.hashing import sha256_from_url
from ckptfetch.manifest import Integrity, load_manifest
from ckptfetch.pins import first_mismatch
from ckptfetch.sourcing import merge_pins as _merge_pins

from .conftest import blob, md5, run_cli, sha256
from .httpserver import TestServer

CLIP = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://download.pytorch.org/models/resnet18-f37072fd.pth", ("f37072fd", "file name")),
    ("https://h/rbarac/rtmpose3d/resolve/main/rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth", ("235e8209", "file name")),
    ("hf://rbarac/rtmpose3d/rtmw3d-l_8xb64_cocktail14-384x288-794dbc78_20240626.pth", ("794dbc78", "file name")),
    ("https://h/rtmw3d-x_8xb64_cocktail14-384x288-b0a0eab7_20240626.pth", ("b0a0eab7", "file name")),
    ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", ("7be5be79", "file name")),
    ("https://h/mnasnet0.5_top1_67.823-3ffadce67e.pth", ("3ffadce67e", "file name")),
    ("https://h/m-0123456789abcdef.tar.gz", ("0123456789abcdef", "file name")),
    (f"https://openaipublic.azureedge.net/clip/models/{CLIP}/ViT-B-16.pt", (CLIP, "URL path")),
])
def test_hash_in_url(url: str, expected: tuple[str, str]) -> None:
    assert sha256_from_url(url) == expected


@pytest.mark.parametrize("url", [
    "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",  # an md5 prefix, 6 digits, after `_`
    "https://h/rtmw3d-l_8xb64_cocktail14-384x288.pth",  # 384x288 is not hex
    "https://h/model-20240626.pth",  # a date
    "https://h/model-00001-of-00002.safetensors",  # a shard counter
    "https://h/ckpt-12000000.pt",  # a step count
    "https://h/w-deadbeefcafe.pth",  # letters only: a word, not a hash
    "https://h/w-F37072FD.pth",  # torch hub's regex is lowercase
    "https://h/w-f37072f.pth",  # 7 digits
    "https://h/resnet18-f37072fd",  # no extension
    "https://h/dinov2_vitb14_pretrain.pth",
    f"https://h/x.pth?sig={CLIP}",  # the query is not the path
    f"https://h/{CLIP}",  # a bare last segment is a name, not a folder
])
def test_no_hash_in_url(url: str) -> None:
    assert sha256_from_url(url) is None


def test_prefix_matching() -> None:
    full = "f37072fd" + "a" * 56
    assert first_mismatch({"sha256": "f37072fd"}, {"sha256": full}) is None
    assert first_mismatch({"sha256": "f37072fe"}, {"sha256": full}) == ("sha256", "f37072fe", full)
    assert first_mismatch({"sha256": full}, {"sha256": full}) is None


def manifest(tmp_path: Path, files: dict[str, dict[str, object]], name: str = "pins") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"ckptfetch": 1, "name": name, "files": files}))
    return p


def test_weak_pin_only_when_the_manifest_gives_no_hash(tmp_path: Path) -> None:
    m = load_manifest(manifest(tmp_path, {
        "a.pth": {"url": "https://h/resnet18-f37072fd.pth"},
        "b.pth": {"url": "https://h/resnet18-f37072fd.pth", "md5": "0" * 32},
        "c.pth": {"url": "https://h/plain.pth"},
        "d.pth": {"urls": ["https://mirror/resnet18-f37072fd.pth", "https://h/resnet18-f37072fd.pth"]},
        "e.pth": {"manual": "By hand."},
    }))
    f = m.files
    assert (f["a.pth"].integrity.weak, f["a.pth"].integrity.pin_level) == ("f37072fd", "weak")
    assert f["a.pth"].integrity.checks == {"sha256": "f37072fd"}
    assert f["a.pth"].integrity.describe_pin() == "weakly pinned (sha256 prefix from the file name)"
    assert f["b.pth"].integrity.weak is None and f["b.pth"].integrity.checks == {"md5": "0" * 32}
    assert f["c.pth"].integrity.pin_level == "unpinned" and f["c.pth"].integrity.checks == {}
    assert f["d.pth"].integrity.weak == "f37072fd"
    assert f["e.pth"].integrity.pin_level == "unpinned"


def test_urls_disagreeing_on_the_hash_is_a_manifest_error(tmp_path: Path) -> None:
    from ckptfetch.errors import ManifestError

    with pytest.raises(ManifestError, match="disagree"):
        load_manifest(manifest(tmp_path, {"a.pth": {"urls": ["https://h/a-f37072fd.pth", "https://h/a-0badbeef.pth"]}}))


def test_a_source_declared_sha256_must_extend_the_prefix() -> None:
    weak = Integrity(weak="f37072fd", weak_origin="file name")
    full = "f37072fd" + "b" * 56
    assert _merge_pins(weak, {"sha256": full}, None, "a.pth", "https://h/a.pth") == ({"sha256": full}, None)
    with pytest.raises(DownloadError, match="the file name says it starts with f37072fd"):
        _merge_pins(weak, {"sha256": "0" * 64}, None, "a.pth", "https://h/a.pth")


def test_get_checks_the_prefix_and_show_says_how_files_are_pinned(server: TestServer, tmp_path: Path) -> None:
    good, bad = blob(5000, seed=1), blob(5000, seed=2)
    prefix = sha256(good)[:8]
    full_url = server.add(f"/clip/models/{sha256(good)}/ViT.pt", good)
    name_url = server.add(f"/models/resnet18-{prefix}.pth", good)
    wrong_url = server.add(f"/models/vgg-{prefix}.pth", bad)
    m = manifest(tmp_path, {
        "vit.pt": {"url": full_url},
        "resnet18.pth": {"url": name_url},
        "vgg.pth": {"url": wrong_url},
        "plain.pth": {"url": server.add("/plain.pth", bad)},
        "hashed.pth": {"url": server.add("/hashed.pth", bad), "md5": md5(bad)},
    })
    dest = tmp_path / "out"

    r = run_cli("show", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert f"weakly pinned (sha256 from the URL path): {sha256(good)}" in r.stdout
    assert f"weakly pinned (sha256 prefix from the file name): {prefix}" in r.stdout
    assert "unpinned (no hash in the manifest or its URL)" in r.stdout
    doc = json.loads(run_cli("show", str(m), "--json").stdout)
    pins = {f["path"]: (f["pin"], f["weak_sha256"]) for f in doc["files"]}
    assert pins == {"vit.pt": ("weak", sha256(good)), "resnet18.pth": ("weak", prefix), "vgg.pth": ("weak", prefix),
                    "plain.pth": ("unpinned", None), "hashed.pth": ("pinned", None)}

    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress")
    assert r.returncode == 1
    assert "1 unpinned" in r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: vgg.pth: sha256 mismatch"), r.stderr
    assert f"expected a digest starting with {prefix}" in errors[0] and sha256(bad) in errors[0]
    assert not (dest / "vgg.pth").exists()
    for name in ("vit.pt", "resnet18.pth", "plain.pth", "hashed.pth"):
        assert (dest / name).is_file()

    # verify checks the full sha256 recorded at download; --manifest checks the prefix itself.
    r = run_cli("verify", str(dest))
    # vgg.pth failed its check, so it is recorded but missing: verify must fail on it.
    assert r.returncode == 1 and "vgg.pth: MISSING" in r.stdout and "resnet18.pth: OK" in r.stdout, r.stdout
    record = json.loads((dest / ".ckptfetch/record.json").read_text())
    files = next(iter(record["manifests"].values()))["files"]
    assert files["resnet18.pth"]["sha256"] == sha256(good)
    (dest / "vgg.pth").write_bytes(bad)
    r = run_cli("verify", str(dest), "--manifest", str(m))
    assert r.returncode == 1
    assert "vgg.pth: FAILED" in r.stdout and "resnet18.pth: OK" in r.stdout
