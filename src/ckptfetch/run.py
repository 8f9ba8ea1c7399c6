"""The run: fetch, extract and verify what a plan says to fetch, then record it.

Archives first (they are usually the largest and yield several files), then
single files, on a pool of `jobs` threads. Each target (and each archive) is
fetched under its inter-process lock and re-checked once the lock is held,
because another process may have fetched it meanwhile.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _testhooks
from .checking import check_file, file_digests
from .concrete import ManifestRef, cached_archive, check_entry, located
from .download import Settings, make_session
from .download.partial import drop_leftovers, fsync_dir, leftovers
from .errors import CkptfetchError, Interrupted, UnsafeArchive, UsageError
from .extract import Wanted, WantedFolder, extract
from .folders import archive_id, file_entry, inside
from .hashedmirror import planned
from .layout import blob_target, link_snapshot
from .manifest import Archive, FileEntry, Integrity
from .planning import plan
from .proclock import locked
from .progress import NullReporter, Reporter
from .record import record_outcomes
from .results import FetchResult, FileOutcome, Plan
from .sizing import learn_sizes, partial_of
from .sources.huggingface import at_commit
from .sourcing import Fetcher
from .state import VerifiedCache
from .status import Action, Check, Layout, Outcome
from .threads import run_all
from .urls import Mirror, env_hashed_mirrors, env_mirrors, env_offline, parse_hashed, redact


@dataclass
class Run:
    """One `get`: the plan, the shared fetcher, the verified-state cache and the outcomes so far."""

    plan: Plan
    fetcher: Fetcher
    cache: VerifiedCache
    force: bool
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    errors: dict[str, CkptfetchError] = field(default_factory=dict)  # the exception behind each failed outcome
    children: dict[str, FileEntry] = field(default_factory=dict)  # files a folder of an archive yielded
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

    def fetched(self, e: FileEntry, rel: str, digests: dict[str, str], meta: dict[str, str] | None = None) -> None:
        self.remember(rel, digests)
        self.done(FileOutcome(e.path, Outcome.FETCHED, (self.dest / rel).stat().st_size, e.kind, digests=digests,
                              meta=meta or {}, at=rel))

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
            if e.layout == Layout.HF_CACHE:
                def place(meta: dict[str, str]) -> Path:
                    nonlocal blob
                    blob = blob_target(dest, e, meta)[0]
                    return blob

                digests, meta = run.fetcher.fetch(urls, place, e.integrity, e.path, sync_dir=False)
                _, commit, etag = blob_target(dest, e, meta)
                rel = link_snapshot(dest, e, commit, etag)
            else:
                assert rel is not None
                digests, meta = run.fetcher.fetch(urls, dest / rel, e.integrity, e.path, sync_dir=False)
        except Interrupted:
            raise
        except CkptfetchError as exc:
            run.fetcher.reporter.finish(e.path, False)
            left = blob.relative_to(dest).as_posix() if blob is not None else rel
            if left is not None:
                prune_empty_dirs(dest, left)
            run.failed(e, exc)
            return
        run.fetcher.reporter.finish(e.path, True)
        run.fetched(e, rel, digests, meta)


def fetch_archive(run: Run, archive: Archive, entries: list[FileEntry]) -> None:
    """Download one archive (kept in DIR/.ckptfetch/archives/ until every member is in place) and extract `entries`.

    A folder entry (a folder of the archive whose files are not known yet) becomes one entry per file it yields.
    """
    m = run.plan.manifest
    dest = run.dest
    with locked(dest, f"archive:{m.name}:{archive.name}", run.settings.cancel):
        todo = []
        for e in entries:
            have = None if e.folder else run.recheck(e)
            if have is not None:
                run.present(e, have, located(e, dest))
            elif not _from_hashed_mirror(run, e):
                todo.append(e)
        if not todo:
            return
        at = {e.path: located(e, dest) or e.path for e in todo}  # torch-hub puts members elsewhere
        results = _download_and_extract(run, archive, todo, at)
        if results is None:
            return
        for e in todo:
            if e.folder:
                _folder_outcomes(run, archive, e, results)
                continue
            res = results[e.member or ""]
            if isinstance(res, dict):
                run.fetched(e, at[e.path], res)
            else:
                run.failed(e, res)
        # Drop the cached archive once every file the manifest takes from it is in place.
        if all(_in_place(run, f) for f in m.files.values() if f.archive == archive.name):
            cached = _cached_archive(run, archive)
            cached.unlink(missing_ok=True)
            drop_leftovers(cached)


def _folder_outcomes(run: Run, archive: Archive, e: FileEntry,
                     results: dict[str, dict[str, str] | CkptfetchError]) -> None:
    """One outcome per file a folder of the archive yielded, each tagged with where it came from."""
    prefix = (e.member or "").strip("/")
    failure = results.get(prefix + "/")
    if failure is not None:
        run.failed(e, failure if isinstance(failure, CkptfetchError) else str(failure))
        return
    tag = archive_id(archive, e)
    for name, res in sorted(results.items()):
        rel = inside(e, name)
        if rel is None:
            continue
        child = file_entry(e, rel, Integrity(), None)
        run.adopt(child)
        if isinstance(res, dict):
            run.fetched(child, located(child, run.dest) or child.path, res, {"from": tag})
        else:
            run.failed(child, res)


def _from_hashed_mirror(run: Run, e: FileEntry) -> bool:
    """A member whose sha256 is known, fetched from a hashed mirror instead of out of its archive."""
    rel = None if e.folder else located(e, run.dest)
    digests = run.fetcher.from_hashed_mirror(run.dest / rel, e.integrity, e.path) if rel else None
    if digests is not None and rel is not None:
        run.fetched(e, rel, digests, {"source": "hashed-mirror"})
    return digests is not None


def _in_place(run: Run, f: FileEntry) -> bool:
    if f.folder:  # its files were extracted just now (or it failed)
        kids = [run.outcomes[path] for path, child in run.children.items() if child.parent == f.path]
        return bool(kids) and all(o.status == Outcome.FETCHED for o in kids)
    return check_entry(run.dest, f, run.cache)[0] == Check.OK


def _cached_archive(run: Run, archive: Archive) -> Path:
    return cached_archive(run.dest, run.plan.manifest.name, archive.name)


def _download_and_extract(
    run: Run, archive: Archive, todo: list[FileEntry], at: dict[str, str]
) -> dict[str, dict[str, str] | CkptfetchError] | None:
    """Extract `todo` from the (downloaded or cached) archive; None when it failed as a whole (outcomes are set)."""
    cached = _cached_archive(run, archive)
    label = f"{archive.name} (archive)"
    wanted = [Wanted(e.member or "", run.dest / at[e.path], at[e.path], e.integrity.checks, e.integrity.size,
                     tuple(run.fetcher.algos(e.integrity.checks))) for e in todo if not e.folder]
    folders = [WantedFolder((e.member or "").strip("/"), run.dest / at[e.path], e.path, e.include,
                            tuple(run.fetcher.algos({}))) for e in todo if e.folder]
    for attempt in (1, 2):
        try:
            if not cached.is_file():
                run.fetcher.fetch(archive.urls, cached, archive.integrity, label)
                run.fetcher.reporter.finish(label, True)
            _testhooks.point("archive-downloaded")
            return extract(cached, wanted, folders=folders, label=label, declared_format=archive.format,
                           cancel=run.settings.cancel, source=redact(archive.urls[0]))
        except Interrupted:
            raise
        except CkptfetchError as exc:
            run.fetcher.reporter.finish(label, False)
            if isinstance(exc, UnsafeArchive) and exc.corrupt and attempt == 1 and cached.is_file():
                cached.unlink(missing_ok=True)  # a corrupt cached archive: throw it away and download once more
                continue
            for e in todo:
                prune_empty_dirs(run.dest, at[e.path])
                run.failed(e, exc)
            return None
    return None


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
        FileOutcome(i.entry.path, status[i.action], i.size, i.entry.kind, manual=i.entry.manual,
                    manual_url=i.entry.manual_url, error=i.reason if i.action == Action.FAILED else None)
        for i in p.items
    ], dry_run=True)


def fetch(
    manifest: ManifestRef,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: Sequence[str] = (),
    only: Sequence[str] = (),
    exclude: Sequence[str] = (),
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
    offline: bool | None = None,
    raise_on_error: bool = False,
    hashed_mirrors: Sequence[str] | None = None,
) -> FetchResult:
    """Fetch, extract and verify the selected files of `manifest` into `dest`.

    `dest` defaults to the manifest's `root` (with `layout` hf-cache or
    torch-hub: huggingface_hub's or torch's cache dir). `layout` overrides the
    manifest's default layout. `connections` is how many connections one large
    file may use when its server takes byte ranges. `algorithms` are extra
    digests computed on the way (in `FileOutcome.digests`). `offline` (default:
    CKPTFETCH_OFFLINE) uses only mirrors and local sources, and takes folder
    listings and Hub commits from the lock file or the record. Returns a
    `FetchResult`; raises `ManifestError` / `UsageError` for bad input and
    `Interrupted` when `settings.cancel` is set (partial files are kept for
    the next run). With `raise_on_error`, a file that failed raises too
    (`FetchResult.raise_for_status`). `hashed_mirrors` (default:
    CKPTFETCH_HASHED_MIRRORS) are tried first for files whose sha256 is known.
    """
    settings = settings or Settings.from_env()
    offline = env_offline() if offline is None else offline
    hashed = env_hashed_mirrors() if hashed_mirrors is None else parse_hashed(hashed_mirrors)
    p = planned(manifest, hashed, settings, lambda m, local: plan(
        m, dest, variants=tuple(variants), only=tuple(only), exclude=tuple(exclude), force=force, layout=layout,
        settings=settings, offline=offline or local))
    jobs = max(1, jobs)
    if connections is not None:
        settings.connections = max(1, connections)
    session = make_session(pool_size=min(64, max(jobs, 4) + settings.connections))
    fetcher = Fetcher(p.dest, list(env_mirrors() if mirrors is None else mirrors), settings, session,
                      reporter or NullReporter(), tuple(algorithms), offline, hashed=hashed)
    try:
        if on_plan is not None:  # the plan is shown: say what it costs
            _learn_sizes(p, fetcher)
            on_plan(p)
        if dry_run:
            _usable(p.dest)
            return _dry_run(p)
        _make_dest(p.dest)
    except BaseException:
        session.close()
        raise
    run = Run(p, fetcher, VerifiedCache(p.dest), force)
    _settle_unfetched(run)
    result = _finish(run, lambda: _run_tasks(run, jobs))
    if raise_on_error:
        result.raise_for_status()
    return result


def _run_tasks(run: Run, jobs: int) -> None:
    """Every fetch the plan needs; an interrupt says what it leaves for the next run."""
    try:
        run_all(_tasks(run), jobs, run.settings.cancel)
    except Interrupted:
        kept = _partials_kept(run)
        if kept:
            raise Interrupted(f"interrupted; {kept} partial download{'s were' if kept > 1 else ' was'} kept in "
                              f"{run.dest}, run the same command again to resume") from None
        raise Interrupted("interrupted; no download was under way, nothing was left half-done") from None


def _partials_kept(run: Run) -> int:
    """Partial downloads the next run will resume: beside the plan's targets and in the archive cache."""
    targets = [located(i.entry, run.dest) for i in run.plan.to_fetch if not i.entry.archive]
    archives = [cached_archive(run.dest, run.plan.manifest.name, a) for a in run.plan.archives]
    return sum(1 for t in [*(run.dest / t for t in targets if t), *archives] if partial_of(t) is not None)


def _learn_sizes(p: Plan, fetcher: Fetcher) -> None:
    """Ask the sources for the sizes the manifest does not pin (briefly, all at once), for the plan's costs."""
    items = [i for i in p.to_fetch if i.size is None and not i.entry.archive]
    unsized = [name for name, (size, _) in p.archives.items() if size is None]
    learned = learn_sizes([i.entry for i in items], [p.manifest.archives[n] for n in unsized], fetcher)
    for i in items:
        i.size = learned.get(i.entry.path)
    for name in unsized:
        p.archives[name] = (learned.get(f"archive:{name}"), p.archives[name][1])


def _usable(dest: Path) -> None:
    """Refuse a destination that cannot be one (checked without creating anything, for --dry-run)."""
    probe = dest
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"cannot use the destination {dest}: {probe} is a file in the way; choose another --dest.")


def _make_dest(dest: Path) -> None:
    """Create the destination; one that cannot be (a file in the way, read-only) is a usage error."""
    _usable(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if dest.exists() or isinstance(exc, FileExistsError) else exc.strerror or exc
        raise UsageError(f"cannot create the destination {dest}: {why}; choose another --dest.") from None


def _finish(run: Run, work: Callable[[], None]) -> FetchResult:
    """Do `work`, then record what is installed whatever happened; the result in manifest order."""
    record_error: CkptfetchError | None = None
    try:
        work()
    finally:
        run.fetcher.session.close()
        sync_dirs(run.dest, [o.at or o.path for o in run.outcomes.values() if o.status == Outcome.FETCHED])
        try:
            record_outcomes(run.plan, run.outcomes.values(), run.children)
        except CkptfetchError as exc:
            record_error = exc
        run.cache.close()
    m = run.plan.manifest
    order = {e.path: n for n, e in enumerate(m.files.values())}

    def place(o: FileOutcome) -> tuple[int, str]:
        child = run.children.get(o.path)
        return order[child.parent if child is not None and child.parent else o.path], o.path

    result = FetchResult(m.name, run.dest, sorted(run.outcomes.values(), key=place), errors=dict(run.errors))
    # A record that cannot be written (e.g. the disk that just filled up) must not hide the files' own errors,
    # which already say what to do; the next run writes it. On a run where every file is fine it is the error.
    if record_error is not None and result.ok:
        raise record_error
    return result


__all__ = ["Run", "fetch", "prune_empty_dirs"]
