"""Manifest parsing: the README "Manifest format", and errors that name file, line and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ckptfetch.errors import ManifestError
from ckptfetch.manifest import load_manifest
from ckptfetch.targets import path_problem

from .conftest import invoke

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seeds" / "001_a54cfd18e2fa8c26.txt"


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """\
ckptfetch: 1
name: demo
root: models
variants:
  small: ["a/*"]
archives:
  bundle:
    url: https://example.org/b.zip
files:
  a/one.bin:
    url: https://example.org/one.bin
    md5: 0123456789abcdef0123456789abcdef
  b/two.bin:
    archive: bundle
    member: inner/two.bin
    size: 10
  c/three.bin:
    manual: Ask the authors.
"""


def test_good_manifest_parses(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, GOOD))
    assert list(m.files) == ["a/one.bin", "b/two.bin", "c/three.bin"]
    assert m.files["a/one.bin"].integrity.hashes == {"md5": "0123456789abcdef0123456789abcdef"}
    assert m.files["b/two.bin"].archive == "bundle" and m.files["b/two.bin"].member == "inner/two.bin"
    assert m.files["c/three.bin"].kind == "manual"
    assert [e.path for e in m.select(["small"])] == ["a/one.bin"]
    assert [e.path for e in m.select(only=["b/*"])] == ["b/two.bin"]


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        (("    md5: 0123", "    mdd5: 0123"), "did you mean `md5`", 12),
        (("root: models", "rooot: models"), "did you mean `root`", 3),
        (("    md5: 0123456789abcdef0123456789abcdef", "    md5: xyz"), "32 hex digits", 12),
        (("  a/one.bin:", "  ../one.bin:"), "contains `..`", 10),
        (("  a/one.bin:", "  /abs/one.bin:"), "is absolute", 10),
        (("  a/one.bin:", "  'a\\\\one.bin':"), "backslash", 10),
        (("    archive: bundle", "    archive: bundel"), "did you mean `bundle`", 14),
        (("name: demo", "name: other"), "must equal the file name's stem", 2),
        (("ckptfetch: 1", "ckptfetch: 2"), "unsupported format version", 1),
        (("    url: https://example.org/one.bin", "    url: ftp://example.org/one.bin"), "must start with", 11),
        (("  small: [\"a/*\"]", "  small: [\"zzz/*\"]"), "matches no file", 5),
    ],
)
def test_errors_name_file_line_and_fix(tmp_path: Path, edit: tuple[str, str], message: str, line: int) -> None:
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    text = str(info.value)
    assert message in text
    assert text.startswith(f"{path}:{line}:"), text


def test_two_sources_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("    manual: Ask the authors.", "    manual: Ask.\n    urls: [https://example.org/x]")
    with pytest.raises(ManifestError, match="exactly one source"):
        load_manifest(write(tmp_path, text))


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("    md5: 0123456789abcdef0123456789abcdef", "    md5: 0123456789abcdef0123456789abcdef\n    md5: 0123456789abcdef0123456789abcdef")
    with pytest.raises(ManifestError, match="duplicate key 'md5'"):
        load_manifest(write(tmp_path, text))


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "ckptfetch: 1\nname: demo\nfiles: {}\n", "key: [unclosed\n", "!!python/object:os.system {}\n"])
def test_malformed_yaml_is_a_manifest_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ManifestError):
        load_manifest(write(tmp_path, text))


@pytest.mark.parametrize(
    ("path", "ok"),
    [("a/b.pth", True), ("a/../b", False), ("/etc/passwd", False), ("C:/x", False), ("a\\b", False),
     ("a//b", False), ("./a", False), (".ckptfetch/x", False), ("a/\x00b", False)],
)
def test_path_rules(path: str, ok: bool) -> None:
    assert (path_problem(path) is None) is ok


def test_bundled_sam_pt_matches_the_seed_md5_list() -> None:
    m = load_manifest(REPO / "manifests" / "sam-pt.yaml")
    if SEED.exists():
        pairs = re.findall(r"^([0-9a-f]{32})  models/(\S+)$", SEED.read_text(), re.MULTILINE)
        assert len(pairs) == 25
        assert {p: e.integrity.hashes["md5"] for p, e in m.files.items()} == {p: h for h, p in pairs}
    assert len(m.files) == 25
    assert [e.path for e in m.select(["minimal"])] == [
        "cotracker_ckpts/cotracker_stride_4_wind_8.pth", "samhq_ckpts/sam_hq_vit_h.pth"]
    raft = [e for e in m.files.values() if e.archive == "raft-models"]
    assert sorted(e.member for e in raft if e.member) == [f"models/raft-{n}.pth" for n in ("chairs", "kitti", "sintel", "small", "things")]
    assert m.files["samhq_ckpts/sam_hq_vit_t.pth"].urls[0].endswith(
        "/resolve/a3a77cd0a2e5e50eaa76faccf61b964732d9b35f/sam_hq_vit_tiny.pth")


def test_hf_urls_layouts_and_folder_entries(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, """\
ckptfetch: 1
name: demo
layout: hf-cache
files:
  checkpoints/hf/:
    url: hf://facebook/sam-3d-objects/checkpoints/hf/
  dinov2-small/:
    url: hf://facebook/dinov2-small/
    include: ["*.json", "*.safetensors"]
  moge/model.pt:
    url: hf://Ruicheng/moge-vitl@main/model.pt
  checkpoints/dinov2.pth:
    url: https://example.org/dinov2.pth
    layout: torch-hub
"""))
    assert m.layout == "hf-cache"
    folder = m.files["checkpoints/hf/"]
    assert folder.folder and folder.layout == "hf-cache" and folder.urls == ("hf://facebook/sam-3d-objects/checkpoints/hf/",)
    assert m.files["moge/model.pt"].layout == "hf-cache" and not m.files["moge/model.pt"].folder
    assert m.files["checkpoints/dinov2.pth"].layout == "torch-hub"
    assert m.files["dinov2-small/"].include == ("*.json", "*.safetensors") and folder.include == ()


@pytest.mark.parametrize(("entry", "message"), [
    ("url: https://example.org/dir/", "needs an hf:// URL ending in `/`"),
    ("url: hf://org/repo/dir", "needs an hf:// URL ending in `/`"),
    ("url: hf://org/repo/dir/\n    md5: 0123456789abcdef0123456789abcdef", "takes only `url`"),
    ("url: hf://org/repo/dir/\n    layout: hf-cach", "did you mean `hf-cache`"),
    ("url: hf://org/repo/dir/\n    include: 3", "must be a list of glob patterns"),
])
def test_bad_folder_entries_and_layouts(tmp_path: Path, entry: str, message: str) -> None:
    text = f"ckptfetch: 1\nname: demo\nfiles:\n  dir/:\n    {entry}\n"
    with pytest.raises(ManifestError, match=re.escape(message)) as info:
        load_manifest(write(tmp_path, text))
    assert "demo.yaml:" in str(info.value)


def test_all_digit_digest_read_as_a_number_says_to_quote_it(tmp_path: Path) -> None:
    text = "ckptfetch: 1\nname: demo\nfiles:\n  a.bin:\n    url: https://example.org/a\n    md5: " + "1" * 32 + "\n"
    with pytest.raises(ManifestError, match="put the 32 hex digits in quotes") as info:
        load_manifest(write(tmp_path, text))
    assert "demo.yaml:6:" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("    size: " + "9" * 5000 + "\n", "a value cannot be read"),
        ("    size: !!timestamp not-a-date\n", "a value cannot be read"),
        ("    size: 12\n    sha256: !!python/object:os.system x\n", "not valid YAML"),
        ("    size: 12\n    sha256: " + "a" * 64 + "\n    size: 13\n", "duplicate key"),
        ("    size: 12\n    sha256: " + "x" * 5_000_000 + "\n", "must be 64 hex digits"),
    ],
)
def test_hostile_values_in_a_lock_file_exit_2_naming_the_file(tmp_path: Path, entry: str, words: str) -> None:
    """A lock file is read by the same guarded loader as a manifest: odd YAML is one clear error, exit 2."""
    m = tmp_path / "demo.yaml"
    m.write_text("ckptfetch: 1\nname: demo\nfiles:\n  a.bin:\n    url: https://example.org/a.bin\n")
    lock = tmp_path / "demo.lock.yaml"
    lock.write_text("ckptfetch-lock: 1\nmanifest: demo\nfiles:\n  a.bin:\n" + entry)
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert str(lock) in r.stderr and words in r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr) < 2000, "a huge value must not become the message"
