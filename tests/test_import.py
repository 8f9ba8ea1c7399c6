"""`ckptfetch import`: drafts from READMEs, shell scripts and hash lists; what it cannot translate, it lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptfetch.errors import UsageError
from ckptfetch.importing import import_text
from ckptfetch.layout import hub_file
from ckptfetch.manifest import Manifest, load_manifest, parse_manifest

from .conftest import REPO, invoke

SAM_PT_GUIDE = REPO / "tests" / "data" / "sam-pt-prepare-checkpoints.md"
RTMPOSE3D_README = REPO / "tests" / "data" / "rtmpose3d-checkpoints-readme.md"


def _draft(text: str, name: str = "demo", **kw: str) -> tuple[Manifest, list[tuple[int, str]]]:
    r = import_text(text, name=name, **kw)
    return parse_manifest(r.text, f"{name}.yaml"), [(n.line, n.reason) for n in r.untranslated]


def _semantic(m: Manifest) -> dict[str, tuple[object, ...]]:
    """What a manifest fetches, per target: URLs (or the archive's URLs and the member) and pins."""
    out: dict[str, tuple[object, ...]] = {}
    for key, e in m.files.items():
        source: tuple[object, ...] = (e.archive and m.archives[e.archive].urls, e.member) if e.archive else e.urls
        out[key] = (source, e.integrity.hashes, e.layout)
    return out


def test_the_sam_pt_guide_imports_to_the_bundled_manifest() -> None:
    seed = REPO.parent / "shared" / "seeds" / "001_a54cfd18e2fa8c26.txt"
    text = SAM_PT_GUIDE.read_text()
    if seed.exists():  # the copy in tests/data must stay the upstream text it claims to be
        assert text.split("-->\n", 1)[1] == seed.read_text()
    result = import_text(text, name="sam-pt", source=str(SAM_PT_GUIDE))
    drafted = parse_manifest(result.text, "sam-pt.yaml")
    bundled = load_manifest(REPO / "manifests" / "sam-pt.yaml")

    assert _semantic(drafted) == _semantic(bundled)
    assert (drafted.root, drafted.layout) == (bundled.root, bundled.layout)
    assert [(n.line - 5, n.text) for n in result.untranslated] == [(194, "pip install gdown")]  # 5: the origin note
    # Where the two differ by a decision the bundled manifest's comments document, not by what is fetched:
    # its archive names are the upstream projects' (pips-reference-model, ...), the draft names an archive after
    # the folder and file the guide downloads it to; and its variants (the guide's "minimal" set, one per folder)
    # are written by hand: the guide's minimal tree contradicts its own md5 list and wget lines, which the
    # bundled manifest's comment on `minimal` explains, so an importer cannot take it from there.
    assert sorted(drafted.archives) == ["pips_ckpts-reference_model", "pips_plus_plus_ckpts-reference_model",
                                        "raft_ckpts-models"]
    assert sorted(a.urls for a in drafted.archives.values()) == sorted(a.urls for a in bundled.archives.values())
    assert drafted.variants == {} and "minimal" in bundled.variants


def test_the_rtmpose3d_checkpoint_list_imports_to_the_bundled_files() -> None:
    """Its README lists bare Hub URLs in a code block (rtmpose3d/configs/__init__.py holds the same three)."""
    seed = REPO.parent / "shared" / "seeds" / "002_d5b44b56f096af00.txt"
    text = RTMPOSE3D_README.read_text()
    if seed.exists():
        assert text.split("-->\n", 1)[1] == seed.read_text()
    result = import_text(text, name="rtmpose3d", source=str(RTMPOSE3D_README))
    drafted = parse_manifest(result.text, "rtmpose3d.yaml")
    bundled = load_manifest(REPO / "manifests" / "rtmpose3d.yaml")

    def hub(m: Manifest) -> dict[str, tuple[str, str, str]]:
        out = {}
        for key, e in m.files.items():
            f = hub_file(e)
            assert f is not None, key
            out[key] = (f.repo_id, f.revision, f.path)
        return out

    assert hub(drafted) == hub(bundled)  # resolve/main/<file> URLs as written, hf://... in the manifest
    untranslated = [n.text.split()[0:2] for n in result.untranslated]
    assert ["hf", "upload"] in untranslated and all(w[0] != "https:" for w in untranslated), untranslated


def test_bare_urls_in_a_code_block_are_fetched_to_their_file_names() -> None:
    text = "```\nhttps://example.org/w/model.pth\nhttps://example.org/w/pack.tar.gz?dl=1\nhttps://github.com/org/repo\n```\n"
    m, notes = _draft(text)
    assert {k: e.urls for k, e in m.files.items()} == {"model.pth": ("https://example.org/w/model.pth",),
                                                        "pack.tar.gz": ("https://example.org/w/pack.tar.gz?dl=1",)}
    assert notes == [(4, "a bare URL whose path does not name a file")]


def test_the_cli_writes_a_draft_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "manifests" / "sam-pt.yaml"
    r = invoke("import", str(SAM_PT_GUIDE), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "25 files drafted" in r.stderr and "pip install gdown" in r.stderr
    assert "# Not translated:" in out.read_text() and "pip install gdown" in out.read_text()
    assert load_manifest(out).name == "sam-pt"  # the name comes from --output
    r = invoke("import", str(SAM_PT_GUIDE), "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    assert invoke("show", str(out)).returncode == 0


def test_download_forms_and_folders(tmp_path: Path) -> None:
    text = """
```bash
mkdir -p weights && cd weights
curl -L -o det.pth https://example.org/det.pth
curl -LO https://example.org/pose.pth?download=1
wget -P backbones https://example.org/vit.pth
wget -qO- https://example.org/pack.tar.gz | tar xz -C packed a/one.bin a/two.bin
curl -sL https://example.org/raw.bin > raw.bin
hf download org/model config.json model.safetensors --local-dir hub-model --revision v1.0
huggingface-cli download org/whole --include "*.ckpt" --local-dir whole
wget https://example.org/old.pth && mv old.pth renamed.pth
cd ..
```
"""
    m, notes = _draft(text)
    assert notes == []
    assert m.root == "weights"
    got = {k: (e.urls, e.member, e.folder, e.include) for k, e in m.files.items()}
    assert got == {
        "det.pth": (("https://example.org/det.pth",), None, False, ()),
        "pose.pth": (("https://example.org/pose.pth?download=1",), None, False, ()),  # curl -O drops the query
        "backbones/vit.pth": (("https://example.org/vit.pth",), None, False, ()),
        "packed/a/one.bin": ((), "a/one.bin", False, ()),
        "packed/a/two.bin": ((), "a/two.bin", False, ()),
        "raw.bin": (("https://example.org/raw.bin",), None, False, ()),
        "hub-model/config.json": (("hf://org/model@v1.0/config.json",), None, False, ()),
        "hub-model/model.safetensors": (("hf://org/model@v1.0/model.safetensors",), None, False, ()),
        "whole/": (("hf://org/whole/",), None, True, ("*.ckpt",)),
        "renamed.pth": (("https://example.org/old.pth",), None, False, ()),
    }
    assert [a.urls for a in m.archives.values()] == [("https://example.org/pack.tar.gz",)]


@pytest.mark.parametrize(("line", "reason"), [
    ("gdown --fuzzy https://drive.google.com/file/d/XYZ/view", "gdown names the file"),
    ("wget -O out.pth $BASE/out.pth", "uses $BASE"),
    ("wget --header 'Authorization: Bearer x' https://example.org/a.pth", "sends a header"),
    ("wget https://example.org/a.zip && unzip a.zip", "no hash list says which files"),
    ("tar xvf nowhere.tar", "which no download line fetched"),
    ("wget -O /opt/models/a.pth https://example.org/a.pth", "outside the project's folder"),
    ("curl https://example.org/a.pth", "writes to stdout"),
    ("python download.py", "runs a program"),
    ("wget -O a.pth \"https://example.org/a.pth", "cannot be split"),
    ("hf download org/repo --exclude '*.bin'", "--exclude"),
])
def test_what_cannot_be_translated_is_listed(line: str, reason: str) -> None:
    text = f"```sh\nwget -O keep.pth https://example.org/keep.pth\n{line}\n```\n"
    r = import_text(text, name="demo")
    assert [n.line for n in r.untranslated] == [3], r.untranslated
    assert reason in r.untranslated[0].reason and r.untranslated[0].text == line
    assert f"#   line 3: {line}" in r.text  # the draft says so too


def test_variables_continuations_and_comments() -> None:
    text = """#!/bin/sh
BASE=https://example.org/releases  # where the weights live
export DIR=ckpts
wget -O $DIR/a.pth \\
     ${BASE}/a.pth#frag   # a fragment is not a comment
"""
    m, notes = _draft(text)
    assert notes == []
    assert m.root == "ckpts" and m.files["a.pth"].urls == ("https://example.org/releases/a.pth#frag",)


def test_hash_lists_with_a_base_url() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    m, notes = _draft(f"{md5}  weights/a b.pth\n{md5} *weights/c.pth\nSHA256 (weights/c.pth) = {sha}\n",
                      base_url="https://example.org/v1/")
    assert notes == []
    assert m.root == "weights"
    assert m.files["a b.pth"].urls == ("https://example.org/v1/weights/a%20b.pth",)
    assert m.files["c.pth"].integrity.hashes == {"md5": md5, "sha256": sha}
    with pytest.raises(UsageError, match="line 1: a hash for a file no line downloads .give --base-url"):
        import_text(f"{md5}  a.pth\n", name="demo")  # no --base-url: said, not guessed


def test_nothing_to_draft_is_a_usage_error(tmp_path: Path) -> None:
    p = tmp_path / "README.md"
    p.write_text("# A project\n\n```bash\npip install thing\n```\n")
    r = invoke("import", str(p), "--name", "x")
    assert r.returncode == 2 and "no download line" in r.stderr and "pip install" not in r.stdout
