"""Lock files: `NAME.lock.yaml` beside manifest `NAME.yaml` pins every file's exact bytes.

::

    ckptfetch-lock: 1
    manifest: sam-3d-objects
    files:
      checkpoints/hf/pipeline.yaml:       # a file of a folder entry, by its target key
        sha256: 5b0c...e1
        size: 1543
        commit: 2f1e...9a                  # Hub files: the commit they were locked at

This module is the format only; `lockmaker` writes a lock (`ckptfetch lock
NAME`): sha256 and size from the Hub's metadata when it declares them (LFS
files), else from the bytes, streamed through the engine and hashed on the way. With a lock present, `get` and `verify` check its pins
like the manifest's, fetch each Hub file at its locked commit, and take folder
listings from it; a lock that contradicts the manifest is an error (run `lock`
again). The output is deterministic: re-locking unchanged files rewrites
nothing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import yamlsafe
from .discovery import shown_name
from .errors import ManifestError
from .folders import file_entry, inside, source_folder
from .manifest import FileEntry, Integrity, Manifest
from .sources import huggingface as hf
from .targets import path_problem
from .yamlsafe import hint, short

LOCK_VERSION = 1
TOP_KEYS = ("ckptfetch-lock", "manifest", "files")
ENTRY_KEYS = ("sha256", "size", "commit")
MAX_LOCK_BYTES = 64 << 20  # a lock pins every file of a folder: far more lines than a manifest


@dataclass(frozen=True)
class Pin:
    """What the lock says about one file."""

    sha256: str
    size: int
    commit: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Lock:
    path: Path
    manifest: str
    files: dict[str, Pin]


def lock_path(m: Manifest) -> Path:
    """Where the lock of manifest `m` lives: beside it, `NAME.lock.yaml`."""
    return m.source.with_name(f"{m.name}.lock.yaml")


def find_lock(m: Manifest) -> Lock | None:
    path = lock_path(m)
    return load_lock(path) if path.is_file() else None


def load_lock(path: Path) -> Lock:
    """Parse and validate a lock file (the guarded safe loader; errors name the file and line)."""
    where = str(path)
    data, lines = yamlsafe.load(yamlsafe.read_text(path, MAX_LOCK_BYTES, "lock"), where)

    def fail(message: str, *keys: str) -> ManifestError:
        return ManifestError(message, where, lines.of(*keys))

    if not isinstance(data, dict):
        raise fail("a lock file must be a mapping with `ckptfetch-lock: 1`, `manifest` and `files`")
    for k in data:
        if k not in TOP_KEYS:
            raise fail(f"unknown key `{k}` in the lock file{hint(str(k), TOP_KEYS)}", str(k))
    if data.get("ckptfetch-lock") != LOCK_VERSION:
        raise fail(f"`ckptfetch-lock` must be {LOCK_VERSION}, got {short(data.get('ckptfetch-lock'))}", "ckptfetch-lock")
    name = data.get("manifest")
    if not isinstance(name, str) or not name:
        raise fail("`manifest` must name the manifest this lock belongs to", "manifest")
    raw = data.get("files")
    if not isinstance(raw, dict):
        raise fail("`files` must be a mapping of target paths to pins", "files")
    files: dict[str, Pin] = {}
    for key, entry in raw.items():
        if not isinstance(key, str) or path_problem(key):
            raise fail(f"target path {short(key)} {path_problem(str(key)) or 'must be a string'}", "files")
        if not isinstance(entry, dict):
            raise fail(f"{short(key)} must be a mapping with `sha256` and `size`", "files", key)
        for k in entry:
            if k not in ENTRY_KEYS:
                raise fail(f"unknown key `{k}` for {short(key)}{hint(str(k), ENTRY_KEYS)}", "files", key, str(k))
        sha, size, commit = entry.get("sha256"), entry.get("size"), entry.get("commit")
        if not isinstance(sha, str) or not hf.SHA256_RE.match(sha.lower()):
            raise fail(f"`sha256` of {short(key)} must be 64 hex digits, got {short(sha)}", "files", key, "sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise fail(f"`size` of {short(key)} must be a whole number of bytes, got {short(size)}", "files", key, "size")
        if commit is not None and (not isinstance(commit, str) or not hf.COMMIT_RE.match(commit)):
            raise fail(f"`commit` of {short(key)} must be a 40-hex-digit commit, got {short(commit)}", "files", key, "commit")
        files[key] = Pin(sha.lower(), size, commit, lines.of("files", key))
    return Lock(path, name, files)


def apply_lock(m: Manifest, lock: Lock) -> Manifest:
    """`m` with the lock's pins merged in and its folders listed from the lock; contradictions are errors."""
    where = str(lock.path)
    again = f"run `ckptfetch lock {shown_name(m)}` again after changing the manifest"
    if lock.manifest != m.name:
        raise ManifestError(f"this lock belongs to manifest {short(lock.manifest)}, not {m.name!r}", where)
    files: dict[str, FileEntry] = {}
    used: set[str] = set()

    def merge(e: FileEntry, pin: Pin) -> FileEntry:
        pinned = e.integrity.hashes.get("sha256")
        if pinned is not None and pinned != pin.sha256:
            raise ManifestError(f"{e.path}: the lock pins sha256 {pin.sha256} but the manifest pins {pinned}; {again}",
                                where, pin.line)
        if e.integrity.size is not None and e.integrity.size != pin.size:
            raise ManifestError(f"{e.path}: the lock pins {pin.size} bytes but the manifest pins {e.integrity.size}; {again}",
                                where, pin.line)
        if pin.commit is not None and not any(hf.parse(u) for u in e.urls):
            raise ManifestError(f"{e.path}: the lock pins a Hub commit but the file does not come from the Hub; {again}",
                                where, pin.line)
        return dataclasses.replace(e, integrity=Integrity({**e.integrity.hashes, "sha256": pin.sha256}, pin.size),
                                   commit=pin.commit or e.commit)

    for key, e in m.files.items():
        if e.folder:
            folder = source_folder(e)
            children = []
            for lkey, pin in lock.files.items():
                if not lkey.startswith(key) or lkey in m.files:
                    continue
                rel = lkey[len(key):]
                if inside(e, f"{folder}/{rel}" if folder else rel) is None:
                    raise ManifestError(f"{lkey} is no longer in folder entry {key!r} (include); {again}", where, pin.line)
                used.add(lkey)
                children.append(merge(file_entry(e, rel, Integrity(), pin.commit), pin))
            if not children:
                raise ManifestError(f"folder entry {key!r} is not in the lock file; {again}", where)
            files.update((c.path, c) for c in children)
            continue
        found = lock.files.get(key)
        if found is None:
            if e.manual is None:
                raise ManifestError(f"{key} is not in the lock file; {again}", where)
            files[key] = e
            continue
        used.add(key)
        files[key] = merge(e, found)
    extra = [k for k in lock.files if k not in used]
    if extra:
        raise ManifestError(f"the lock lists {extra[0]}, which the manifest does not; {again}",
                            where, lock.files[extra[0]].line)
    return dataclasses.replace(m, files=files)


# --- writing ---------------------------------------------------------------------


def render(name: str, files: dict[str, Pin]) -> str:
    """The lock file's text: deterministic, so unchanged pins give identical bytes."""
    doc: dict[str, Any] = {"ckptfetch-lock": LOCK_VERSION, "manifest": name, "files": {}}
    for key, pin in files.items():
        entry: dict[str, Any] = {"sha256": pin.sha256, "size": pin.size}
        if pin.commit:
            entry["commit"] = pin.commit
        doc["files"][key] = entry
    head = (f"# Lock file of manifest {name}: the exact bytes `ckptfetch get` accepts.\n"
            f"# Written by `ckptfetch lock {name}`; `get` and `verify` enforce it. Edit the manifest, then lock again.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10_000, allow_unicode=True)


def write(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically unless it already holds it; returns whether it changed."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


__all__ = ["LOCK_VERSION", "Lock", "Pin", "apply_lock", "find_lock", "load_lock", "lock_path", "render", "write"]
