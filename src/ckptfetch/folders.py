"""Folder entries (`KEY/` -> `hf://ORG/REPO[@REV]/DIR/`) expanded into one entry per file.

A folder is listed through the Hub's tree API (recursively, every page) at the
commit its revision points at, and each file becomes an ordinary entry keyed
`KEY/<path inside DIR>`, pinned by what the listing gives (size; sha256 for
LFS files) and by the commit. After that, presence checks, `--only`, variants
and the install record work per file. A lock file, or the install record, can
stand in for the listing when there is no network to ask (see `lock.py`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ManifestError
from .manifest import FileEntry, Integrity, Manifest, path_matches, path_problem
from .sources import huggingface as hf

if TYPE_CHECKING:
    from .sources import Context

Lister = Callable[[FileEntry], list[FileEntry]]
"""Lists a folder entry's files as entries of their own."""


def folder_of(e: FileEntry) -> hf.HubFile:
    f = hf.parse(e.urls[0])
    if f is None:
        raise ManifestError(f"folder entry {e.path!r}: {e.urls[0]!r} is not a Hugging Face folder URL", str(e.path))
    return f


def inside(e: FileEntry, repo_path: str) -> str | None:
    """The path of repo file `repo_path` inside folder entry `e` when it belongs there (include globs), else None."""
    folder = folder_of(e).path.strip("/")
    rel = repo_path[len(folder) + 1:] if folder else repo_path
    if folder and not repo_path.startswith(folder + "/"):
        return None
    if e.include and not any(fnmatch.fnmatchcase(rel, g) for g in e.include):
        return None
    return rel


def file_entry(e: FileEntry, rel: str, integrity: Integrity, commit: str | None) -> FileEntry:
    """The concrete entry for file `rel` of folder entry `e`."""
    f = folder_of(e)
    folder = f.path.strip("/")
    repo_path = f"{folder}/{rel}" if folder else rel
    key = e.path + rel
    problem = path_problem(key)
    if problem:
        raise ManifestError(f"folder entry {e.path!r}: the repo file {repo_path!r} gives target {key!r}, which {problem}")
    return FileEntry(key, integrity, urls=(dataclasses.replace(f, path=repo_path).uri(),), layout=e.layout,
                     commit=commit, parent=e.path)


def might_select(e: FileEntry, m: Manifest, variants: Sequence[str], only: Sequence[str]) -> bool:
    """Whether a folder entry could yield a selected file (so it must be listed); errs towards yes."""
    def could(pattern: str) -> bool:
        if path_matches(e.path, pattern):
            return True
        literal = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        return literal.startswith(e.path) or e.path.startswith(literal)

    if variants and not any(could(p) for v in variants for p in m.variants.get(v, ())):
        return False
    return not only or any(could(g) for g in only)


def expand(
    m: Manifest,
    lister: Callable[[FileEntry], list[FileEntry]],
    *,
    wanted: Callable[[FileEntry], bool] = lambda e: True,
) -> Manifest:
    """`m` with each folder entry replaced by its files (from `lister`); unwanted folders are dropped."""
    if not any(e.folder for e in m.files.values()):
        return m
    files: dict[str, FileEntry] = {}
    for key, e in m.files.items():
        if not e.folder:
            files[key] = e
            continue
        if not wanted(e):
            continue
        for child in lister(e):
            if child is e:  # the folder could not be listed; it stays as it is, and says why in the plan
                files[key] = e
                continue
            if child.path in m.files or child.path in files:
                raise ManifestError(
                    f"folder entry {key!r} lists {child.path!r}, which the manifest already has", str(m.source)
                )
            files[child.path] = child
    return dataclasses.replace(m, files=files)


def hub_lister(ctx: Context) -> Callable[[FileEntry], list[FileEntry]]:
    """List folder entries through the Hub's tree API."""

    def lister(e: FileEntry) -> list[FileEntry]:
        folder, commit, tree = hf.list_folder(e.urls[0], ctx)
        out = []
        for t in tree:
            rel = inside(e, t.path)
            if rel is None:
                continue
            out.append(file_entry(e, rel, Integrity({"sha256": t.sha256} if t.sha256 else {}, t.size), commit))
        if not out:
            from .errors import DownloadError

            what = "matches the include patterns" if e.include else "is there"
            raise DownloadError(f"{e.path}: no file of {folder.repo_id}/{folder.path} {what} (revision {folder.revision!r})")
        return out

    return lister


def recorded_lister(record_files: Mapping[str, Mapping[str, Any]]) -> Callable[[FileEntry], list[FileEntry]]:
    """Expand folder entries from an install record: the files a past `get` listed (no network)."""

    def lister(e: FileEntry) -> list[FileEntry]:
        out = []
        for key, pins in sorted(record_files.items()):
            if pins.get("parent") != e.path:
                continue
            hashes = {k: v for k, v in pins.items() if k in ("md5", "sha1", "sha256", "sha512")}
            commit = pins.get("commit") if isinstance(pins.get("commit"), str) else None
            out.append(file_entry(e, key[len(e.path):], Integrity(hashes, pins.get("size")), commit))
        if not out:
            raise ManifestError(
                f"folder entry {e.path!r} was never fetched here, so its files are unknown without the network; "
                "run `ckptfetch get` first, or `ckptfetch lock` to write a lock file"
            )
        return out

    return lister


__all__ = ["Lister", "expand", "file_entry", "hub_lister", "inside", "might_select", "recorded_lister"]
