"""`ckptfetch key`: a short cache key for CI caches, from the resolved file set and its pins.

The key hashes a canonical JSON description of what `get` would install:
for each selected file its target path, layout and pins (every digest, size,
weak sha256 prefix, Hub commit from the lock), its archive and member, and,
for a file without a full digest, its URLs (so a new URL means a new key).
A lock file beside the manifest is applied (its pins are part of the key);
without one, folder entries count by their URL and include globs. Nothing
machine-specific goes in: no absolute path, no time, no mirror, no host name.

>>> digest_of({"b": 1, "a": [2]}) == digest_of({"a": [2], "b": 1})
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .concrete import load, with_layout
from .folders import might_select
from .lock import apply_lock, find_lock
from .manifest import Archive, FileEntry, Integrity, Manifest

KEY_FORMAT = 1  # bump when what goes into the key changes, so old caches are not restored under new rules


@dataclass(frozen=True)
class CacheKey:
    key: str
    described: dict[str, Any]  # what was hashed


def digest_of(doc: Any) -> str:
    """sha256 of `doc`'s canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _pins(i: Integrity) -> dict[str, Any]:
    out: dict[str, Any] = dict(sorted(i.hashes.items()))
    if i.size is not None:
        out["size"] = i.size
    if i.weak and not i.hashes:
        out["weak-sha256"] = i.weak
    return out


def _archive(a: Archive) -> dict[str, Any]:
    return {"pins": _pins(a.integrity), **({} if a.integrity.hashes else {"urls": list(a.urls)})}


def _file(e: FileEntry, m: Manifest) -> dict[str, Any]:
    doc: dict[str, Any] = {"path": e.path, "layout": str(e.layout), "pins": _pins(e.integrity)}
    if e.commit:
        doc["commit"] = e.commit
    if e.archive:
        doc.update(archive=_archive(m.archives[e.archive]), member=e.member)
    elif e.folder:
        doc.update(urls=list(e.urls), include=list(e.include))
    elif e.manual is not None:
        doc["manual"] = True
    elif not e.integrity.hashes:
        doc["urls"] = list(e.urls)  # nothing else says which bytes these are
    return doc


def describe(manifest: str | os.PathLike[str] | Manifest, *, variants: Sequence[str] = (),
             only: Sequence[str] = (), exclude: Sequence[str] = (), layout: str | None = None) -> dict[str, Any]:
    """The canonical description of the selected files that the key hashes."""
    m = with_layout(load(manifest), layout)
    lock = find_lock(m)
    if lock is not None:
        m = apply_lock(m, lock)
    entries = [e for e in m.select(variants, only, exclude) if not e.folder]
    entries += [e for e in m.files.values() if e.folder and might_select(e, m, variants, only)]
    return {"format": KEY_FORMAT, "manifest": m.name, "root": m.root, "variants": sorted(set(variants)),
            "only": sorted(set(only)), "exclude": sorted(set(exclude)), "files": sorted((_file(e, m) for e in entries), key=lambda d: d["path"])}


def cache_key(manifest: str | os.PathLike[str] | Manifest, *, variants: Sequence[str] = (),
              only: Sequence[str] = (), exclude: Sequence[str] = (), layout: str | None = None) -> CacheKey:
    """`ckptfetch-NAME-<16 hex>` for the files `get` would install with these options."""
    described = describe(manifest, variants=variants, only=only, exclude=exclude, layout=layout)
    return CacheKey(f"ckptfetch-{described['manifest']}-{digest_of(described)[:16]}", described)


__all__ = ["CacheKey", "cache_key", "describe", "digest_of"]
