"""Hashed mirrors on the `get` side: the lock file a push left on the mirror, for manifests that pin too little.

A hashed mirror (README "Clusters and air-gapped sites") holds each file at
`ROOT/sha256/<hex>`, so it serves only files whose sha256 is known. `mirror
push` (`mirroring.py`) also leaves `ROOT/manifests/NAME.lock.yaml`. When a
manifest has no lock file beside it and some selected file has no full
sha256 pin (or is a folder entry), the first hashed mirror that has that lock
lends its pins: a site behind an air gap can then `get --offline
--hashed-mirror ROOT` a manifest that pins only md5s, or nothing.

The mirror's lock only adds: a pin that contradicts the manifest is ignored
(the manifest wins, its file is fetched as the manifest says), a file the
manifest no longer lists is ignored, a file it does not list is left as the
manifest has it. A folder entry becomes the files the lock lists under it
(the push writes them only when it took the whole folder). The candidates
themselves (`ROOT/sha256/<hex>`, tried first) are `sourcing.Fetcher`'s.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import download as dl
from .concrete import ManifestRef, load
from .download.settings import Settings
from .errors import CkptfetchError, ManifestError
from .folders import file_entry, inside, source_folder
from .lock import Lock, Pin, find_lock, load_lock
from .manifest import FileEntry, Integrity, Manifest
from .progress import NullReporter
from .results import Plan
from .sources import Context, resolve
from .sources import huggingface as hf
from .status import Action
from .urls import redact

if TYPE_CHECKING:
    import requests

_FOUND: dict[str, Lock] = {}  # mirrors' locks this process read, by URL
_FOUND_LOCK = threading.Lock()


def lock_url(root: str, name: str) -> str:
    """Where a push leaves manifest `name`'s lock on the hashed mirror `root`."""
    return f"{root}/manifests/{name}.lock.yaml"


def needs_pins(m: Manifest) -> bool:
    """Whether some file of `m` (not a manual one) lacks the full sha256 a hashed mirror names it by."""
    for e in m.files.values():
        sha = e.integrity.checks.get("sha256")
        if e.manual is None and (e.folder or sha is None or len(sha) != 64):
            return True
    return False


def planned(manifest: ManifestRef, roots: Sequence[str], settings: Settings,
            make: Callable[[ManifestRef, bool], Plan]) -> Plan:
    """The run's plan (`make(manifest, local_only)`), with the pins of the first hashed mirror's lock for the manifest
    when it needs them and has no lock of its own.

    The mirror is asked only when some file must be fetched: a job's ranks that find every file in place (checked
    against the manifest's own pins) ask it nothing. A manifest with Hub folders asks it first, so the folders are
    listed from its lock rather than through a Hub that may not be reachable.
    """
    if not roots:
        return make(manifest, False)
    m = load(manifest)
    if not needs_pins(m) or find_lock(m) is not None:
        return make(m, False)
    if not any(e.folder and not e.archive for e in m.files.values()):
        p = make(m, True)
        if all(i.action == Action.PRESENT for i in p.items):
            return p
    return make(with_mirror_lock(m, roots, settings), False)


def with_mirror_lock(m: Manifest, roots: Sequence[str], settings: Settings) -> Manifest:
    """`m` with the pins of the first hashed mirror's lock for it (`m` itself when none has one)."""
    session = dl.make_session()
    try:
        for root in roots:
            lock = read_lock(root, m.name, session, settings)
            if lock is not None:
                return overlay(m, lock)
    finally:
        session.close()
    return m


def read_lock(root: str, name: str, session: requests.Session, settings: Settings) -> Lock | None:
    """The lock of manifest `name` on hashed mirror `root`, read through the sources and the engine; None when
    the mirror has none (or cannot be reached: its files are then not served either, and each says why).

    A lock found is kept for the life of the process: `ckptfetch.path()` called for each of many files (by
    each of a job's ranks) reads it once, not once a file.
    """
    url = lock_url(root, name)
    with _FOUND_LOCK:
        if url in _FOUND:
            return _FOUND[url]
    quick = dataclasses.replace(settings, retries=min(settings.retries, 1))  # a missing lock is the common case
    with tempfile.TemporaryDirectory(prefix="ckptfetch-mirror-lock-") as tmp:
        path = Path(tmp) / f"{name}.lock.yaml"
        try:
            found = resolve(url, Context(session, quick, url))
            dl.download(found.requests, path, hashes={}, size=None, algorithms=[], session=session, settings=quick,
                     reporter=NullReporter(), label=redact(url))
        except CkptfetchError:
            return None
        try:
            lock = load_lock(path)
        except ManifestError as exc:
            text = str(exc).replace(str(path), redact(url))
            raise ManifestError(f"{text} (the hashed mirror's lock; push the manifest to it again)") from None
    if lock.manifest != name:
        return None
    with _FOUND_LOCK:
        _FOUND[url] = lock
    return lock


def overlay(m: Manifest, lock: Lock) -> Manifest:
    """`m` with the pins `lock` adds, and its folder entries listed from it where it lists them."""
    files: dict[str, FileEntry] = {}
    for key, e in m.files.items():
        if not e.folder:
            pin = lock.files.get(key)
            files[key] = _pinned(e, pin) if pin is not None else e
            continue
        children = [_pinned(file_entry(e, rel, Integrity(), pin.commit), pin)
                    for rel, pin in _under(e, lock)]
        if children:
            files.update((c.path, c) for c in children)
        else:
            files[key] = e
    return dataclasses.replace(m, files=files)


def _under(e: FileEntry, lock: Lock) -> list[tuple[str, Pin]]:
    """(path inside folder entry `e`, pin) for each file the lock lists under it that the entry still takes."""
    folder = source_folder(e)
    out = []
    for key, pin in lock.files.items():
        rel = key[len(e.path):] if key.startswith(e.path) else ""
        if rel and inside(e, f"{folder}/{rel}" if folder else rel) is not None:
            out.append((rel, pin))
    return out


def _pinned(e: FileEntry, pin: Pin) -> FileEntry:
    """`e` with the lock's sha256 and size, unless they contradict its own pins (the manifest wins)."""
    sha = e.integrity.hashes.get("sha256")
    if (sha is not None and sha != pin.sha256) or (e.integrity.size is not None and e.integrity.size != pin.size):
        return e
    if e.integrity.weak and not pin.sha256.startswith(e.integrity.weak):
        return e
    commit = e.commit or (pin.commit if any(hf.parse(u) for u in e.urls) else None)
    return dataclasses.replace(e, integrity=Integrity({**e.integrity.hashes, "sha256": pin.sha256}, pin.size),
                               commit=commit)


__all__ = ["lock_url", "needs_pins", "overlay", "planned", "read_lock", "with_mirror_lock"]
