"""Folder entries expanded into one entry per file.

Two kinds: `KEY/` -> `hf://ORG/REPO[@REV]/DIR/` (a Hub folder) and `KEY/` ->
`archive: NAME` + `member: FOLDER/` (a folder of an archive, such as a GitHub
source tree). A Hub folder is listed through the Hub's tree API (recursively,
every page) at the commit its revision points at; each file becomes an
ordinary entry keyed `KEY/<path inside DIR>`, pinned by what the listing gives
(size; sha256 for LFS files) and by the commit. An archive's folder is known
once the archive is extracted; its files are then recorded with their sha256
and tagged with the archive's identity (`archive_id`), so a later run trusts
them only while the manifest still names the same archive and folder. After
expansion, presence checks, `--only`, variants and the install record work per
file. A lock file, or the install record, can stand in for a listing when
there is no network to ask (see `lock.py`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ManifestError
from .manifest import Archive, FileEntry, Integrity, Manifest
from .sources import huggingface as hf
from .targets import path_matches, path_problem
from .threads import parallel

if TYPE_CHECKING:
    from .sources import Context

Lister = Callable[[FileEntry], list[FileEntry]]
"""Lists a folder entry's files as entries of their own."""


def folder_of(e: FileEntry) -> hf.HubFile:
    f = hf.parse(e.urls[0])
    if f is None:
        raise ManifestError(f"folder entry {e.path!r}: {e.urls[0]!r} is not a Hugging Face folder URL", str(e.path))
    return f


def source_folder(e: FileEntry) -> str:
    """The folder entry's folder inside its source (a repo path, or an archive member), without slashes at the ends."""
    return (e.member or "").strip("/") if e.archive else folder_of(e).path.strip("/")


def inside(e: FileEntry, source_path: str) -> str | None:
    """The path of `source_path` (a repo file, an archive member) inside folder entry `e` when it belongs there
    (include globs), else None."""
    folder = source_folder(e)
    rel = source_path[len(folder) + 1:] if folder else source_path
    if folder and not source_path.startswith(folder + "/"):
        return None
    if not rel or (e.include and not any(fnmatch.fnmatchcase(rel, g) for g in e.include)):
        return None
    return rel


def archive_id(archive: Archive, e: FileEntry) -> str:
    """A short digest of what an archive folder's files came from: the archive's URLs and pins, the folder."""
    doc = [list(archive.urls), archive.integrity.hashes, archive.integrity.size, e.member, list(e.include)]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def file_entry(e: FileEntry, rel: str, integrity: Integrity, commit: str | None) -> FileEntry:
    """The concrete entry for file `rel` of folder entry `e`."""
    key = e.path + rel
    folder = source_folder(e)
    source_path = f"{folder}/{rel}" if folder else rel
    problem = path_problem(key)
    if problem:
        what = "archive member" if e.archive else "repo file"
        raise ManifestError(f"folder entry {e.path!r}: the {what} {source_path!r} gives target {key!r}, which {problem}")
    if e.archive:
        return FileEntry(key, integrity, archive=e.archive, member=source_path, layout=e.layout, parent=e.path)
    f = folder_of(e)
    return FileEntry(key, integrity, urls=(dataclasses.replace(f, path=source_path).uri(),), layout=e.layout,
                     commit=commit, parent=e.path)


def might_select(e: FileEntry, m: Manifest, variants: Sequence[str], only: Sequence[str]) -> bool:
    """Whether a folder entry could yield a selected file (so it must be listed); errs towards yes."""
    def could(pattern: str) -> bool:
        if path_matches(e.path, pattern) or "/" not in pattern.rstrip("/"):  # a bare name may be inside
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
    # Folders are listed side by side: each listing is a few requests (with retries) to the Hub.
    folders = [e for e in m.files.values() if e.folder and wanted(e)]
    listed = dict(zip((e.path for e in folders), parallel(lister, folders, workers=8), strict=True))
    files: dict[str, FileEntry] = {}
    for key, e in m.files.items():
        if not e.folder:
            files[key] = e
            continue
        if key not in listed:
            continue
        for child in listed[key]:
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
        # Errors name the manifest's key (what the user wrote), not only the repo.
        folder, commit, tree = hf.list_folder(e.urls[0], dataclasses.replace(ctx, label=e.path))
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


def recorded_lister(record_files: Mapping[str, Mapping[str, Any]], m: Manifest | None = None) -> Lister:
    """Expand folder entries from an install record: the files a past `get` listed (no network).

    An archive folder's recorded files count only while `m` still names the archive they came from.
    """

    def lister(e: FileEntry) -> list[FileEntry]:
        source = archive_id(m.archives[e.archive], e) if (m is not None and e.archive) else None
        out = []
        for key, pins in sorted(record_files.items()):
            if pins.get("parent") != e.path or (source is not None and pins.get("from") != source):
                continue
            hashes = {k: v for k, v in pins.items() if k in ("md5", "sha1", "sha256", "sha512")}
            commit = pins.get("commit") if isinstance(pins.get("commit"), str) else None
            out.append(file_entry(e, key[len(e.path):], Integrity(hashes, pins.get("size")), commit))
        if not out:
            how = ("`ckptfetch lock` to write a lock file" if not e.archive
                   else "`ckptfetch lock` to pin its files")
            raise ManifestError(
                f"folder entry {e.path!r} was never fetched here, so its files are unknown without "
                f"{'the archive' if e.archive else 'the network'}; run `ckptfetch get` first, or {how}"
            )
        return out

    return lister


__all__ = ["Lister", "archive_id", "expand", "source_folder", "file_entry", "hub_lister", "inside", "might_select", "recorded_lister"]
