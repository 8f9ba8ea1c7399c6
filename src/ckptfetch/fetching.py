"""`fetch`: plan, place what this machine has, download and extract the rest, record, and report."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .checking import file_digests
from .concrete import ManifestRef, cached_archive, located
from .download.partial import partial_of
from .download.settings import Settings
from .errors import CkptfetchError, Interrupted, UsageError
from .hashedmirror import planned
from .linking import drop_leftovers, leftovers
from .manifest import FileEntry
from .planning import plan
from .proclock import locked
from .progress import NullReporter, Reporter
from .record import record_outcomes
from .results import FetchResult, FileOutcome, Plan
from .reuse import open_reuse
from .run import Run, fetch_url, prune_empty_dirs, size_on_disk, sync_dirs
from .sourcing import Fetcher
from .state import VerifiedCache
from .status import Action, Link, Origin, Outcome
from .threads import run_all
from .unpacking import fetch_archive
from .urls import Mirror, env_hashed_mirrors, env_mirrors, env_offline, parse_hashed


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
    cache_dir: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    link: str = Link.AUTO,
    reuse_from: Sequence[str | os.PathLike[str]] = (),
    hashed_mirrors: Sequence[str] | None = None,
) -> FetchResult:
    """Fetch, extract and verify the selected files of `manifest` into `dest`.

    `dest` defaults to the manifest's `root` (with `layout` hf-cache or
    torch-hub: huggingface_hub's or torch's cache dir). `layout` overrides the
    manifest's default layout. `connections` is how many connections one large
    file may use when its server takes byte ranges. `algorithms` are extra
    digests computed on the way (in `FileOutcome.digests`). `offline` (default:
    CKPTFETCH_OFFLINE) uses only mirrors and local sources, and takes folder
    listings and Hub commits from the lock file or the record.

    Files already on this machine are placed instead of downloaded (README
    "The store"): from the store at `cache_dir` (default `CKPTFETCH_CACHE`,
    else the user cache dir; `no_cache=True` bypasses it and the HF and torch
    caches), from `reuse_from` destinations, from huggingface_hub's and
    torch's caches; `link` (auto, reflink, hardlink, copy, symlink) says how.

    Returns a `FetchResult`; raises `ManifestError` / `UsageError` for bad
    input and `Interrupted` when `settings.cancel` is set (partial files are
    kept for the next run). With `raise_on_error`, a file that failed raises
    too (`FetchResult.raise_for_status`). `hashed_mirrors` (default:
    CKPTFETCH_HASHED_MIRRORS) are tried first for files whose sha256 is known
    (README "Clusters and air-gapped sites").
    """
    settings = settings or Settings.from_env()
    offline = env_offline() if offline is None else offline
    hashed = env_hashed_mirrors() if hashed_mirrors is None else parse_hashed(hashed_mirrors)
    reuse = open_reuse(cache_dir, no_cache, link, reuse_from)
    if reuse is not None:
        reuse.taking = not force
    jobs = max(1, jobs)
    if connections is not None:
        settings.connections = max(1, connections)
    if reuse is not None and reuse.store is not None:
        algorithms = (*algorithms, "sha256")  # the store's key, computed as the bytes stream in
    fetcher = Fetcher(Path(), list(env_mirrors() if mirrors is None else mirrors), settings,
                      reporter or NullReporter(), tuple(algorithms), offline, reuse=reuse, hashed=hashed,
                      pool_size=min(64, max(jobs, 4) + settings.connections))
    try:
        p = planned(manifest, hashed, settings, lambda m, local: plan(
            m, dest, variants=tuple(variants), only=tuple(only), exclude=tuple(exclude), force=force, layout=layout,
            settings=settings, offline=offline or local, reuse=reuse))
        fetcher.dest = p.dest
        if _shown_or_dry(p, fetcher, on_plan, dry_run):
            return _dry_run(p)
    except BaseException:
        fetcher.close()
        if reuse is not None:
            reuse.close()
        raise
    run = Run(p, fetcher, VerifiedCache(p.dest), force, reuse)
    _settle_unfetched(run)
    result = _finish(run, lambda: _run_tasks(run, jobs))
    if raise_on_error:
        result.raise_for_status()
    return result


def _shown_or_dry(p: Plan, fetcher: Fetcher, on_plan: Callable[[Plan], None] | None, dry_run: bool) -> bool:
    """Show the plan (with what it costs) when asked; True for a dry run, else the destination is made."""
    _usable(p.dest)  # before the plan: under a file in the way, every target would read as "corrupt"
    if on_plan is not None:  # the plan is shown: say what it costs
        _learn_sizes(p, fetcher, everything=dry_run)
        on_plan(p)
    if dry_run:
        return True
    _make_dest(p.dest)
    return False


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
                    manual_url=i.entry.manual_url, error=i.reason if i.action == Action.FAILED else None,
                    origin=i.origin if i.action == Action.FETCH else None)
        for i in p.items
    ], dry_run=True)


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


def _learn_sizes(p: Plan, fetcher: Fetcher, everything: bool) -> None:
    """Ask the sources for the sizes the manifest does not pin (briefly, all at once), for the plan's costs.

    A dry run asks about every file. A real run asks only when one round of
    requests covers them all (MAX_PROBES): the download itself learns the
    sizes, and for hundreds of small files a request more per file would cost
    more than the plan's total is worth.
    """
    # Files found on this machine cost nothing: their sources are not asked.
    items = [i for i in p.to_fetch if i.size is None and not i.entry.archive and i.origin == Origin.NETWORK]
    unsized = [name for name, (size, _) in p.archives.items() if size is None]
    if not items and not unsized:
        return
    from .sizing import MAX_PROBES, learn_sizes  # talks HTTP: a plan with nothing to ask never imports requests

    if not everything and len(items) + len(unsized) > MAX_PROBES:
        return
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
        run.fetcher.close()
        prune_empty_dirs(run.dest, run.left_empty)
        sync_dirs(run.dest, [o.at or o.path for o in run.outcomes.values() if o.status == Outcome.FETCHED])
        try:
            record_outcomes(run.plan, run.outcomes.values(), run.children)
        except CkptfetchError as exc:
            record_error = exc
        run.cache.close()
        if run.reuse is not None:
            run.reuse.close()
    m = run.plan.manifest
    order = {e.path: n for n, e in enumerate(m.files.values())}

    def place(o: FileOutcome) -> tuple[int, str]:
        child = run.children.get(o.path)
        return order[child.parent if child is not None and child.parent else o.path], o.path

    result = FetchResult(m.name, run.dest, sorted(run.outcomes.values(), key=place), errors=dict(run.errors),
                         notes=list(run.reuse.notes) if run.reuse is not None else [])
    # A record that cannot be written (e.g. the disk that just filled up) must not hide the files' own errors,
    # which already say what to do; the next run writes it. On a run where every file is fine it is the error.
    if record_error is not None and result.ok:
        raise record_error
    return result


__all__ = ["fetch"]
