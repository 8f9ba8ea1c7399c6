"""The library API the CLI is a skin over: `plan`, `fetch` and `verify`.

>>> import ckptfetch
>>> result = ckptfetch.fetch("sam-pt", variants=["minimal"])  # doctest: +SKIP
>>> result.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CkptfetchError, DownloadError, Interrupted, UsageError
from .hashing import first_mismatch, hash_file
from .progress import NullReporter, Reporter
from .state import STATE_DIR, VerifiedCache, locked, read_record, state_dir, update_record
from .urls import Mirror, candidates, env_mirrors, redact

if TYPE_CHECKING:
    from .manifest import Archive, FileEntry, Manifest

PRESENT, FETCH, MANUAL = "present", "fetch", "manual"


@dataclass
class PlanItem:
    """One selected file and what `get` will do with it."""

    entry: FileEntry
    action: str  # present | fetch | manual
    reason: str = ""  # why it is fetched: missing, corrupt, forced


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


def _needed_algorithms(expect_hashes: dict[str, str]) -> list[str]:
    return list(expect_hashes) or ["sha256"]


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


def plan(
    manifest: str | os.PathLike[str] | Manifest,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: Sequence[str] = (),
    only: Sequence[str] = (),
    force: bool = False,
) -> Plan:
    """What `fetch` would do: which selected files are present and correct."""
    m = _load(manifest)
    root = Path(dest) if dest is not None else Path(m.root)
    entries = m.select(variants, only)
    if not entries:
        raise UsageError(f"the selection matches no file of manifest {m.name!r}; check --only / --variant")
    cache = VerifiedCache(root) if root.is_dir() else None

    def decide(e: FileEntry) -> PlanItem:
        status, _ = check_file(root, e.path, e.integrity.hashes, e.integrity.size, cache)
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
        status, _ = check_file(self.dest, e.path, e.integrity.hashes, e.integrity.size, self.cache)
        if status != "OK":
            return None
        return file_digests(self.dest, e.path, _needed_algorithms(e.integrity.hashes), self.cache) or {}

    def remember(self, rel: str, digests: dict[str, str]) -> None:
        try:
            st = (self.dest / rel).stat()
        except OSError:
            return
        self.cache.store(rel, st, digests)

    def fetch_url(self, e: FileEntry) -> None:
        with locked(self.dest, f"file:{e.path}", self.settings.cancel):
            have = self.recheck(e)
            if have is not None:
                self.done(FileOutcome(e.path, "present", e.integrity.size, "url", digests=have))
                return
            from .download import download

            urls = candidates(e.urls, self.mirrors)
            try:
                digests = download(
                    urls, self.dest / e.path, hashes=e.integrity.hashes, size=e.integrity.size,
                    algorithms=_needed_algorithms(e.integrity.hashes), session=self.session,
                    settings=self.settings, reporter=self.reporter, label=e.path, sync_dir=False,
                )
            except Interrupted:
                raise
            except CkptfetchError as exc:
                self.reporter.finish(e.path, False)
                _prune_empty_dirs(self.dest, e.path)
                self.done(FileOutcome(e.path, "failed", e.integrity.size, "url", error=str(exc)))
                return
            self.reporter.finish(e.path, True)
            self.remember(e.path, digests)
            self.done(FileOutcome(e.path, "fetched", (self.dest / e.path).stat().st_size, "url", digests=digests))

    def fetch_archive(self, archive: Archive, entries: list[FileEntry]) -> None:
        from .download import download
        from .extract import Wanted, extract

        m = self.plan.manifest
        with locked(self.dest, f"archive:{m.name}:{archive.name}", self.settings.cancel):
            todo = []
            for e in entries:
                have = self.recheck(e)
                if have is not None:
                    self.done(FileOutcome(e.path, "present", e.integrity.size, "archive", digests=have))
                else:
                    todo.append(e)
            if not todo:
                return
            cached = state_dir(self.dest) / "archives" / f"{m.name}--{archive.name}"
            label = f"{archive.name} (archive)"
            for attempt in (1, 2):
                try:
                    if not cached.is_file():
                        download(
                            candidates(archive.urls, self.mirrors), cached, hashes=archive.integrity.hashes,
                            size=archive.integrity.size, session=self.session, settings=self.settings,
                            reporter=self.reporter, label=label,
                        )
                        self.reporter.finish(label, True)
                    wanted = [
                        Wanted(e.member or "", self.dest / e.path, e.path, e.integrity.hashes, e.integrity.size,
                               tuple(_needed_algorithms(e.integrity.hashes)))
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

                    if isinstance(exc, UnsafeArchive) and attempt == 1 and cached.is_file():
                        # A corrupt cached archive: throw it away and download once more.
                        cached.unlink(missing_ok=True)
                        continue
                    for e in todo:
                        _prune_empty_dirs(self.dest, e.path)
                        self.done(FileOutcome(e.path, "failed", e.integrity.size, "archive", error=str(exc)))
                    return
            for e in todo:
                res = results[e.member or ""]
                if isinstance(res, dict):
                    self.remember(e.path, res)
                    self.done(FileOutcome(e.path, "fetched", (self.dest / e.path).stat().st_size, "archive", digests=res))
                else:
                    self.done(FileOutcome(e.path, "failed", e.integrity.size, "archive", error=str(res)))
            # Drop the cached archive once every file the manifest takes from it is in place.
            members = [f for f in m.files.values() if f.archive == archive.name]
            if all(check_file(self.dest, f.path, f.integrity.hashes, f.integrity.size, self.cache)[0] == "OK" for f in members):
                cached.unlink(missing_ok=True)


def _sync_dirs(dest: Path, rels: Iterable[str]) -> None:
    """fsync each folder that received files once, so the renames are durable."""
    for folder in {(dest / rel).parent for rel in rels}:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


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
) -> FetchResult:
    """Fetch, extract and verify the selected files of `manifest` into `dest`.

    `dest` defaults to the manifest's `root`. `connections` is how many
    connections one large file may use when its server takes byte ranges. Returns a `FetchResult`; raises
    `ManifestError` / `UsageError` for bad input and `Interrupted` when
    `settings.cancel` is set (partial files are kept for the next run).
    """
    p = plan(manifest, dest, variants=variants, only=only, force=force)
    if on_plan is not None:
        on_plan(p)
    m = p.manifest
    if dry_run:
        return FetchResult(m.name, p.dest, [
            FileOutcome(i.entry.path, "present" if i.action == PRESENT else "planned" if i.action == FETCH else "manual",
                        i.entry.integrity.size, i.entry.kind, manual=i.entry.manual)
            for i in p.items
        ], dry_run=True)

    from .download import Settings, make_session

    settings = settings or Settings.from_env()
    jobs = max(1, jobs)
    p.dest.mkdir(parents=True, exist_ok=True)
    if connections is not None:
        settings.connections = max(1, connections)
    session = make_session(pool_size=min(64, max(jobs, 4) + settings.connections))
    run = _Run(p, list(env_mirrors() if mirrors is None else mirrors), settings, session,
               reporter or NullReporter(), VerifiedCache(p.dest), force)
    for item in p.items:
        e = item.entry
        if item.action == PRESENT:
            digests = file_digests(p.dest, e.path, _needed_algorithms(e.integrity.hashes), run.cache) or {}
            run.done(FileOutcome(e.path, "present", e.integrity.size, e.kind, digests=digests))
        elif item.action == MANUAL:
            run.done(FileOutcome(e.path, "manual", e.integrity.size, "manual",
                                 error=f"{e.path} must be fetched by hand", manual=e.manual))

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

    try:
        _run_all(tasks, jobs, settings.cancel)
    finally:
        session.close()
        _sync_dirs(p.dest, [o.path for o in run.outcomes.values() if o.status == "fetched"])
        _record(run)
        run.cache.close()
    order = {e.path: n for n, e in enumerate(m.files.values())}
    return FetchResult(m.name, p.dest, sorted(run.outcomes.values(), key=lambda o: order[o.path]))


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
        raise Interrupted("interrupted; partial files were kept so the next run resumes") from None
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
    files: dict[str, dict[str, Any]] = {}
    for o in run.outcomes.values():
        if o.status not in ("present", "fetched"):
            continue
        e = run.plan.manifest.files[o.path]
        pins: dict[str, Any] = dict(e.integrity.hashes) or {k: v for k, v in o.digests.items() if k == "sha256"}
        try:
            pins["size"] = (run.dest / o.path).stat().st_size
        except OSError:
            continue
        files[o.path] = pins
    if files:
        m = run.plan.manifest
        update_record(run.dest, m.name, str(m.source), run.plan.variants, files)


# --- verify -----------------------------------------------------------------------


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
    are not hashed again unless `full`.
    """
    loaded = [_load(m) for m in manifests]
    if dest is None:
        dest = Path(loaded[0].root) if loaded else Path("models")
    root = Path(dest)
    expected: dict[str, tuple[dict[str, str], int | None]] = {}
    if loaded:
        for m in loaded:
            for e in m.files.values():
                expected[e.path] = (dict(e.integrity.hashes), e.integrity.size)
    else:
        record = read_record(root)
        if not record["manifests"]:
            if not root.is_dir():
                raise UsageError(f"{root} does not exist; run `ckptfetch get NAME --dest {root}` first, or pass --manifest")
            raise UsageError(
                f"{root} has no {STATE_DIR}/record.json, so there is nothing to verify against; "
                "run `ckptfetch get` into it, or pass --manifest NAME"
            )
        for info in record["manifests"].values():
            for rel, pins in info.get("files", {}).items():
                hashes = {k: v for k, v in pins.items() if k != "size"}
                expected[rel] = (hashes, pins.get("size"))
    cache = VerifiedCache(root) if root.is_dir() else None

    def one(rel: str) -> VerifyItem:
        hashes, size = expected[rel]
        status, detail = check_file(root, rel, hashes, size, cache, trust_cache=not full)
        return VerifyItem(rel, status, detail)

    def settled(rel: str) -> VerifyItem | None:
        """The answer without hashing (missing, wrong size, or cached), else None."""
        hashes, size = expected[rel]
        try:
            st = (root / rel).stat()
        except FileNotFoundError:
            return VerifyItem(rel, "MISSING")
        except OSError:
            return None
        if size is not None and st.st_size != size:
            return VerifyItem(rel, "FAILED", f"size {st.st_size}, expected {size}")
        if full or cache is None or not hashes:
            return None
        cached = cache.lookup(rel, st)
        if not all(a in cached for a in hashes):
            return None
        bad = first_mismatch(hashes, cached)
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
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if rel == STATE_DIR or rel.startswith(STATE_DIR + "/") or path.is_dir():
                continue
            if rel not in expected:
                items.append(VerifyItem(rel, "UNLISTED", "no manifest lists this file"))
    return VerifyResult(root, items)


def describe_source(e: FileEntry) -> str:
    """A one-line, secret-free description of where a file comes from."""
    if e.archive:
        return f"{e.archive}:{e.member}"
    if e.manual is not None:
        return "manual"
    return redact(e.urls[0]) + (f" (+{len(e.urls) - 1} mirrors)" if len(e.urls) > 1 else "")


__all__ = [
    "DownloadError", "FetchResult", "FileOutcome", "Plan", "PlanItem", "VerifyItem", "VerifyResult",
    "check_file", "describe_source", "fetch", "plan", "verify",
]
