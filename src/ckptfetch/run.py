"""The run: fetch, extract and verify what a plan says to fetch, then record it.

Archives first (they are usually the largest and yield several files), then
single files, on a pool of `jobs` threads. Each target (and each archive) is
fetched under its inter-process lock and re-checked once the lock is held,
because another process may have fetched it meanwhile.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _testhooks
from .checking import check_file, file_digests
from .concrete import ManifestRef, check_entry, located
from .download import Settings, make_session
from .download.engine import fsync_dir
from .errors import CkptfetchError, Interrupted, UnsafeArchive
from .extract import Wanted, extract
from .layout import blob_target, link_snapshot
from .linking import tmp_name
from .manifest import Archive, FileEntry
from .planning import plan
from .proclock import locked
from .progress import NullReporter, Reporter
from .record import record_outcomes
from .results import FetchResult, FileOutcome, Plan
from .reuse import Reuse, Taken, open_reuse
from .sources.huggingface import at_commit
from .sourcing import Fetcher
from .state import VerifiedCache, state_dir
from .status import Action, Check, Layout, Link, Outcome
from .urls import Mirror, env_mirrors


@dataclass
class Run:
    """One `get`: the plan, the shared fetcher, the verified-state cache and the outcomes so far."""

    plan: Plan
    fetcher: Fetcher
    cache: VerifiedCache
    force: bool
    reuse: Reuse | None = None  # the store and caches; None with --no-cache
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dest(self) -> Path:
        return self.plan.dest

    @property
    def settings(self) -> Settings:
        return self.fetcher.settings

    def done(self, outcome: FileOutcome) -> None:
        with self.lock:
            self.outcomes[outcome.path] = outcome

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
        origin, link = (taken.origin, taken.link) if taken is not None else ("network", None)
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

    def failed(self, e: FileEntry, error: str) -> None:
        self.done(FileOutcome(e.path, Outcome.FAILED, e.integrity.size, e.kind, error=error))


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
        # A lock (or a folder listing) pins Hub files to a commit: fetch exactly that one.
        urls = [at_commit(u, e.commit) for u in e.urls] if e.commit else list(e.urls)
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
                prune_empty_dirs(dest, left)
            run.failed(e, str(exc))
            return
        run.fetcher.reporter.finish(e.path, True)
        taken = run.reuse.taken.pop(blob if blob is not None else dest / rel, None) if run.reuse else None
        run.fetched(e, rel, digests, meta, taken)


def fetch_archive(run: Run, archive: Archive, entries: list[FileEntry]) -> None:
    """Download one archive (kept in DIR/.ckptfetch/archives/ until every member is in place) and extract `entries`."""
    m = run.plan.manifest
    dest = run.dest
    with locked(dest, f"archive:{m.name}:{archive.name}", run.settings.cancel):
        todo = []
        for e in entries:
            have = run.recheck(e)
            if have is not None:
                run.present(e, have, located(e, dest))
            elif not _taken(run, e):
                todo.append(e)
        if not todo:
            return
        at = {e.path: located(e, dest) or e.path for e in todo}  # torch-hub puts members elsewhere
        results = _download_and_extract(run, archive, todo, at)
        if results is None:
            return
        for e in todo:
            res = results[e.member or ""]
            if isinstance(res, dict):
                run.keep(at[e.path], res)
                run.fetched(e, at[e.path], res)
            else:
                run.failed(e, str(res))
        # Drop the cached archive once every file the manifest takes from it is in place.
        cached = _cached_archive(run, archive)
        members = [f for f in m.files.values() if f.archive == archive.name]
        if all(check_entry(dest, f, run.cache)[0] == Check.OK for f in members):
            cached.unlink(missing_ok=True)
            drop_leftovers(cached)


def _taken(run: Run, e: FileEntry) -> bool:
    """Whether a member was placed from the store or a cache (a failure to place it counts as its outcome)."""
    rel = located(e, run.dest)
    try:
        taken = run.take(e, rel)
    except CkptfetchError as exc:
        run.failed(e, str(exc))
        return True
    if taken is None or rel is None:
        return False
    run.fetched(e, rel, taken.digests, taken=taken)
    return True


def _cached_archive(run: Run, archive: Archive) -> Path:
    return state_dir(run.dest) / "archives" / f"{run.plan.manifest.name}--{archive.name}"


def _download_and_extract(
    run: Run, archive: Archive, todo: list[FileEntry], at: dict[str, str]
) -> dict[str, dict[str, str] | CkptfetchError] | None:
    """Extract `todo` from the (downloaded or cached) archive; None when it failed as a whole (outcomes are set)."""
    cached = _cached_archive(run, archive)
    label = f"{archive.name} (archive)"
    algos = {e.path: tuple(run.fetcher.algos(e.integrity.checks)) for e in todo}
    for attempt in (1, 2):
        try:
            if not cached.is_file():
                run.fetcher.fetch(archive.urls, cached, archive.integrity, label)
                run.fetcher.reporter.finish(label, True)
            _testhooks.point("archive-downloaded")
            wanted = [Wanted(e.member or "", run.dest / at[e.path], at[e.path], e.integrity.checks, e.integrity.size,
                             algos[e.path]) for e in todo]
            return extract(cached, wanted, label=label, declared_format=archive.format, cancel=run.settings.cancel)
        except Interrupted:
            raise
        except CkptfetchError as exc:
            run.fetcher.reporter.finish(label, False)
            if isinstance(exc, UnsafeArchive) and exc.corrupt and attempt == 1 and cached.is_file():
                cached.unlink(missing_ok=True)  # a corrupt cached archive: throw it away and download once more
                continue
            for e in todo:
                prune_empty_dirs(run.dest, at[e.path])
                run.failed(e, str(exc))
            return None
    return None


def leftovers(target: Path) -> list[Path]:
    """A download's sidecar beside `target` and the partial it describes (see download.engine.partial_paths).

    A partial without a sidecar is not touched: it may be a member that another
    process is extracting under the archive's lock, not this file's. A link
    being made from the store (`linking.tmp_name`) is only ever made under the
    target's own lock.
    """
    link = [tmp_name(target)] if os.path.lexists(tmp_name(target)) else []
    sidecar = target.with_name(target.name + ".ckptfetch-partial.json")
    tmp = sidecar.with_name(sidecar.name + ".tmp")  # a kill during a sidecar save leaves this
    if not (sidecar.exists() or tmp.exists()):
        return link
    return [target.with_name(target.name + ".ckptfetch-partial"), sidecar, tmp, *link]


def drop_leftovers(target: Path) -> None:
    """Remove what a run killed between its rename and its clean-up left beside a finished target."""
    for p in leftovers(target):
        p.unlink(missing_ok=True)


def size_on_disk(dest: Path, rel: str) -> int | None:
    try:
        return (dest / rel).stat().st_size
    except OSError:
        return None


def sync_dirs(dest: Path, rels: Iterable[str]) -> None:
    """fsync each folder that received files once, so the renames are durable."""
    for folder in {(dest / rel).parent for rel in rels}:
        fsync_dir(folder)


def prune_empty_dirs(dest: Path, rel: str) -> None:
    """Remove the folders of `rel` under `dest` that a failed fetch left empty."""
    parent = (dest / rel).parent
    while parent != dest and dest in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def run_all(tasks: list[Callable[[], None]], jobs: int, cancel: threading.Event) -> None:
    """Run tasks on a pool; Ctrl-C sets `cancel`, waits for workers, raises Interrupted."""
    if not tasks:
        return
    pool = cf.ThreadPoolExecutor(max_workers=min(jobs, len(tasks)), thread_name_prefix="ckptfetch")
    futures = [pool.submit(t) for t in tasks]
    try:
        pending = set(futures)
        while pending:
            _, pending = cf.wait(pending, timeout=0.2)
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted() from None
    pool.shutdown(wait=True)
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc


def _settle_unfetched(run: Run) -> None:
    """Outcomes of the files the plan does not fetch: present (leftovers of a killed run cleaned), manual, failed."""
    p = run.plan
    for item in p.items:
        e = item.entry
        if item.action == Action.PRESENT:
            rel = located(e, p.dest) or e.path
            if leftovers(p.dest / rel):
                with locked(p.dest, f"file:{e.path}", run.settings.cancel):
                    drop_leftovers(p.dest / rel)
            digests = file_digests(p.dest, rel, run.fetcher.algos(e.integrity.checks), run.cache) or {}
            run.done(FileOutcome(e.path, Outcome.PRESENT, size_on_disk(p.dest, rel), e.kind, digests=digests, at=rel))
        elif item.action == Action.MANUAL:
            problem = "is missing" if item.reason == "missing" else "does not match the manifest"
            run.done(FileOutcome(e.path, Outcome.MANUAL, e.integrity.size, "manual",
                                 error=f"{e.path} {problem} and must be fetched by hand", manual=e.manual,
                                 manual_url=e.manual_url))
        elif item.action == Action.FAILED:
            run.done(FileOutcome(e.path, Outcome.FAILED, None, e.kind, error=item.reason))


def _tasks(run: Run) -> list[Callable[[], None]]:
    """Archives first: they are usually the largest and yield several files."""
    by_archive: dict[str, list[FileEntry]] = {}
    singles: list[FileEntry] = []
    for item in run.plan.to_fetch:
        if item.entry.archive:
            by_archive.setdefault(item.entry.archive, []).append(item.entry)
        else:
            singles.append(item.entry)
    archives = run.plan.manifest.archives
    tasks: list[Callable[[], None]] = [
        functools.partial(fetch_archive, run, archives[name], entries) for name, entries in by_archive.items()
    ]
    return tasks + [functools.partial(fetch_url, run, e) for e in singles]


def _dry_run(p: Plan) -> FetchResult:
    status = {Action.PRESENT: Outcome.PRESENT, Action.FETCH: Outcome.PLANNED, Action.MANUAL: Outcome.MANUAL,
              Action.FAILED: Outcome.FAILED}
    return FetchResult(p.manifest.name, p.dest, [
        FileOutcome(i.entry.path, status[i.action], i.entry.integrity.size, i.entry.kind, manual=i.entry.manual,
                    manual_url=i.entry.manual_url, error=i.reason if i.action == Action.FAILED else None,
                    origin=i.origin if i.action == Action.FETCH else None)
        for i in p.items
    ], dry_run=True)


def fetch(
    manifest: ManifestRef,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: Sequence[str] = (),
    only: Sequence[str] = (),
    jobs: int = 16,  # per-request latency, not bandwidth, bounds many small files; a pool this size hides it
    connections: int | None = None,
    force: bool = False,
    mirrors: Sequence[Mirror] | None = None,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    layout: str | None = None,
    algorithms: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    link: str = Link.AUTO,
    reuse_from: Sequence[str | os.PathLike[str]] = (),
) -> FetchResult:
    """Fetch, extract and verify the selected files of `manifest` into `dest`.

    `dest` defaults to the manifest's `root` (with `layout` hf-cache or
    torch-hub: huggingface_hub's or torch's cache dir). `layout` overrides the
    manifest's default layout. `connections` is how many connections one large
    file may use when its server takes byte ranges. `algorithms` are extra
    digests computed on the way (in `FileOutcome.digests`).

    Files already on this machine are placed instead of downloaded (README
    "The store"): from the store at `cache_dir` (default `CKPTFETCH_CACHE`,
    else the user cache dir; `no_cache=True` bypasses it and the HF and torch
    caches), from `reuse_from` destinations, from huggingface_hub's and
    torch's caches; `link` (auto, reflink, hardlink, copy, symlink) says how.

    Returns a `FetchResult`; raises `ManifestError` / `UsageError` for bad
    input and `Interrupted` when `settings.cancel` is set (partial files are
    kept for the next run).
    """
    settings = settings or Settings.from_env()
    reuse = open_reuse(cache_dir, no_cache, link, reuse_from)
    if reuse is not None:
        reuse.taking = not force
    p = plan(manifest, dest, variants=tuple(variants), only=tuple(only), force=force, layout=layout,
             settings=settings, reuse=reuse)
    if on_plan is not None:
        on_plan(p)
    if dry_run:
        if reuse is not None:
            reuse.close()
        return _dry_run(p)
    jobs = max(1, jobs)
    try:
        p.dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CkptfetchError(f"cannot create {p.dest}: {exc.strerror or exc}; choose another --dest.") from None
    if connections is not None:
        settings.connections = max(1, connections)
    session = make_session(pool_size=min(64, max(jobs, 4) + settings.connections))
    if reuse is not None and reuse.store is not None:
        algorithms = (*algorithms, "sha256")  # the store's key, computed as the bytes stream in
    fetcher = Fetcher(p.dest, list(env_mirrors() if mirrors is None else mirrors), settings, session,
                      reporter or NullReporter(), tuple(algorithms), reuse)
    run = Run(p, fetcher, VerifiedCache(p.dest), force, reuse)
    _settle_unfetched(run)
    return _finish(run, lambda: run_all(_tasks(run), jobs, settings.cancel))


def _finish(run: Run, work: Callable[[], None]) -> FetchResult:
    """Do `work`, then record what is installed whatever happened; the result in manifest order."""
    record_error: CkptfetchError | None = None
    try:
        work()
    finally:
        run.fetcher.session.close()
        sync_dirs(run.dest, [o.at or o.path for o in run.outcomes.values() if o.status == Outcome.FETCHED])
        try:
            record_outcomes(run.plan, run.outcomes.values())
        except CkptfetchError as exc:
            record_error = exc
        run.cache.close()
        if run.reuse is not None:
            run.reuse.close()
    m = run.plan.manifest
    order = {e.path: n for n, e in enumerate(m.files.values())}
    result = FetchResult(m.name, run.dest, sorted(run.outcomes.values(), key=lambda o: order[o.path]),
                         notes=list(run.reuse.notes) if run.reuse is not None else [])
    # A record that cannot be written (e.g. the disk that just filled up) must not hide the files' own errors,
    # which already say what to do; the next run writes it. On a run where every file is fine it is the error.
    if record_error is not None and result.ok:
        raise record_error
    return result


__all__ = ["Run", "drop_leftovers", "fetch", "leftovers", "prune_empty_dirs", "run_all"]
