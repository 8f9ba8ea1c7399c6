"""The machine's content-addressed store: every verified file once, named by its sha256.

Where it is: `--cache-dir`, else `CKPTFETCH_CACHE`, else the user cache dir
platformdirs gives (`~/.cache/ckptfetch` on Linux, `~/Library/Caches/ckptfetch`
on macOS, `%LOCALAPPDATA%\\ckptfetch\\Cache` on Windows). Under it:

    sha256/ab/<64 hex digits>       an object: the bytes, read-only (mode 0444)
    sha256/ab/<hex>.<token>.tmp     a copy on its way in (`gc` removes those a killed run left)
    index.sqlite                    md5/sha1/sha512 -> sha256, verified stat, uses (`storeindex.py`)
    .ckptfetch/locks/               object locks (`proclock.py`)

Rules that keep it safe without a lock on the hot paths:

- An object appears only whole and verified: its bytes were hashed (while
  downloading, or as a candidate), then it is link(2)ed to its final name,
  which fails with EEXIST when another process put the same bytes first.
- Objects are read-only: a file hard-linked into a destination and edited
  there in place would edit the store too, so the mode makes the editor stop
  (root still can: `cache verify` finds such damage and evicts the object).
- An object is trusted without hashing only while its device, inode, size,
  mtime and ctime are those the index recorded when it was verified, and it
  has no write bit (an in-place edit changes the ctime even when the mtime is
  put back). Linking or cloning it changes the ctime too: after one of its own
  the store vouches for the new ctime; a link or unlink made by anyone else
  costs one re-hash.
- Placing from the store links (or opens) the object first and records the
  use after; an object evicted meanwhile leaves the new link intact, or makes
  the link fail (the file is then fetched). Eviction (damage, `gc`) holds the
  object's lock and re-checks; symlinks are made under that lock, since a
  symlink does break when its object goes.
"""

from __future__ import annotations

import os
import stat as stat_mod
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from .errors import CkptfetchError
from .hashing import hash_file, is_hex_digest
from .linking import make, place
from .proclock import locked
from .status import Link
from .storeindex import OTHER, Index, StatKey, Use

OBJECTS = "sha256"
INDEX = "index.sqlite"
READ_ONLY = 0o444

# How bytes come into the store, per --link mode: a hardlink shares the destination's inode (no extra disk), a
# reflink its blocks; `copy` keeps DIR's file independent of the store; `symlink` moves the bytes in.
INGEST: dict[str, tuple[Link, ...]] = {
    Link.AUTO: (Link.REFLINK, Link.HARDLINK, Link.COPY),
    Link.REFLINK: (Link.REFLINK, Link.COPY),
    Link.HARDLINK: (Link.HARDLINK, Link.COPY),
    Link.COPY: (Link.COPY,),
    Link.SYMLINK: (Link.HARDLINK, Link.REFLINK, Link.COPY),
}


class StoreError(CkptfetchError):
    """The store cannot be written (read-only, full, no permission); the run goes on without adding to it."""


def default_root() -> Path:
    """`CKPTFETCH_CACHE`, else platformdirs' user cache dir for ckptfetch."""
    env = os.environ.get("CKPTFETCH_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ckptfetch", appauthor=False))


def open_store(cache_dir: str | os.PathLike[str] | None = None) -> Store:
    """The store at `cache_dir`, else `CKPTFETCH_CACHE`, else the user cache dir (created if need be)."""
    return Store.open(cache_dir)


def verified_key(st: os.stat_result) -> StatKey | None:
    """The stat an object is trusted by; None while anyone may write it."""
    if st.st_mode & (stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class Store:
    """One store directory: its objects, its index and its locks."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.problem: str | None = None  # why it cannot be written, once that is known
        self.writable = self._probe()
        self.index = Index(self.root / INDEX, self.writable)

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str] | None = None) -> Store:
        return cls(Path(cache_dir).expanduser() if cache_dir is not None else default_root())

    def _probe(self) -> bool:
        try:
            (self.root / OBJECTS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not (self.root / OBJECTS).is_dir():
                self.problem = f"cannot create the store at {self.root}: {exc.strerror or exc}"
                return False
        if not os.access(self.root, os.W_OK) or not os.access(self.root / OBJECTS, os.W_OK):
            self.problem = f"the store at {self.root} is read-only"
            return False
        return True

    def refuse(self, exc: OSError | None = None) -> StoreError:
        """The error for a write the store refused, naming the store and what to do."""
        why = self.problem or f"cannot write in the store at {self.root}: {exc.strerror if exc else 'refused'}"
        return StoreError(f"{why}; files are still taken from it, but none are added. Free some space or choose "
                          "another place with --cache-dir or CKPTFETCH_CACHE, or use --no-cache.")

    # --- objects ---------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        return self.root / OBJECTS / sha256[:2] / sha256

    def find(self, pins: Mapping[str, str]) -> list[str]:
        """Objects that may hold bytes with these pins (a full digest, or a sha256 prefix of 8+ digits)."""
        want = pins.get("sha256", "").lower()
        if is_hex_digest("sha256", want):
            return [want] if self.path(want).is_file() else []
        if len(want) >= 8:
            folder = self.root / OBJECTS / want[:2]
            return sorted(p.name for p in folder.glob(f"{want}*") if is_hex_digest("sha256", p.name))
        for algo in OTHER:
            if is_hex_digest(algo, pins.get(algo, "")):
                return [s for s in self.index.find(algo, pins[algo]) if self.path(s).is_file()]
        return []

    def digests(self, sha256: str, algorithms: Sequence[str], *, hash_ok: bool = True) -> dict[str, str] | None:
        """The object's digests for `algorithms` (sha256 included), from the index while it vouches, else hashed.

        None when the object is gone, or damaged (its bytes are not its name: it is evicted), or, without
        `hash_ok`, when only hashing could tell.
        """
        path = self.path(sha256)
        try:
            st = path.stat()
        except OSError:
            return None
        row = self.index.row(sha256)
        if row is not None and row.verified is not None and row.verified == verified_key(st) \
                and all(a in row.digests for a in algorithms):
            return row.digests
        if not hash_ok:
            return None
        try:
            have = hash_file(path, dict.fromkeys(["sha256", *algorithms]))
        except OSError:
            return None
        if have["sha256"] != sha256:
            self.evict(sha256, st)
            return None
        self.index.describe(sha256, st.st_size, have, verified_key(st))
        return {**(row.digests if row else {}), **have}

    def put(self, src: Path, digests: Mapping[str, str], st: os.stat_result, mode: str) -> tuple[str, Link | None]:
        """Add `src`, whose bytes (stat `st`) hashed to `digests`; (sha256, the way it came in, None if already there).

        Raises StoreError when the store cannot take it.
        """
        sha = digests["sha256"].lower()
        obj = self.path(sha)
        if not self.writable:
            raise self.refuse()
        if obj.is_file():
            self.index.describe(sha, st.st_size, digests, None)  # same sha256, same bytes: their digests are ours
            return sha, None
        try:
            obj.parent.mkdir(exist_ok=True)
            way = self._link_in(src, obj, mode)
            now, after = obj.stat(), src.stat()
        except OSError as exc:
            raise self.refuse(exc) from None
        if way is None:
            return sha, None
        # A source that changed between hashing and linking (or copying) is not vouched for: the next use hashes.
        same = (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
        self.index.describe(sha, now.st_size, digests, verified_key(now) if same else None)
        return sha, way

    def _link_in(self, src: Path, obj: Path, mode: str) -> Link | None:
        """Give `src`'s bytes the object's name, read-only; None when another process put them there first."""
        for way in INGEST[Link(mode)]:
            if way == Link.HARDLINK:
                try:
                    if not make(Link.HARDLINK, src, obj):
                        continue
                except FileExistsError:
                    return None
                os.chmod(obj, READ_ONLY)  # the destination's name for these bytes is read-only too, as promised
                return way
            tmp = obj.with_name(f"{obj.name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                if not make(way, src, tmp):
                    continue
                os.chmod(tmp, READ_ONLY)
                try:
                    os.link(tmp, obj)
                except FileExistsError:
                    return None
                return way
            finally:
                tmp.unlink(missing_ok=True)
        return None

    def place(self, sha256: str, target: Path, mode: str, dest: Path, rel: str | None) -> Link:
        """Put the object at `target` (`linking.place`), then record that DIR `dest` uses it at `rel`.

        Link first, record after: an object evicted in between leaves a hardlink, reflink or copy whole.
        A symlink would dangle, so it is made and recorded under the object's lock, which `gc` takes too.
        Raises FileNotFoundError when the object is gone.
        """
        obj = self.path(sha256)
        guard = self.locked(sha256) if mode == Link.SYMLINK else nullcontext()
        with guard:
            before = obj.stat()
            way = place(obj, target, mode)
            if rel is not None:
                self.index.use(sha256, str(dest.absolute()), rel, str(way))
        if way in (Link.HARDLINK, Link.REFLINK):
            self._vouch_after_link(sha256, before)
        return way

    def _vouch_after_link(self, sha256: str, before: os.stat_result) -> None:
        """Our own hardlink (or clone: XFS marks the source shared) changed the object's ctime, not its bytes:
        keep vouching for it if nothing else changed."""
        row = self.index.row(sha256)
        if row is None or row.verified is None or row.verified != verified_key(before):
            return
        try:
            after = verified_key(self.path(sha256).stat())
        except OSError:
            return
        if after is not None and after[:4] == row.verified[:4]:
            self.index.trust(sha256, after)

    def record_use(self, sha256: str, dest: Path, rel: str, way: str) -> None:
        """Record that DIR `dest` holds the object at `rel` (a file that came in from there)."""
        self.index.use(sha256, str(dest.absolute()), rel, str(way))

    @contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """The object's lock (none in a read-only store, which no one here can change)."""
        if not self.writable:
            yield
            return
        with locked(self.root, f"object:{sha256}"):
            yield

    def evict(self, sha256: str, seen: os.stat_result | None = None) -> bool:
        """Remove an object (only the file `seen` was, if given) and what the index says of it; False if it cannot."""
        if not self.writable:
            return False
        path = self.path(sha256)
        try:
            with self.locked(sha256):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    self.index.forget(sha256)
                    return True
                if seen is not None and (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
                    return False  # replaced by good bytes meanwhile
                path.unlink()
                self.index.forget(sha256)
        except (OSError, CkptfetchError):
            return False
        return True

    def objects(self) -> Iterator[tuple[str, Path]]:
        """Every object on disk (sha256, path), whatever the index says."""
        base = self.root / OBJECTS
        for folder in sorted(base.glob("??")):
            for p in sorted(folder.iterdir()):
                if is_hex_digest("sha256", p.name) and p.name.startswith(folder.name):
                    yield p.name, p

    def uses(self, sha256: str | None = None) -> list[Use]:
        return self.index.uses(sha256)

    def close(self) -> None:
        self.index.close()


__all__ = ["INGEST", "OBJECTS", "READ_ONLY", "Store", "StoreError", "default_root", "open_store", "verified_key"]
