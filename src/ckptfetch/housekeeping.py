"""What `ckptfetch cache` does with the store: list, account for disk, verify, collect garbage.

A destination *uses* an object while the path it was placed at still holds
it: the same inode (hardlink), a link to it (symlink), or a file of its size
(a reflink or copy, whose blocks are the destination's own). Uses the index
remembers but that no longer hold (a checkout deleted, a file fetched again)
are dropped by `gc`.

`gc` evicts objects no destination uses (oldest use first) and, to get under
`--max-size`, then objects that are used but only through hardlinks, reflinks
or copies: the destinations keep their files (a hardlinked file stays whole
when the store's name for it goes), they only stop sharing future checkouts.
An object a destination reaches through a symlink is never evicted. Each
eviction holds the object's lock and re-reads its uses first, so a `get`
linking it meanwhile is seen (see `store.py` for why a `get` needs no lock).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import compat
from .hashing import hash_file
from .status import Link
from .store import Store, StoreError, verified_key
from .storeindex import Use
from .threads import parallel

STALE_TMP = 3600.0  # a copy on its way into the store untouched this long was left by a killed run


@dataclass
class ObjectInfo:
    """One object, with the uses that still hold."""

    sha256: str
    size: int
    disk: int  # blocks allocated (shared with every hardlink)
    links: int  # names of its inode: 1 when only the store holds it
    added: float
    used: float  # last placed somewhere (or added)
    uses: list[Use] = field(default_factory=list)

    @property
    def destinations(self) -> set[str]:
        return {u.dest for u in self.uses}

    @property
    def pinned_by_symlink(self) -> bool:
        return any(u.way == Link.SYMLINK for u in self.uses)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["uses"] = [{"dest": u.dest, "path": u.path, "link": u.way, "at": u.at} for u in self.uses]
        return doc


def holds(use: Use, obj: Path, st: os.stat_result) -> bool:
    """Whether `use`'s path still holds the object (stat `st`)."""
    p = Path(use.dest) / use.path
    try:
        here = p.stat()
    except OSError:
        return False
    if use.way == Link.SYMLINK:
        return p.is_symlink() and os.path.realpath(p) == os.path.realpath(obj)
    if use.way == Link.HARDLINK:
        return (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino)
    return here.st_size == st.st_size


def survey(store: Store, *, prune: bool = False) -> list[ObjectInfo]:
    """Every object on disk with its live uses, least recently used first; `prune` drops dead uses."""
    by_sha: dict[str, list[Use]] = {}
    for u in store.uses():
        by_sha.setdefault(u.sha256, []).append(u)
    rows = {r.sha256: r for r in store.index.rows()}
    out = []
    for sha, path in store.objects():
        try:
            st = path.stat()
        except OSError:
            continue
        live = []
        for u in by_sha.get(sha, []):
            if holds(u, path, st):
                live.append(u)
            elif prune:
                store.index.drop_use(u)
        row = rows.get(sha)
        added = row.added if row else st.st_mtime
        out.append(ObjectInfo(sha, st.st_size, compat.allocated_bytes(st), st.st_nlink, added,
                              max(row.used, added) if row else added, live))
    out.sort(key=lambda o: o.used)
    return out


# --- du -------------------------------------------------------------------------------


@dataclass
class Usage:
    """Disk accounting for the store and the destinations that use it (`cache du`)."""

    store: str
    objects: int
    size: int  # bytes of all objects
    disk: int  # blocks they take (a hardlinked object's blocks are also its destinations')
    only_in_store: int  # blocks no destination shares: what evicting every unused object would free
    in_destinations: int  # bytes the destinations' files hold, counting each file once per destination
    linked: int  # ... of which reach them by hardlink, reflink or symlink: blocks the store's objects hold
    shared: int  # bytes of objects that two or more destinations use
    destinations: list[dict[str, Any]]

    @property
    def saved(self) -> int:
        """Disk a separate file per destination would take, minus what the store takes (copies save nothing)."""
        return self.linked - self.disk

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "saved": self.saved}


def usage(store: Store) -> Usage:
    objs = survey(store)
    dests: dict[str, dict[str, Any]] = {}
    for o in objs:
        for u in o.uses:
            d = dests.setdefault(u.dest, {"dest": u.dest, "files": 0, "size": 0, "shared": 0, "links": {}})
            d["files"] += 1
            d["size"] += o.size
            d["links"][u.way] = d["links"].get(u.way, 0) + 1
            if len(o.destinations) > 1:
                d["shared"] += o.size
    return Usage(
        str(store.root), len(objs), sum(o.size for o in objs), sum(o.disk for o in objs),
        sum(o.disk for o in objs if o.links == 1 and not o.uses),
        sum(o.size * len(o.uses) for o in objs),
        sum(o.size * sum(1 for u in o.uses if u.way != Link.COPY) for o in objs),
        sum(o.size for o in objs if len(o.destinations) > 1),
        sorted(dests.values(), key=lambda d: d["dest"]),
    )


# --- verify -----------------------------------------------------------------------------


@dataclass
class ObjectCheck:
    sha256: str
    ok: bool
    detail: str = ""
    evicted: bool = False
    uses: list[str] = field(default_factory=list)  # destination paths that share a damaged object's bytes


def verify_store(store: Store) -> list[ObjectCheck]:
    """Hash every object; one whose bytes are not its name (or its recorded digests) is evicted."""
    objects = list(store.objects())

    def check(item: tuple[str, Path]) -> ObjectCheck:
        sha, path = item
        row = store.index.row(sha)
        known = dict(row.digests) if row else {"sha256": sha}
        known["sha256"] = sha
        try:
            st = path.stat()
            have = hash_file(path, list(known))
        except OSError as exc:
            return ObjectCheck(sha, False, f"cannot read: {exc.strerror}")
        bad = [a for a in known if have.get(a) != known[a]]
        if not bad:
            store.index.describe(sha, st.st_size, have, verified_key(st))
            return ObjectCheck(sha, True)
        users = [str(Path(u.dest) / u.path) for u in store.uses(sha) if holds(u, path, st) and u.way != Link.COPY]
        evicted = store.evict(sha, st)
        return ObjectCheck(sha, False, f"{bad[0]} {have[bad[0]]}, expected {known[bad[0]]}", evicted, users)

    return parallel(check, objects)


# --- gc ----------------------------------------------------------------------------------


@dataclass
class Collected:
    """What `gc` removed (or, with dry_run, would remove)."""

    evicted: list[ObjectInfo]
    kept: int
    size_before: int
    dry_run: bool

    @property
    def freed(self) -> int:
        """Disk freed: blocks of evicted objects no destination shares."""
        return sum(o.disk for o in self.evicted if o.links == 1)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "evicted": [o.to_json() for o in self.evicted], "kept": self.kept,
                "size_before": self.size_before, "size_after": self.size_before - sum(o.size for o in self.evicted),
                "freed": self.freed}


def collect(store: Store, *, max_size: int | None = None, older_than: float | None = None,
            dry_run: bool = False) -> Collected:
    """Evict objects no destination uses (only those unused for `older_than` seconds, if given); with
    `max_size`, then the least recently used others (never one a symlink points at) until the store is no
    larger. Raises StoreError (unless `dry_run`) when the store cannot be written."""
    if not dry_run and not store.writable:
        raise StoreError(f"{store.problem}: nothing can be evicted from it (try --dry-run to see what would be)")
    objs = survey(store, prune=not dry_run)
    now = time.time()
    old = [o for o in objs if older_than is None or now - o.used >= older_than]
    unused = [o for o in old if not o.uses]
    total = sum(o.size for o in objs)
    chosen = unused
    if max_size is not None:  # with a size bound, only as much as needed
        chosen, left = [], total
        for o in [*unused, *(o for o in old if o.uses and not o.pinned_by_symlink)]:
            if left <= max_size:
                break
            chosen.append(o)
            left -= o.size
    evicted = chosen if dry_run else [o for o in chosen if _evict_if_still(store, o, may_be_used=bool(o.uses))]
    if not dry_run:
        _drop_stale_tmp(store, now)
    return Collected(evicted, len(objs) - len(evicted), total, dry_run)


def _evict_if_still(store: Store, o: ObjectInfo, may_be_used: bool) -> bool:
    """Evict `o` under its lock if it is still what gc chose: unused (or, if `may_be_used`, not symlinked)."""
    path = store.path(o.sha256)
    with store.locked(o.sha256):
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        live = [u for u in store.uses(o.sha256) if holds(u, path, st)]
        if (live and not may_be_used) or any(u.way == Link.SYMLINK for u in live):
            return False  # a get placed it meanwhile
        try:
            path.unlink()
        except OSError:
            return False
        store.index.forget(o.sha256)
    return True


def _drop_stale_tmp(store: Store, now: float) -> None:
    for tmp in (store.root / "sha256").glob("??/*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP:
                tmp.unlink()
        except OSError:
            pass


__all__ = ["Collected", "ObjectCheck", "ObjectInfo", "Usage", "collect", "holds", "survey", "usage", "verify_store"]
