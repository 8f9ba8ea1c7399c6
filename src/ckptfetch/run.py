"""One run's state and the fetch of single files; archives are `unpacking`'s, the whole run `fetching`'s.

Each target is fetched under its inter-process lock and re-checked once the
lock is held, because another process may have fetched it meanwhile. Before
any network request a file may be placed from the store or a cache
(`reuse.py`); downloaded bytes then go to the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .checking import check_file, file_digests
from .concrete import located
from .download import Settings
from .download.partial import fsync_dir
from .errors import CkptfetchError, Interrupted
from .layout import blob_target, link_snapshot
from .linking import drop_leftovers
from .manifest import FileEntry
from .proclock import locked
from .results import FileOutcome, Plan
from .reuse import Reuse, Taken
from .sources.huggingface import at_commit
from .sourcing import Fetcher
from .state import VerifiedCache, state_dir
from .status import Check, Layout, Origin, Outcome


@dataclass
class Run:
    """One `get`: the plan, the shared fetcher, the verified-state cache and the outcomes so far."""

    plan: Plan
    fetcher: Fetcher
    cache: VerifiedCache
    force: bool
    reuse: Reuse | None = None  # the store and caches; None with --no-cache
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    errors: dict[str, CkptfetchError] = field(default_factory=dict)  # the exception behind each failed outcome
    children: dict[str, FileEntry] = field(default_factory=dict)  # files a folder of an archive yielded
    left_empty: list[str] = field(default_factory=list)  # targets that failed: their folders may be left empty
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dest(self) -> Path:
        return self.plan.dest

    @property
    def settings(self) -> Settings:
        return self.fetcher.settings

    def gave_up_on(self, rel: str) -> None:
        """`rel` failed: once the run is over, `prune_empty_dirs` removes the folders it made and left empty."""
        with self.lock:
            self.left_empty.append(rel)

    def done(self, outcome: FileOutcome) -> None:
        with self.lock:
            self.outcomes[outcome.path] = outcome

    def adopt(self, child: FileEntry) -> None:
        """A file a folder yielded: an entry of its own from now on (for the record and the result)."""
        with self.lock:
            self.children[child.path] = child

    def recheck(self, e: FileEntry) -> dict[str, str] | None:
        """Digests if the target is now present and correct (another process may have fetched it)."""
        if self.force:
            return None
        rel = located(e, self.dest)
        if rel is None:
            return None
        status, _ = check_file(self.dest, rel, e.integrity.checks, e.integrity.size, self.cache)
        if status != Check.OK:
            return None
        return file_digests(self.dest, rel, self.fetcher.algos(e.integrity.checks), self.cache) or {}

    def remember(self, rel: str, digests: dict[str, str]) -> None:
        try:
            st = (self.dest / rel).stat()
        except OSError:
            return
        self.cache.store(rel, st, digests)

    def present(self, e: FileEntry, digests: dict[str, str], rel: str | None) -> None:
        where = rel or e.path
        self.done(FileOutcome(e.path, Outcome.PRESENT, size_on_disk(self.dest, where), e.kind, digests=digests, at=rel))

    def fetched(self, e: FileEntry, rel: str, digests: dict[str, str], meta: dict[str, str] | None = None,
                taken: Taken | None = None) -> None:
        self.remember(rel, digests)
        origin, link = (taken.origin, taken.link) if taken is not None else (Origin.NETWORK, None)
        self.done(FileOutcome(e.path, Outcome.FETCHED, (self.dest / rel).stat().st_size, e.kind, digests=digests,
                              meta=meta or {}, at=rel, origin=origin, link=link))

    def take(self, e: FileEntry, rel: str | None) -> Taken | None:
        """Place `e` from the store or a cache, before any network request (see `reuse.py`)."""
        if self.reuse is None or rel is None or e.layout == Layout.HF_CACHE:
            return None  # an hf-cache blob is named by the Hub's etag: the fetcher looks once it knows it
        taken = self.reuse.take(e.integrity.checks, e.integrity.size, self.dest / rel, self.dest,
                                self.fetcher.algos(e.integrity.checks), e)
        self.reuse.taken.pop(self.dest / rel, None)
        return taken

    def keep(self, rel: str, digests: dict[str, str]) -> None:
        """Add a file just extracted to the store."""
        if self.reuse is not None:
            self.reuse.keep(self.dest / rel, digests, self.dest)

    def failed(self, e: FileEntry, error: CkptfetchError | str) -> None:
        if isinstance(error, CkptfetchError):
            with self.lock:
                self.errors[e.path] = error  # raised again by FetchResult.raise_for_status
        self.done(FileOutcome(e.path, Outcome.FAILED, e.integrity.size, e.kind, error=str(error)))


def fetch_url(run: Run, e: FileEntry) -> None:
    """Fetch one file that comes from URLs (a Hub blob and its snapshot link for the hf-cache layout)."""
    dest = run.dest
    with locked(dest, f"file:{e.path}", run.settings.cancel):
        have = run.recheck(e)
        rel = located(e, dest)
        if have is not None:
            drop_leftovers(dest / (rel or e.path))
            run.present(e, have, rel)
            return
        # A lock (or a folder listing) pins Hub files to a commit: ask for exactly that one, then for the
        # revision as written (a mirror may keep `resolve/main/`); the pins decide what is accepted.
        urls = list(dict.fromkeys([at_commit(u, e.commit) for u in e.urls] + list(e.urls))) if e.commit else list(e.urls)
        blob: Path | None = None
        try:
            taken = run.take(e, rel)
            if taken is not None:
                assert rel is not None
                run.fetched(e, rel, taken.digests, taken=taken)
                return
            if e.layout == Layout.HF_CACHE:
                def place(meta: dict[str, str]) -> Path:
                    nonlocal blob
                    blob = blob_target(dest, e, meta)[0]
                    return blob

                digests, meta = run.fetcher.fetch(urls, place, e.integrity, e.path, sync_dir=False, reuse=True)
                _, commit, etag = blob_target(dest, e, meta)
                rel = link_snapshot(dest, e, commit, etag)
            else:
                assert rel is not None
                digests, meta = run.fetcher.fetch(urls, dest / rel, e.integrity, e.path, sync_dir=False, reuse=True)
        except Interrupted:
            raise
        except CkptfetchError as exc:
            run.fetcher.reporter.finish(e.path, False)
            left = blob.relative_to(dest).as_posix() if blob is not None else rel
            if left is not None:
                run.gave_up_on(left)
            run.failed(e, exc)
            return
        run.fetcher.reporter.finish(e.path, True)
        taken = run.reuse.taken.pop(blob if blob is not None else dest / rel, None) if run.reuse else None
        run.fetched(e, rel, digests, meta, taken)


def size_on_disk(dest: Path, rel: str) -> int | None:
    try:
        return (dest / rel).stat().st_size
    except OSError:
        return None


def sync_dirs(dest: Path, rels: Iterable[str]) -> None:
    """fsync each folder that received files once, so the renames are durable."""
    for folder in {(dest / rel).parent for rel in rels}:
        fsync_dir(folder)


def prune_empty_dirs(dest: Path, rels: Iterable[str]) -> None:
    """Remove the folders of failed targets `rels` that were left empty, once the run's work is over.

    Not while files are still being fetched: a folder empty now may be where another file of this run,
    or of another process, is about to be written. So this runs after the run's own work, and not at all
    while any lock under DIR/.ckptfetch/ is held (another process at work; a stale lock only leaves a folder).
    """
    try:
        if any((state_dir(dest) / "locks").iterdir()):
            return
    except OSError:
        pass
    for rel in rels:
        parent = (dest / rel).parent
        while parent != dest and dest in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


__all__ = ["Run", "fetch_url", "prune_empty_dirs", "size_on_disk", "sync_dirs"]
