"""Archives: download one (kept in DIR/.ckptfetch/archives/ while a file it yields is missing), then extract
the listed members and folders; a folder's files become entries of their own."""

from __future__ import annotations

from pathlib import Path

from . import _testhooks
from .concrete import cached_archive, check_entry, located
from .errors import CkptfetchError, Interrupted, UnsafeArchive
from .extract import Wanted, WantedFolder, extract
from .folders import archive_id, file_entry, inside
from .linking import drop_leftovers
from .manifest import Archive, FileEntry, Integrity
from .proclock import locked
from .run import Run
from .status import Check, Outcome
from .urls import redact


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
            elif e.folder or not (_taken(run, e) or _from_hashed_mirror(run, e)):
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
                run.keep(at[e.path], res)
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
            at = located(child, run.dest) or child.path
            run.keep(at, res)
            run.fetched(child, at, res, {"from": tag})
        else:
            run.failed(child, res)


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
                run.gave_up_on(at[e.path])
                run.failed(e, exc)
            return None
    return None


def _taken(run: Run, e: FileEntry) -> bool:
    """Whether a member was placed from the store or a cache (a failure to place it counts as its outcome)."""
    rel = located(e, run.dest)
    try:
        taken = run.take(e, rel)
    except CkptfetchError as exc:
        run.failed(e, exc)
        return True
    if taken is None or rel is None:
        return False
    run.fetched(e, rel, taken.digests, taken=taken)
    return True


def _from_hashed_mirror(run: Run, e: FileEntry) -> bool:
    """A member whose sha256 is known, fetched from a hashed mirror instead of out of its archive."""
    rel = located(e, run.dest)
    digests = run.fetcher.from_hashed_mirror(run.dest / rel, e.integrity, e.path) if rel else None
    if digests is not None and rel is not None:
        run.keep(rel, digests)
        run.fetched(e, rel, digests, {"source": "hashed-mirror"})
    return digests is not None


__all__ = ["fetch_archive"]
