"""`ckptfetch lint`: what makes a manifest fragile, each finding naming its line.

The loader already refuses what is wrong; this finds what is allowed but
will hurt later: files nothing pins (or only weakly), Hub files that follow a
branch, mirrors that all live on one host, manual files nobody can check,
archives no file uses, variant patterns that select nothing, plain-http URLs
without a hash. A lock file beside the manifest counts as pinning what it pins.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import yamlsafe
from .concrete import load
from .layout import hub_file
from .lock import Lock, find_lock
from .manifest import MAX_MANIFEST_BYTES, FileEntry, Manifest, path_matches
from .sources import huggingface as hf
from .targets import windows_problem


@dataclass(frozen=True)
class Finding:
    """One warning: a short code, the message, and where (the manifest key and its line)."""

    code: str
    message: str
    key: str
    line: int | None


@dataclass(frozen=True)
class LintResult:
    manifest: Path
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {"manifest": str(self.manifest), "ok": self.ok, "warnings": [asdict(f) for f in self.findings]}


CODES = {
    "unpinned": "a file with no hash",
    "weak-pin": "a file pinned only by a sha256 prefix in its name, or only by its size",
    "hub-revision": "a Hub file or folder that follows a branch or tag instead of a commit",
    "one-host": "mirrors that all live on one host",
    "manual-unpinned": "a manual file without a hash",
    "unused-archive": "an archive no file takes members from",
    "empty-variant": "a variant pattern that selects no file",
    "insecure-url": "a plain http:// URL for a file without a full hash",
    "not-portable": "a target path Windows cannot create",
}
"""Every finding's code and what it means (README "Writing manifests")."""


def _pins(e: FileEntry, lock: Lock | None) -> str:
    """"full", "weak", "size" or "none": how strongly the manifest (or its lock) pins `e`'s bytes."""
    if e.integrity.hashes or (lock is not None and e.path in lock.files):
        return "full"
    if e.integrity.weak:
        return "full" if len(e.integrity.weak) == 64 else "weak"  # a whole sha256 in the URL path pins the bytes
    return "size" if e.integrity.size is not None else "none"


def _file_findings(e: FileEntry, lock: Lock | None, archived: bool) -> Iterable[tuple[str, str]]:
    problem = windows_problem(e.path)
    if problem:
        yield "not-portable", f"the target path {problem}: `get` refuses this manifest on Windows"
    pins = _pins(e, lock)
    if e.manual is not None:
        if pins != "full":
            yield "manual-unpinned", "manual file without md5/sha256: whatever is put there will pass as correct"
        return
    if not e.folder and not archived and pins in ("none", "size"):
        extra = " (only its size)" if pins == "size" else ""
        hub = " The Hub's sha256 is checked, but only against what it serves that day." if hub_file(e) else ""
        yield "unpinned", f"no md5/sha256{extra}: any bytes the URL serves will be accepted.{hub} " \
                          f"Pin it: `ckptfetch add` or `ckptfetch hash --yaml`."
    elif pins in ("none", "size") and archived and not e.folder:
        yield "unpinned", "archive member without md5/sha256: any bytes the archive holds will be accepted"
    elif e.folder and archived and lock is None:
        yield "unpinned", "a folder of an archive: its files are pinned only by a lock file (`ckptfetch lock`)"
    elif pins == "weak":
        yield "weak-pin", f"pinned only by the sha256 prefix {e.integrity.weak} from its {e.integrity.weak_origin}"
    f = hub_file(e)
    locked_commit = lock is not None and any(k == e.path or k.startswith(e.path) for k in lock.files)
    if f is not None and not hf.COMMIT_RE.match(f.revision) and not locked_commit:
        what = "files under it" if e.folder else "the file"
        yield "hub-revision", (f"follows `{f.revision}` of {f.repo_id}: {what} can change under the same name; "
                               "pin a commit (`@<40 hex>`) or run `ckptfetch lock`")
    yield from _url_findings(e.urls, pins)


def _url_findings(urls: tuple[str, ...], pins: str) -> Iterable[tuple[str, str]]:
    hosts = {urlsplit(u).hostname for u in urls if not u.startswith(("hf://", "file://"))}
    if len(urls) > 1 and len(hosts) == 1:
        yield "one-host", f"its {len(urls)} URLs are all on {hosts.pop()}: one outage takes them all"
    if pins != "full" and any(u.startswith("http://") for u in urls):
        yield "insecure-url", "a plain http:// URL and no full hash: the bytes can be changed on the way"


def _variant_findings(m: Manifest, lock: Lock | None) -> Iterable[tuple[str, str, tuple[str, ...]]]:
    """Patterns that reach only into folder entries: with a lock, each must match a locked file."""
    if lock is None:
        return
    for name, patterns in m.variants.items():
        for p in patterns:
            direct = any(path_matches(k, p) for k in m.files if not k.endswith("/"))
            if not direct and not any(path_matches(k, p) for k in lock.files) and not any(p == k for k in m.files):
                yield "empty-variant", f"variant {name!r}: {p!r} matches none of the files the lock lists", \
                      ("variants", name)


def lint(manifest: str | os.PathLike[str] | Manifest) -> LintResult:
    """Every fragile spot of `manifest`, in file order (offline: only the manifest and its lock are read)."""
    m = load(manifest)
    _, lines = yamlsafe.load(yamlsafe.read_text(m.source, MAX_MANIFEST_BYTES, "manifest"), str(m.source))
    lock = find_lock(m)
    found: list[Finding] = []
    used = {e.archive for e in m.files.values() if e.archive}
    for a in m.archives.values():
        keys = ("archives", a.name)
        if a.name not in used:
            found.append(Finding("unused-archive", f"archive {a.name!r} is defined but no file takes members from it",
                                 a.name, lines.of(*keys)))
        found += [Finding(c, f"archive {a.name!r}: {msg}", a.name, lines.of(*keys))
                  for c, msg in _url_findings(a.urls, "full" if a.integrity.hashes else "none")]
    for e in m.files.values():
        found += [Finding(c, msg, e.path, lines.of("files", e.path))
                  for c, msg in _file_findings(e, lock, e.archive is not None)]
    found += [Finding(c, msg, keys[-1], lines.of(*keys)) for c, msg, keys in _variant_findings(m, lock)]
    found.sort(key=lambda f: f.line or 0)
    return LintResult(m.source, found)


__all__ = ["CODES", "Finding", "LintResult", "lint"]
