"""The library API the CLI is a skin over: `plan`, `fetch` and `verify`.

>>> import ckptfetch
>>> result = ckptfetch.fetch("sam-pt", variants=["minimal"])  # doctest: +SKIP
>>> result.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _testhooks
from .download.partial import drop_leftovers, leftovers
from .errors import CkptfetchError, DownloadError, Interrupted, UsageError
from .hashing import first_mismatch, hash_file
from .progress import NullReporter, Reporter
from .state import STATE_DIR, VerifiedCache, locked, read_record, state_dir, update_record
from .urls import Mirror, candidates, env_mirrors, redact

if TYPE_CHECKING:
    from .manifest import Archive, FileEntry, Integrity, Manifest

PRESENT, FETCH, MANUAL, FAILED = "present", "fetch", "manual", "failed"


@dataclass
class PlanItem:
    """One selected file and what `get` will do with it."""

    entry: FileEntry
    action: str  # present | fetch | manual | failed
    reason: str = ""  # why it is fetched: missing, corrupt, forced; or why it cannot be (a folder not listed)


@dataclass
class Plan:
    manifest: Manifest
    dest: Path
    variants: list[str]
    items: list[PlanItem]

    @property
    def to_fetch(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == FETCH]

    def bytes_to_fetch(self) -> int | None:
        return self.manifest.total_size(i.entry for i in self.to_fetch)


@dataclass
class FileOutcome:
    """What happened to one file."""

    path: str
    status: str  # present | fetched | failed | manual | planned
    size: int | None = None
    source: str = "url"
    error: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    manual: str | None = None
    manual_url: str | None = None  # the page to visit for a manual file
    meta: dict[str, str] = field(default_factory=dict)  # what the source told us, e.g. a resolved commit
    at: str | None = None  # where the file really is under dest, when the layout puts it elsewhere than `path`


@dataclass
class FetchResult:
    manifest: str
    dest: Path
    files: list[FileOutcome]
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(f.status in ("present", "fetched", "planned") for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest, "dest": str(self.dest), "ok": self.ok, "dry_run": self.dry_run,
            "files": [asdict(f) for f in self.files],
        }


@dataclass
class VerifyItem:
    path: str
    status: str  # OK | FAILED | MISSING | UNLISTED
    detail: str = ""


@dataclass
class VerifyResult:
    dest: Path
    items: list[VerifyItem]

    @property
    def ok(self) -> bool:
        return all(i.status == "OK" for i in self.items)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.status] = out.get(i.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "ok": self.ok, "counts": self.counts(), "files": [asdict(i) for i in self.items]}


# --- checking what is on disk ---------------------------------------------------


def _needed_algorithms(expect_hashes: dict[str, str], extra: Sequence[str] = ()) -> list[str]:
    return list(dict.fromkeys([*(list(expect_hashes) or ["sha256"]), *extra]))


def file_digests(
    dest: Path, rel: str, algorithms: Sequence[str], cache: VerifiedCache | None, trust_cache: bool = True
) -> dict[str, str] | None:
    """Digests of DIR/rel for `algorithms`, from the cache when the file is unchanged."""
    path = dest / rel
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if cache is not None and trust_cache:
        cached = cache.lookup(rel, st)
        if all(a in cached for a in algorithms):
            return cached
    try:
        digests = hash_file(path, algorithms)
        st_after = path.stat()
    except OSError:
        return None
    if cache is not None and VerifiedCache._key(st) == VerifiedCache._key(st_after):
        cache.store(rel, st_after, digests)
    return digests


def check_file(
    dest: Path, rel: str, hashes: dict[str, str], size: int | None, cache: VerifiedCache | None,
    trust_cache: bool = True,
) -> tuple[str, str]:
    """("OK" | "FAILED" | "MISSING", detail) for one file against its pins."""
    path = dest / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        return "MISSING", ""
    except OSError as exc:
        return "FAILED", f"cannot read: {exc.strerror}"
    if not path.is_file():
        return "FAILED", "not a regular file"
    if size is not None and st.st_size != size:
        return "FAILED", f"size {st.st_size}, expected {size}"
    if not hashes:
        return "OK", "unpinned"
    digests = file_digests(dest, rel, list(hashes), cache, trust_cache)
    if digests is None:
        return "FAILED", "cannot read"
    bad = first_mismatch(hashes, digests)
    if bad:
        return "FAILED", f"{bad[0]} {bad[2]}, expected {bad[1]}"
    return "OK", ""


def _parallel(fn: Callable[[Any], Any], items: Iterable[Any], workers: int | None = None) -> list[Any]:
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    import concurrent.futures as cf

    workers = workers or min(len(items), max(2, os.cpu_count() or 2))
    with cf.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# --- plan -----------------------------------------------------------------------


def _load(manifest: str | os.PathLike[str] | Manifest) -> Manifest:
    from .manifest import Manifest, resolve_manifest  # yaml loads only when a manifest is read

    return manifest if isinstance(manifest, Manifest) else resolve_manifest(os.fspath(manifest))


def _with_layout(m: Manifest, layout: str | None) -> Manifest:
    """`m` with its default layout replaced by `layout`; files that chose their own layout keep it."""
    if layout is None or layout == m.layout:
        return m
    from .manifest import LAYOUTS

    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    files = {k: dataclasses.replace(e, layout=layout) if e.layout == m.layout else e for k, e in m.files.items()}
    return dataclasses.replace(m, files=files, layout=layout)


def _default_dest(m: Manifest, layout: str | None) -> Path:
    from .layout import default_dest

    return (default_dest(layout) if layout else None) or Path(m.root)


def _concrete(
    m: Manifest, root: Path, variants: Sequence[str] = (), only: Sequence[str] = (), *, online: bool = True,
    settings: Any = None, unlisted: dict[str, str] | None = None,
) -> Manifest:
    """`m` with its lock file applied and its folder entries listed file by file.

    Folders come from the lock when there is one, else from the Hub (`online`),
    else from what a past `get` recorded in `root`. With `unlisted`, a folder
    the Hub will not list (gated, missing) stays a folder entry and its error
    is put there, so the other files are still fetched.
    """
    from .folders import expand, hub_lister, might_select, recorded_lister
    from .lock import apply_lock, find_lock

    lock = find_lock(m)
    if lock is not None:
        return apply_lock(m, lock)
    if not any(e.folder for e in m.files.values()):
        return m
    if not online:
        recorded = read_record(root)["manifests"].get(m.name, {}).get("files", {})
        return expand(m, recorded_lister(recorded))
    from .download import Settings, make_session
    from .sources import Context

    session = make_session()
    try:
        ctx = Context(session, settings or Settings.from_env())
        listing = hub_lister(ctx)

        def lister(e: FileEntry) -> list[FileEntry]:
            if unlisted is None:
                return listing(e)
            try:
                return listing(e)
            except DownloadError as exc:
                unlisted[e.path] = str(exc)
                return [e]

        return expand(m, lister, wanted=lambda e: might_select(e, m, variants, only))
    finally:
        session.close()


def located(e: FileEntry, root: Path) -> str | None:
    """Where entry `e` is under `root` (its layout decides); None when that is not known yet."""
    if e.layout == "plain":
        return e.path
    from .layout import located as where

    return where(e, root)


def check_entry(root: Path, e: FileEntry, cache: VerifiedCache | None) -> tuple[str, str]:
    """("OK" | "FAILED" | "MISSING" | "FOLDER", detail) for one manifest entry, wherever its layout puts it."""
    if e.folder:
        return "FOLDER", "listed from the Hub when fetched"
    rel = located(e, root)
    if rel is None:
        return "MISSING", ""
    return check_file(root, rel, e.integrity.checks, e.integrity.size, cache)


def plan(
    manifest: str | os.PathLike[str] | Manifest,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: Sequence[str] = (),
    only: Sequence[str] = (),
    force: bool = False,
    layout: str | None = None,
    settings: Any = None,
) -> Plan:
    """What `fetch` would do: which selected files are present and correct.

    Folder entries are listed through the Hub (or taken from the lock file), so
    the plan is per file. `layout` overrides the manifest's default layout.
    """
    m = _with_layout(_load(manifest), layout)
    root = Path(dest) if dest is not None else _default_dest(m, layout)
    unlisted: dict[str, str] = {}
    m = _concrete(m, root, variants, only, settings=settings, unlisted=unlisted)
    entries = m.select(variants, only)
    if not entries:
        raise UsageError(f"the selection matches no file of manifest {m.name!r}; check --only / --variant")
    from .layout import check as check_layouts

    check_layouts(entries)
    cache = VerifiedCache(root) if root.is_dir() else None

    def decide(e: FileEntry) -> PlanItem:
        if e.path in unlisted:
            return PlanItem(e, FAILED, unlisted[e.path])
        status, _ = check_entry(root, e, cache)
        if status == "OK" and not force:
            return PlanItem(e, PRESENT)
        if e.manual is not None:
            return PlanItem(e, MANUAL, "missing" if status == "MISSING" else "corrupt")
        reason = "forced" if status == "OK" else "missing" if status == "MISSING" else "corrupt"
        return PlanItem(e, FETCH, reason)

    try:
        items = _parallel(decide, entries)
    finally:
        if cache is not None:
            cache.close()
    return Plan(m, root, list(variants), items)


# --- fetch ----------------------------------------------------------------------


@dataclass
class _Run:
    plan: Plan
    mirrors: list[Mirror]
    settings: Any
    session: Any
    reporter: Reporter
    cache: VerifiedCache
    force: bool
    algorithms: tuple[str, ...] = ()  # digests to compute besides those the pins need
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dest(self) -> Path:
        return self.plan.dest

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
        if status != "OK":
            return None
        return file_digests(self.dest, rel, self.algos(e.integrity.checks), self.cache) or {}

    def algos(self, hashes: dict[str, str]) -> list[str]:
        return _needed_algorithms(hashes, self.algorithms)

    def remember(self, rel: str, digests: dict[str, str]) -> None:
        try:
            st = (self.dest / rel).stat()
        except OSError:
            return
        self.cache.store(rel, st, digests)

    def download(
        self, urls: Sequence[str], target: Path | Callable[[dict[str, str]], Path], integrity: Integrity, label: str,
        *, sync_dir: bool = True,
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Fetch `target` from the first of `urls` (mirrors first) that yields verified bytes.

        Each URL is resolved by its source only when its turn comes, and the
        pins the source learns (e.g. the sha256 a hub declares) are checked
        too. `target` may be a function of the source's metadata (a blob named
        after the Hub's etag); such a target already holding the right bytes is
        not fetched again. Returns (digests, the source's metadata).
        """
        from .download import download
        from .errors import HashMismatch
        from .sources import Context, resolve

        ctx = Context(self.session, self.settings, label)
        errors: list[DownloadError] = []
        for url in candidates(urls, self.mirrors):
            try:
                found = resolve(url, ctx)
                hashes, size = _merge_pins(integrity, found.hashes, found.size, label, url)
                if not callable(target):
                    digests = download(
                        found.requests, target, hashes=hashes, size=size, algorithms=self.algos(hashes),
                        session=self.session, settings=self.settings, reporter=self.reporter, label=label,
                        sync_dir=sync_dir,
                    )
                    return digests, found.meta
                path = target(found.meta)
                # Several entries may share one blob (the same repo file under two keys, identical files):
                # one download at a time per blob, and a blob already in place is not fetched again.
                with locked(self.dest, f"blob:{path}", self.settings.cancel):
                    if path.is_file() and (size is None or path.stat().st_size == size) and hashes:
                        have = hash_file(path, self.algos(hashes))
                        if first_mismatch(hashes, have) is None:
                            return have, found.meta
                    digests = download(
                        found.requests, path, hashes=hashes, size=size, algorithms=self.algos(hashes),
                        session=self.session, settings=self.settings, reporter=self.reporter, label=label,
                        sync_dir=sync_dir,
                    )
                return digests, found.meta
            except DownloadError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if all(isinstance(e, HashMismatch) for e in errors):
            raise errors[-1]
        raise DownloadError(f"{label}: every source failed. " + " ".join(f"[{i}] {e}" for i, e in enumerate(errors, 1)))

    def fetch_url(self, e: FileEntry) -> None:
        from .layout import HF_CACHE, blob_target, link_snapshot
        from .sources.huggingface import at_commit

        with locked(self.dest, f"file:{e.path}", self.settings.cancel):
            have = self.recheck(e)
            rel = located(e, self.dest)
            if have is not None:
                drop_leftovers(self.dest / (rel or e.path))
                self.done(FileOutcome(e.path, "present", _size_on_disk(self.dest, rel or e.path), "url", digests=have,
                                      at=rel))
                return
            # A lock (or a folder listing) pins Hub files to a commit: fetch exactly that one.
            urls = [at_commit(u, e.commit) for u in e.urls] if e.commit else list(e.urls)
            blob: Path | None = None
            try:
                if e.layout == HF_CACHE:
                    def place(meta: dict[str, str]) -> Path:
                        nonlocal blob
                        blob = blob_target(self.dest, e, meta)[0]
                        return blob

                    digests, meta = self.download(urls, place, e.integrity, e.path, sync_dir=False)
                    _, commit, etag = blob_target(self.dest, e, meta)
                    rel = link_snapshot(self.dest, e, commit, etag)
                else:
                    assert rel is not None
                    digests, meta = self.download(urls, self.dest / rel, e.integrity, e.path, sync_dir=False)
            except Interrupted:
                raise
            except CkptfetchError as exc:
                self.reporter.finish(e.path, False)
                if blob is not None:
                    _prune_empty_dirs(self.dest, blob.relative_to(self.dest).as_posix())
                elif rel is not None:
                    _prune_empty_dirs(self.dest, rel)
                self.done(FileOutcome(e.path, "failed", e.integrity.size, "url", error=str(exc)))
                return
            self.reporter.finish(e.path, True)
            self.remember(rel, digests)
            self.done(FileOutcome(e.path, "fetched", (self.dest / rel).stat().st_size, "url", digests=digests,
                                  meta=meta, at=rel))

    def fetch_archive(self, archive: Archive, entries: list[FileEntry]) -> None:
        from .extract import Wanted, extract

        m = self.plan.manifest
        with locked(self.dest, f"archive:{m.name}:{archive.name}", self.settings.cancel):
            todo = []
            for e in entries:
                have = self.recheck(e)
                if have is not None:
                    where = located(e, self.dest)
                    self.done(FileOutcome(e.path, "present", _size_on_disk(self.dest, where or e.path), "archive",
                                          digests=have, at=where))
                else:
                    todo.append(e)
            if not todo:
                return
            at = {e.path: located(e, self.dest) or e.path for e in todo}  # torch-hub puts members elsewhere
            cached = state_dir(self.dest) / "archives" / f"{m.name}--{archive.name}"
            label = f"{archive.name} (archive)"
            for attempt in (1, 2):
                try:
                    if not cached.is_file():
                        self.download(archive.urls, cached, archive.integrity, label)
                        self.reporter.finish(label, True)
                    _testhooks.point("archive-downloaded")
                    wanted = [
                        Wanted(e.member or "", self.dest / at[e.path], at[e.path], e.integrity.checks,
                               e.integrity.size, tuple(self.algos(e.integrity.checks)))
                        for e in todo
                    ]
                    results = extract(cached, wanted, label=label, declared_format=archive.format,
                                      cancel=self.settings.cancel)
                    break
                except Interrupted:
                    raise
                except CkptfetchError as exc:
                    self.reporter.finish(label, False)
                    from .errors import UnsafeArchive

                    if isinstance(exc, UnsafeArchive) and exc.corrupt and attempt == 1 and cached.is_file():
                        # A corrupt cached archive: throw it away and download once more.
                        cached.unlink(missing_ok=True)
                        continue
                    for e in todo:
                        _prune_empty_dirs(self.dest, at[e.path])
                        self.done(FileOutcome(e.path, "failed", e.integrity.size, "archive", error=str(exc)))
                    return
            for e in todo:
                res = results[e.member or ""]
                if isinstance(res, dict):
                    self.remember(at[e.path], res)
                    self.done(FileOutcome(e.path, "fetched", (self.dest / at[e.path]).stat().st_size, "archive",
                                          digests=res, at=at[e.path]))
                else:
                    self.done(FileOutcome(e.path, "failed", e.integrity.size, "archive", error=str(res)))
            # Drop the cached archive once every file the manifest takes from it is in place.
            members = [f for f in m.files.values() if f.archive == archive.name]
            if all(check_entry(self.dest, f, self.cache)[0] == "OK" for f in members):
                cached.unlink(missing_ok=True)
                drop_leftovers(cached)


def _size_on_disk(dest: Path, rel: str) -> int | None:
    try:
        return (dest / rel).stat().st_size
    except OSError:
        return None


def _merge_pins(
    integrity: Integrity, hashes: dict[str, str], size: int | None, label: str, url: str
) -> tuple[dict[str, str], int | None]:
    """The manifest's pins plus those a source declared; a disagreement is an error before any byte moves.

    A weak pin (a sha256 prefix from the file name) gives way to a full digest the source declares, when
    that digest starts with it.
    """
    merged = dict(integrity.checks)
    for algo, digest in hashes.items():
        digest = digest.lower()
        pinned = merged.setdefault(algo, digest)
        if not digest.startswith(pinned):
            what = f"the {integrity.weak_origin} says it starts with" if pinned == integrity.weak else "the manifest pins"
            raise DownloadError(
                f"{label}: {redact(url)} declares {algo} {digest} but {what} {pinned}; "
                "the upstream file changed, or the manifest is wrong. Nothing was downloaded."
            )
        merged[algo] = digest
    if size is not None and integrity.size is not None and size != integrity.size:
        raise DownloadError(
            f"{label}: {redact(url)} declares {size} bytes but the manifest pins {integrity.size}; "
            "the upstream file changed, or the manifest is wrong. Nothing was downloaded."
        )
    return merged, integrity.size if integrity.size is not None else size


def _sync_dirs(dest: Path, rels: Iterable[str]) -> None:
    """fsync each folder that received files once, so the renames are durable."""
    from .download.partial import fsync_dir

    for folder in {(dest / rel).parent for rel in rels}:
        fsync_dir(folder)


def _prune_empty_dirs(dest: Path, rel: str) -> None:
    """Remove the folders of `rel` under `dest` that a failed fetch left empty."""
    parent = (dest / rel).parent
    while parent != dest and dest in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def fetch(
    manifest: str | os.PathLike[str] | Manifest,
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
    settings: Any = None,
    on_plan: Callable[[Plan], None] | None = None,
    layout: str | None = None,
    algorithms: Sequence[str] = (),
) -> FetchResult:
    """Fetch, extract and verify the selected files of `manifest` into `dest`.

    `dest` defaults to the manifest's `root` (with `layout` hf-cache or
    torch-hub: huggingface_hub's or torch's cache dir). `layout` overrides the
    manifest's default layout. `connections` is how many
    connections one large file may use when its server takes byte ranges.
    `algorithms` are extra digests computed on the way (in `FileOutcome.digests`). Returns a `FetchResult`; raises
    `ManifestError` / `UsageError` for bad input and `Interrupted` when
    `settings.cancel` is set (partial files are kept for the next run).
    """
    from .download import Settings

    settings = settings or Settings.from_env()
    p = plan(manifest, dest, variants=variants, only=only, force=force, layout=layout, settings=settings)
    if on_plan is not None:
        on_plan(p)
    m = p.manifest
    if dry_run:
        return FetchResult(m.name, p.dest, [
            FileOutcome(i.entry.path, {PRESENT: "present", FETCH: "planned"}.get(i.action, i.action),
                        i.entry.integrity.size, i.entry.kind, manual=i.entry.manual, manual_url=i.entry.manual_url,
                        error=i.reason if i.action == FAILED else None)
            for i in p.items
        ], dry_run=True)

    from .download import make_session

    jobs = max(1, jobs)
    try:
        p.dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CkptfetchError(f"cannot create {p.dest}: {exc.strerror or exc}; choose another --dest.") from None
    if connections is not None:
        settings.connections = max(1, connections)
    session = make_session(pool_size=min(64, max(jobs, 4) + settings.connections))
    run = _Run(p, list(env_mirrors() if mirrors is None else mirrors), settings, session,
               reporter or NullReporter(), VerifiedCache(p.dest), force, tuple(algorithms))
    for item in p.items:
        e = item.entry
        if item.action == PRESENT:
            rel = located(e, p.dest) or e.path
            if leftovers(p.dest / rel):
                with locked(p.dest, f"file:{e.path}", settings.cancel):
                    drop_leftovers(p.dest / rel)
            digests = file_digests(p.dest, rel, run.algos(e.integrity.checks), run.cache) or {}
            run.done(FileOutcome(e.path, "present", _size_on_disk(p.dest, rel), e.kind, digests=digests, at=rel))
        elif item.action == MANUAL:
            problem = "is missing" if item.reason == "missing" else "does not match the manifest"
            run.done(FileOutcome(e.path, "manual", e.integrity.size, "manual",
                                 error=f"{e.path} {problem} and must be fetched by hand", manual=e.manual,
                                 manual_url=e.manual_url))
        elif item.action == FAILED:
            run.done(FileOutcome(e.path, "failed", None, e.kind, error=item.reason))

    # Archives first: they are usually the largest and yield several files.
    by_archive: dict[str, list[FileEntry]] = {}
    singles: list[FileEntry] = []
    for item in p.to_fetch:
        if item.entry.archive:
            by_archive.setdefault(item.entry.archive, []).append(item.entry)
        else:
            singles.append(item.entry)
    tasks: list[Callable[[], None]] = [
        functools.partial(run.fetch_archive, m.archives[name], entries) for name, entries in by_archive.items()
    ]
    tasks += [functools.partial(run.fetch_url, e) for e in singles]

    record_error: CkptfetchError | None = None
    try:
        _run_all(tasks, jobs, settings.cancel)
    finally:
        session.close()
        _sync_dirs(p.dest, [o.at or o.path for o in run.outcomes.values() if o.status == "fetched"])
        try:
            _record(run)
        except CkptfetchError as exc:
            record_error = exc
        run.cache.close()
    order = {e.path: n for n, e in enumerate(m.files.values())}
    result = FetchResult(m.name, p.dest, sorted(run.outcomes.values(), key=lambda o: order[o.path]))
    # A record that cannot be written (e.g. the disk that just filled up) must not hide the files' own errors,
    # which already say what to do; the next run writes it. On a run where every file is fine it is the error.
    if record_error is not None and result.ok:
        raise record_error
    return result


def _run_all(tasks: list[Callable[[], None]], jobs: int, cancel: threading.Event) -> None:
    """Run tasks on a pool; Ctrl-C sets `cancel`, waits for workers, raises Interrupted."""
    import concurrent.futures as cf

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
        if isinstance(exc, Interrupted):
            raise exc
        if exc is not None and not isinstance(exc, CkptfetchError):
            raise exc
        if exc is not None:
            raise exc


def _record(run: _Run) -> None:
    """Write what is now installed into DIR/.ckptfetch/record.json."""
    from .layout import HF_CACHE, blob_of

    files: dict[str, dict[str, Any]] = {}
    for o in run.outcomes.values():
        # Every selected file is recorded, fetched or not, so `verify DIR` reports what a failed run left MISSING.
        e = run.plan.manifest.files[o.path]
        # Every selected file is recorded, fetched or not, so `verify DIR` reports what a failed run left MISSING.
        # The manifest's pins, plus the sha256 verified on the way (e.g. the one the Hub declared).
        pins: dict[str, Any] = dict(e.integrity.checks)
        at = o.at or o.path
        if o.status in ("present", "fetched"):
            pins.update({k: v for k, v in o.digests.items() if k == "sha256"})
            try:
                pins["size"] = (run.dest / at).stat().st_size
            except OSError:
                pass
        elif e.integrity.size is not None:
            pins["size"] = e.integrity.size
        if at != o.path:
            pins["at"] = at  # where the layout put it; `verify` checks it there
        if e.layout == HF_CACHE and (blob := blob_of(run.dest, at)):
            pins["blob"] = blob
        if e.parent:
            pins["parent"] = e.parent
        commit = e.commit or o.meta.get("commit")
        if commit:
            pins["commit"] = commit
        files[o.path] = pins
    if files:
        m = run.plan.manifest
        _testhooks.point("record")
        update_record(run.dest, m.name, str(m.source), run.plan.variants, files)


# --- verify -----------------------------------------------------------------------


@dataclass
class _Expected:
    """What `verify` checks for one file: pins, and where it is (`at`; for hf-cache also its blob)."""

    hashes: dict[str, str]
    size: int | None
    at: str | None
    blob: str | None = None


def _expected_from_manifest(m: Manifest, root: Path) -> dict[str, _Expected]:
    from .layout import HF_CACHE, blob_of

    m = _concrete(m, root, online=False)
    out = {}
    for e in m.files.values():
        at = located(e, root)
        blob = blob_of(root, at) if at is not None and e.layout == HF_CACHE else None
        out[e.path] = _Expected(dict(e.integrity.checks), e.integrity.size, at, blob)
    return out


def _expected_from_record(root: Path) -> dict[str, _Expected]:
    from .hashing import ALGORITHMS

    record = read_record(root)
    if not record["manifests"]:
        if not root.is_dir():
            raise UsageError(f"{root} does not exist; run `ckptfetch get NAME --dest {root}` first, or pass --manifest")
        raise UsageError(
            f"{root} has no {STATE_DIR}/record.json, so there is nothing to verify against; "
            "run `ckptfetch get` into it, or pass --manifest NAME"
        )
    expected: dict[str, _Expected] = {}
    for name, info in record["manifests"].items():
        lock = _recorded_lock(name, info.get("source"))
        for rel, pins in info.get("files", {}).items():
            hashes = {k: v for k, v in pins.items() if k in ALGORITHMS}
            size = pins.get("size")
            pin = lock.files.get(rel) if lock is not None else None
            if pin is not None:
                # The lock beside the manifest is enforced here too: its pins win over what was recorded.
                hashes["sha256"], size = pin.sha256, pin.size
            expected[rel] = _Expected(hashes, size, pins.get("at") or rel, pins.get("blob"))
    return expected


def _recorded_lock(name: str, source: Any) -> Any:
    """The lock file beside a recorded manifest, if it is still there."""
    if not isinstance(source, str):
        return None
    path = Path(source).with_name(f"{name}.lock.yaml")
    if not path.is_file():
        return None
    from .lock import load_lock  # yaml loads only when there is a lock to read

    return load_lock(path)


def verify(
    dest: str | os.PathLike[str] | None = None,
    *,
    manifests: Sequence[str | os.PathLike[str] | Manifest] = (),
    strict: bool = False,
    full: bool = False,
) -> VerifyResult:
    """Check every file recorded in DIR/.ckptfetch/ (or listed by `manifests`).

    Like `md5sum -c`: each file is OK, FAILED or MISSING; with `strict`, files
    under DIR that nothing lists are UNLISTED. Unchanged files verified before
    are not hashed again unless `full`. Files are checked where their layout
    put them; an hf-cache snapshot entry must also lead to its recorded blob.
    A lock file beside a manifest is enforced.
    """
    loaded = [_load(m) for m in manifests]
    if dest is None:
        dest = Path(loaded[0].root) if loaded else Path("models")
    root = Path(dest)
    expected: dict[str, _Expected] = {}
    if loaded:
        for m in loaded:
            expected.update(_expected_from_manifest(m, root))
    else:
        expected = _expected_from_record(root)
    cache = VerifiedCache(root) if root.is_dir() else None

    def link_problem(x: _Expected) -> str | None:
        if x.blob is None or x.at is None:
            return None
        if os.path.realpath(root / x.at) != os.path.realpath(root / x.blob):
            return f"{x.at} does not lead to {x.blob}"
        return None

    def one(rel: str) -> VerifyItem:
        x = expected[rel]
        if x.at is None:
            return VerifyItem(rel, "MISSING", "not in the cache's refs")
        status, detail = check_file(root, x.at, x.hashes, x.size, cache, trust_cache=not full)
        if status == "OK" and (problem := link_problem(x)):
            return VerifyItem(rel, "FAILED", problem)
        return VerifyItem(rel, status, detail)

    def settled(rel: str) -> VerifyItem | None:
        """The answer without hashing (missing, wrong size, or cached), else None."""
        x = expected[rel]
        if x.at is None:
            return VerifyItem(rel, "MISSING", "not in the cache's refs")
        try:
            st = (root / x.at).stat()
        except FileNotFoundError:
            return VerifyItem(rel, "MISSING")
        except OSError:
            return None
        if x.size is not None and st.st_size != x.size:
            return VerifyItem(rel, "FAILED", f"size {st.st_size}, expected {x.size}")
        if problem := link_problem(x):
            return VerifyItem(rel, "FAILED", problem)
        if full or cache is None or not x.hashes:
            return None
        cached = cache.lookup(x.at, st)
        if not all(a in cached for a in x.hashes):
            return None
        bad = first_mismatch(x.hashes, cached)
        return VerifyItem(rel, "FAILED", f"{bad[0]} {bad[2]}, expected {bad[1]}") if bad else VerifyItem(rel, "OK")

    try:
        # Unchanged files cost a stat and a cache look-up; only the rest are hashed, in parallel.
        quick = {rel: settled(rel) for rel in sorted(expected)}
        hashed = dict(zip((r for r, v in quick.items() if v is None),
                          _parallel(one, [r for r, v in quick.items() if v is None]), strict=True))
        items = [quick[rel] or hashed[rel] for rel in sorted(expected)]
    finally:
        if cache is not None:
            cache.close()
    if strict and root.is_dir():
        from .layout import own_files

        listed = {x.at or rel for rel, x in expected.items()} | {x.blob for x in expected.values() if x.blob}
        repos = {x.at.split("/", 1)[0] for x in expected.values() if x.at and "/snapshots/" in x.at}
        listed |= own_files(root, repos)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if rel == STATE_DIR or rel.startswith(STATE_DIR + "/") or path.is_dir():
                continue
            if rel not in listed:
                items.append(VerifyItem(rel, "UNLISTED", "no manifest lists this file"))
    return VerifyResult(root, items)


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


__all__ = [
    "DownloadError", "FetchResult", "FileOutcome", "Plan", "PlanItem", "VerifyItem", "VerifyResult",
    "check_entry", "check_file", "describe_pin", "describe_source", "fetch", "located", "plan", "relies_on_nothing",
    "verify",
]
