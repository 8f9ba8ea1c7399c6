"""A whole folder out of an archive: a GitHub source tree for torch.hub, pinned by its files.

`member: FOLDER/` with a target ending in `/` extracts every regular file under
FOLDER/ (the README "Archive folders"), with the refusal rules of single
members; the files are recorded one by one and checked by `verify`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import yaml

from ckptfetch.lock import load_lock

from .conftest import invoke, sha256
from .httpserver import TestServer

SHA = "b8931f7bf91576930313be2c6d6af376033b35f0"
TOP = f"dinov2-{SHA}"
# What GitHub's `archive/<commit>.zip` holds: one top folder named <repo>-<commit>, folders as entries too.
TREE = {
    "hubconf.py": b"from dinov2.hub.backbones import dinov2_vitl14_reg  # noqa\n",
    "dinov2/__init__.py": b"__version__ = '0.0.1'\n",
    "dinov2/hub/__init__.py": b"",
    "dinov2/hub/backbones.py": b"def dinov2_vitl14_reg(pretrained=True): ...\n",
    "notebooks/demo.ipynb": b"{}\n",
}


def _zip(tree: dict[str, bytes], extra: list[zipfile.ZipInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(f"{TOP}/"), b"")
        for name, data in tree.items():
            zf.writestr(f"{TOP}/{name}", data)
        for info in extra or []:
            zf.writestr(info, b"../../etc/passwd")
    return buf.getvalue()


def _manifest(tmp_path: Path, url: str, **folder: object) -> Path:
    m = tmp_path / "tree.yaml"
    m.write_text(yaml.safe_dump({
        "ckptfetch": 1, "name": "tree",
        "archives": {"dinov2-source": {"url": url}},
        "files": {"hub/facebookresearch_dinov2_main/": {"archive": "dinov2-source", "member": f"{TOP}/", **folder}},
    }))
    return m


def test_a_source_tree_lands_file_by_file_and_verifies(server: TestServer, tmp_path: Path) -> None:
    url = server.add(f"/facebookresearch/dinov2/archive/{SHA}.zip", _zip(TREE))
    m = _manifest(tmp_path, url)
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    root = dest / "hub/facebookresearch_dinov2_main"
    assert {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} == TREE
    assert sorted(p.name for p in dest.iterdir()) == [".ckptfetch", "hub"], "the archive is not kept once extracted"
    r = invoke("verify", str(dest))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(TREE)
    # present: nothing is downloaded again
    hits = server.hits(f"/facebookresearch/dinov2/archive/{SHA}.zip")
    assert invoke("get", str(m), "--dest", str(dest)).returncode == 0
    assert server.hits(f"/facebookresearch/dinov2/archive/{SHA}.zip") == hits
    # a damaged file is caught, and the next get puts it right
    (root / "hubconf.py").write_bytes(b"import os; os.system('x')\n")
    r = invoke("verify", str(dest))
    assert r.returncode == 1 and "hub/facebookresearch_dinov2_main/hubconf.py: FAILED" in r.stdout
    assert invoke("get", str(m), "--dest", str(dest)).returncode == 0
    assert (root / "hubconf.py").read_bytes() == TREE["hubconf.py"]


def test_include_globs_and_the_torch_hub_layout(server: TestServer, tmp_path: Path) -> None:
    url = server.add("/src.zip", _zip(TREE))
    m = tmp_path / "tree.yaml"
    m.write_text(yaml.safe_dump({
        "ckptfetch": 1, "name": "tree", "layout": "torch-hub",
        "archives": {"src": {"url": url}},
        "files": {"facebookresearch_dinov2_main/": {"archive": "src", "member": f"{TOP}/",
                                                    "include": ["*.py"]}},
    }))
    dest = tmp_path / "hub"
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.py"))
    assert got == sorted(f"facebookresearch_dinov2_main/{k}" for k in TREE if k.endswith(".py"))
    assert not list(dest.rglob("*.ipynb"))


def test_a_lock_pins_the_folder_by_its_files(server: TestServer, tmp_path: Path) -> None:
    """GitHub does not promise stable archive bytes: the lock pins the extracted files instead."""
    path = "/tree.zip"
    url = server.add(path, _zip(TREE))
    m = _manifest(tmp_path, url)
    r = invoke("lock", str(m))
    assert r.returncode == 0, r.stderr
    lock = load_lock(m.with_name("tree.lock.yaml"))
    assert {k: p.sha256 for k, p in lock.files.items()} == {
        f"hub/facebookresearch_dinov2_main/{k}": sha256(v) for k, v in TREE.items()}
    # Re-compressed archive, same files: still accepted.
    server.replace(path, _zip(dict(reversed(list(TREE.items())))))
    dest = tmp_path / "out"
    assert invoke("get", str(m), "--dest", str(dest)).returncode == 0
    # Same archive name, one file changed upstream: the lock catches it.
    server.replace(path, _zip({**TREE, "hubconf.py": TREE["hubconf.py"].upper()}))  # same size, other bytes
    dest2 = tmp_path / "out2"
    r = invoke("get", str(m), "--dest", str(dest2), "--no-cache")  # the store holds the locked files: not them
    assert r.returncode == 1 and "hubconf.py" in r.stderr and "mismatch" in r.stderr
    assert not (dest2 / "hub/facebookresearch_dinov2_main/hubconf.py").exists()


def test_a_link_in_the_folder_is_refused(server: TestServer, tmp_path: Path) -> None:
    link = zipfile.ZipInfo(f"{TOP}/dinov2/evil")
    link.external_attr = (0o120777 << 16)  # a symlink
    url = server.add("/src.zip", _zip(TREE, [link]))
    m = _manifest(tmp_path, url)
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 1
    assert "dinov2/evil" in r.stderr and "not a regular file" in r.stderr
    assert not (dest / "hub/facebookresearch_dinov2_main/dinov2/evil").exists()


def test_a_folder_that_is_not_there_says_what_is(server: TestServer, tmp_path: Path) -> None:
    url = server.add("/src.zip", _zip(TREE))
    m = _manifest(tmp_path, url)
    text = m.read_text().replace(f"member: {TOP}/", "member: dinov2-main/")
    m.write_text(text)
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "no file under dinov2-main/" in r.stderr and f"did you mean '{TOP}'" in r.stderr and url in r.stderr
    assert not (tmp_path / "out/hub").exists(), "a failed run leaves no empty folders"


def test_the_folder_member_must_end_in_a_slash(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "https://github.com/facebookresearch/dinov2/archive/x.zip")
    m.write_text(m.read_text().replace(f"member: {TOP}/", f"member: {TOP}"))
    r = invoke("show", str(m))
    assert r.returncode == 2 and "ending in `/`" in r.stderr
