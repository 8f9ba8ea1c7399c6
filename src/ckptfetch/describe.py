"""The words the CLI prints about files: how each is pinned, where it comes from, sizes."""

from __future__ import annotations

from .errors import ManifestError
from .lock import Lock, find_lock
from .manifest import FileEntry, Manifest
from .urls import redact


def human_size(n: int | None) -> str:
    """`n` bytes as people read them: "512 B", "92.0 MiB", "2.4 GiB".

    >>> human_size(2_576_980_378)
    '2.4 GiB'
    """
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _lock_of(m: Manifest) -> Lock | None:
    try:
        return find_lock(m)
    except ManifestError:
        return None  # `get` reports a broken lock; describing the manifest does without it


def known_sizes(m: Manifest) -> dict[str, int]:
    """Each file's size as the manifest pins it, else as its lock file does (a folder: the sum of its files)."""
    sizes = {k: e.integrity.size for k, e in m.files.items() if e.integrity.size is not None}
    lock = _lock_of(m)
    for key, pin in (lock.files.items() if lock is not None else ()):
        owner = key if key in m.files else next((f for f in m.files if f.endswith("/") and key.startswith(f)), None)
        if owner is not None and m.files[owner].integrity.size is None:
            sizes[owner] = sizes.get(owner, 0) + pin.size if owner != key else pin.size
    return sizes


def total_size(m: Manifest) -> int | None:
    """The whole manifest's size, or None when a file's size is known neither from it nor from its lock."""
    sizes = known_sizes(m)
    return sum(sizes.values()) if len(sizes) == len(m.files) else None


def count_unpinned(m: Manifest) -> int:
    """Files nothing checks: neither the manifest, nor its lock file, nor a Hub that declares hashes."""
    lock = _lock_of(m)
    return sum(1 for k, e in m.files.items() if relies_on_nothing(e) and not (lock and k in lock.files))


ORIGIN_PHRASE = {"network": "fetch", "store": "link from store", "hf-cache": "reuse from HF cache",
                 "torch-hub": "reuse from torch cache", "reuse-from": "reuse from --reuse-from DIR"}
"""How the plan says where a file to fetch will come from (`status.Origin`)."""

ORIGIN_DONE = {"network": "downloaded", "store": "from the store", "hf-cache": "from the HF cache",
               "torch-hub": "from the torch cache", "reuse-from": "from --reuse-from"}
"""How the summary says where fetched files came from."""


def relies_on_nothing(e: FileEntry) -> bool:
    """True when nothing checks `e`'s bytes: no hash, no weak pin, and no Hub to declare one."""
    return (e.integrity.pin_level == "unpinned" and not e.folder
            and not any(u.startswith("hf://") for u in e.urls))


def describe_pin(e: FileEntry) -> str:
    """How `e` is pinned, in words: "pinned", "weakly pinned (...)" or "unpinned (...)"."""
    if e.integrity.hashes or e.integrity.weak:
        return e.integrity.describe_pin()
    if e.folder:
        return "unpinned (a folder: each file is checked against what its source declares)"
    if any(u.startswith("hf://") for u in e.urls):
        return "unpinned in the manifest (the Hub's sha256 is checked for files it stores in LFS)"
    return "unpinned (no hash in the manifest or its URL)"


def describe_source(e: FileEntry) -> str:
    """A one-line, secret-free description of where a file comes from."""
    if e.archive:
        return f"{e.archive}:{e.member}"
    if e.manual is not None:
        return f"manual ({redact(e.manual_url)})" if e.manual_url else "manual"
    return redact(e.urls[0]) + (f" (+{len(e.urls) - 1} mirrors)" if len(e.urls) > 1 else "")


__all__ = ["ORIGIN_DONE", "ORIGIN_PHRASE", "count_unpinned", "describe_pin", "describe_source", "human_size",
           "known_sizes", "relies_on_nothing", "total_size"]
