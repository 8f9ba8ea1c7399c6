"""Reuse before download: find a file's bytes on this machine, verify them, and place them.

Where candidates come from, in this order (each found without reading a byte):

1. **the store** (`store.py`): by sha256 (the file name), a sha256 prefix
   (a weak pin) or md5 / sha1 / sha512 (the index);
2. **`--reuse-from DIR`** (repeatable): the files DIR's `.ckptfetch/record.json`
   lists with an equal digest;
3. **huggingface_hub's cache** (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
   `~/.cache/huggingface/hub`): `*/blobs/<sha256>` (LFS blobs are named by
   their sha256), and for a Hub file its `snapshots/<commit>/<path>` (the
   commit the entry pins, the revision if it is one, else the cache's ref);
4. **torch's hub cache** (`$TORCH_HOME/hub/checkpoints/`): the file named as
   torch names the URL's download (its name carries the sha256 prefix).

Every candidate is checked against the file's pins before use: its size, then
its digests (from the store's index or DIR's verified-state cache while the
file is unchanged, else hashed). A file with no digest pin is never taken from
a candidate: nothing would say the bytes are the right ones. A candidate that
fails is never placed (a damaged store object is evicted). Bytes from a cache
or another DIR enter the store first, then reach DIR the way `--link` says.
After a download, `keep` adds the new file to the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checking import file_digests
from .errors import CkptfetchError, UsageError
from .layout import hub_file, read_ref, torch_hub_dir, url_file_name
from .linking import place
from .manifest import FileEntry
from .pins import first_mismatch, judge_size
from .record import read_record
from .sources import huggingface as hf
from .state import RECORD, VerifiedCache, state_dir
from .status import LINKS, Link, Origin
from .store import Store, StoreError


@dataclass(frozen=True)
class Candidate:
    """A file that may hold the bytes: a store object (`sha256` set) or a file elsewhere on this machine."""

    origin: Origin
    path: Path
    sha256: str | None = None
    root: Path | None = None  # for --reuse-from: that DIR, whose verified-state cache may answer
    rel: str | None = None


@dataclass
class Taken:
    """A file placed from a candidate: its digests, where the bytes came from and how they reached DIR."""

    digests: dict[str, str]
    origin: Origin
    link: Link
    source: str


@dataclass
class Reuse:
    """What one run reuses from: the store (None with --no-cache), --reuse-from DIRs, the HF and torch caches."""

    store: Store | None
    link: str = Link.AUTO
    reuse_from: tuple[Path, ...] = ()
    caches: bool = True  # look in huggingface_hub's and torch's caches
    taking: bool = True  # False with --force: fetch again, but still add what was fetched to the store
    notes: list[str] = field(default_factory=list)
    taken: dict[Path, Taken] = field(default_factory=dict)  # by target, for taking done inside the fetcher
    _records: dict[Path, list[tuple[dict[str, Any], str]]] = field(default_factory=dict)
    _refused: set[tuple[int, int, int]] = field(default_factory=set)

    # --- finding -------------------------------------------------------------------------

    def candidates(self, pins: Mapping[str, str], e: FileEntry | None = None) -> Iterator[Candidate]:
        """Where these bytes may already be, best first; nothing when no digest pins them."""
        if not pins:
            return
        if self.store is not None:
            for sha in self.store.find(pins):
                yield Candidate(Origin.STORE, self.store.path(sha), sha)
        for root in self.reuse_from:
            for rec_pins, at in self._recorded(root):
                if _agree(pins, rec_pins):
                    yield Candidate(Origin.REUSE_FROM, root / at, root=root, rel=at)
        if self.caches:
            yield from self._hf_candidates(pins, e)
            if e is not None and e.urls:
                try:
                    name = url_file_name(e)
                except UsageError:
                    return
                p = Path(torch_hub_dir()) / "checkpoints" / name
                if p.is_file():
                    yield Candidate(Origin.TORCH_HUB, p)

    def _hf_candidates(self, pins: Mapping[str, str], e: FileEntry | None) -> Iterator[Candidate]:
        cache = Path(hf.hub_cache_dir())
        sha = pins.get("sha256", "").lower()
        if len(sha) == 64:
            try:
                repos = sorted(cache.iterdir())
            except OSError:
                repos = []
            for repo in repos:
                if (repo / "blobs" / sha).is_file():
                    yield Candidate(Origin.HF_CACHE, repo / "blobs" / sha)
        f = hub_file(e) if e is not None else None
        if f is None:
            return
        commit = (e.commit if e is not None else None) or read_ref(cache, f)
        snap = cache / f.cache_folder / "snapshots" / (commit or "-") / f.path
        if commit and snap.is_file():
            yield Candidate(Origin.HF_CACHE, snap)

    def _recorded(self, root: Path) -> list[tuple[dict[str, Any], str]]:
        if root not in self._records:
            files = [(pins, str(pins.get("at") or key)) for m in read_record(root)["manifests"].values()
                     for key, pins in m.get("files", {}).items() if isinstance(pins, dict)]
            self._records[root] = files
        return self._records[root]

    def plan_origin(self, e: FileEntry) -> Candidate | None:
        """Where the plan expects `e`'s bytes from (not yet verified), or None: the network."""
        if e.archive or e.manual is not None or e.folder:
            return None
        return next(self.candidates(e.integrity.checks, e), None)

    # --- taking --------------------------------------------------------------------------

    def take(self, pins: Mapping[str, str], size: int | None, target: Path, dest: Path, algorithms: Sequence[str],
             e: FileEntry | None = None, *, symlink_ok: bool = True) -> Taken | None:
        """Place the first candidate that matches the pins at `target` (under DIR `dest`); None if none does.

        Raises CkptfetchError when DIR itself cannot take the file (read-only, full).
        """
        if not self.taking:
            return None
        algos = list(dict.fromkeys([*pins, *algorithms, "sha256"]))
        mode = self.link if symlink_ok or self.link != Link.SYMLINK else Link.AUTO
        for c in self.candidates(pins, e):
            digests = self._verified(c, pins, size, algos)
            if digests is None:
                continue
            try:
                taken = self._place(c, digests, target, dest, mode)
            except FileNotFoundError:
                continue  # evicted or moved since it was found: the next candidate, or the network
            except OSError as exc:
                raise CkptfetchError(f"{_rel(target, dest) or target}: cannot write in {target.parent}: "
                                     f"{exc.strerror or exc}; free some space or make it writable, or choose "
                                     "another --dest.") from None
            if taken is not None:
                self.taken[target] = taken
                return taken
        return None

    def _verified(self, c: Candidate, pins: Mapping[str, str], size: int | None,
                  algos: list[str]) -> dict[str, str] | None:
        """The candidate's digests if it matches the pins; None (and a note for a foreign file) if it does not."""
        try:
            st = c.path.stat()
        except OSError:
            return None
        seen = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if seen in self._refused:
            return None
        if judge_size(st.st_size, size) is not None:
            if c.sha256 is not None and self.store is not None:
                # A store object of the wrong size was most likely grown through a hardlink (`>>` as root); the
                # store hashes it once and evicts it if its bytes are not its name, so the download takes its place.
                self.store.digests(c.sha256, ["sha256"])
            self._refused.add(seen)
            return None
        if c.sha256 is not None and self.store is not None:
            digests = self.store.digests(c.sha256, algos)
        elif c.root is not None and c.rel is not None:
            cache = VerifiedCache(c.root)
            try:
                digests = file_digests(c.root, c.rel, algos, cache)
            finally:
                cache.close()
        else:
            digests = file_digests(c.path.parent, c.path.name, algos, None)
        if digests is not None and first_mismatch(pins, digests) is None:
            return digests
        self._refused.add(seen)
        if c.sha256 is None:
            self._note(f"{c.path} does not match the pins it was found by; it was not used")
        return None

    def _place(self, c: Candidate, digests: dict[str, str], target: Path, dest: Path, mode: str) -> Taken | None:
        if target.exists() and os.path.samefile(c.path, target):
            return None
        rel = _rel(target, dest)
        sha = c.sha256
        if sha is None and self.store is not None:
            sha = self._put(c.path, digests)
        if sha is None or self.store is None:
            return Taken(digests, c.origin, place(c.path, target, mode), str(c.path))
        way = self.store.place(sha, target, mode, dest, rel)
        return Taken(digests, c.origin, way, str(c.path))

    def _put(self, src: Path, digests: Mapping[str, str]) -> str | None:
        """Add a verified file to the store; None (with a note, once) when the store cannot take it."""
        assert self.store is not None
        try:
            return self.store.put(src, digests, src.stat(), self.link)[0]
        except StoreError as exc:
            self._note(str(exc))
        except OSError:
            pass
        return None

    def keep(self, target: Path, digests: Mapping[str, str], dest: Path, *, symlink_ok: bool = True) -> None:
        """Add a freshly downloaded (or extracted) file to the store and record that DIR uses it."""
        if self.store is None or len(digests.get("sha256", "")) != 64:
            return
        store = self.store
        rel = _rel(target, dest)
        mode = self.link if symlink_ok or self.link != Link.SYMLINK else Link.AUTO
        try:
            st = target.stat()
            sha, way = store.put(target, digests, st, mode)
            if mode == Link.SYMLINK:
                try:
                    store.place(sha, target, Link.SYMLINK, dest, rel)
                except FileNotFoundError:  # a gc took the new object before the link: once more, else keep the file
                    store.put(target, digests, target.stat(), mode)
                    store.place(sha, target, Link.SYMLINK, dest, rel)
            elif way is None and mode != Link.COPY and store.digests(sha, ["sha256"], hash_ok=False):
                store.place(sha, target, mode, dest, rel)  # already stored by another run: share its bytes
            elif rel is not None:
                store.record_use(sha, dest, rel, way or Link.COPY)
        except StoreError as exc:
            self._note(str(exc))
        except OSError:
            pass  # the file itself is in place and verified; the store simply does not get it

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _agree(pins: Mapping[str, str], recorded: Mapping[str, Any]) -> bool:
    """Whether a recorded file's digests say it holds bytes with these pins (one shared algorithm agrees)."""
    shared = [a for a in pins if isinstance(recorded.get(a), str)]
    return bool(shared) and first_mismatch({a: pins[a] for a in shared}, {a: recorded[a] for a in shared}) is None


def _rel(target: Path, dest: Path) -> str | None:
    try:
        return target.absolute().relative_to(dest.absolute()).as_posix()
    except ValueError:
        return None


def open_reuse(cache_dir: str | os.PathLike[str] | None = None, no_cache: bool = False, link: str = Link.AUTO,
               reuse_from: Sequence[str | os.PathLike[str]] = ()) -> Reuse | None:
    """What a run reuses from; None when there is nothing (--no-cache and no --reuse-from).

    --no-cache leaves today's behaviour: no store and no look in the HF or torch caches; an explicit
    --reuse-from DIR still applies.
    """
    if link not in LINKS:
        raise UsageError(f"--link {link!r} is not one of {', '.join(LINKS)}")
    dirs = []
    for d in reuse_from:
        root = Path(d).expanduser()
        if not (state_dir(root) / RECORD).is_file():
            raise UsageError(f"--reuse-from {root}: no {state_dir(root) / RECORD} there; give a destination "
                             "that an earlier `ckptfetch get` filled")
        dirs.append(root)
    if no_cache and not dirs:
        return None
    store = None if no_cache else Store.open(cache_dir)
    return Reuse(store, Link(link), tuple(dirs), caches=not no_cache)


__all__ = ["Candidate", "Reuse", "Taken", "open_reuse"]
