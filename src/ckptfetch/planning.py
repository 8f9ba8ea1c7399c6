"""`plan`: which selected files are present and correct, and what `get` will do with the rest."""

from __future__ import annotations

import os

from .concrete import ManifestRef, cached_archive, check_entry, concrete, destination, load, located, with_layout
from .download.partial import partial_of
from .download.settings import Settings
from .errors import UsageError
from .layout import check as check_layouts
from .manifest import FileEntry
from .results import Plan, PlanItem
from .reuse import Reuse
from .state import VerifiedCache
from .status import Action, Check
from .threads import parallel


def plan(
    manifest: ManifestRef,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: tuple[str, ...] | list[str] = (),
    only: tuple[str, ...] | list[str] = (),
    exclude: tuple[str, ...] | list[str] = (),
    force: bool = False,
    layout: str | None = None,
    settings: Settings | None = None,
    offline: bool = False,
    reuse: Reuse | None = None,
) -> Plan:
    """What `fetch` would do: which selected files are present and correct.

    Folder entries are listed through the Hub (or taken from the lock file), so
    the plan is per file; `offline`, only from the lock file or the record.
    `layout` overrides the manifest's default layout. With `reuse`, a file to
    fetch says where on this machine its bytes are expected from (not yet
    verified: the run verifies before placing).
    """
    m = with_layout(load(manifest), layout)
    root = destination(m, dest, layout)
    unlisted: dict[str, str] = {}
    m = concrete(m, root, variants, only, online=not offline, settings=settings, unlisted=unlisted)
    entries = m.select(variants, only, exclude)
    if not entries:
        raise UsageError(f"the selection matches no file of manifest {m.name!r}; check --only / --exclude / --variant")
    check_layouts(entries)
    cache = VerifiedCache(root) if root.is_dir() else None

    def decide(e: FileEntry) -> PlanItem:
        if e.path in unlisted:
            return PlanItem(e, Action.FAILED, unlisted[e.path])
        status, _ = check_entry(root, e, cache)
        size = e.integrity.size
        if status == Check.FOLDER:
            return PlanItem(e, Action.FETCH, "missing")  # a folder of an archive: its files come out of it
        if status == Check.OK and not force:
            return PlanItem(e, Action.PRESENT, size=size)
        if e.manual is not None:
            return PlanItem(e, Action.MANUAL, "missing" if status == Check.MISSING else "corrupt", size=size)
        reason = "forced" if status == Check.OK else "missing" if status == Check.MISSING else "corrupt"
        found = reuse.plan_origin(e) if reuse is not None and not force else None
        if found is not None:
            return PlanItem(e, Action.FETCH, reason, size, origin=found.origin, found_at=str(found.path))
        at = None if e.archive else located(e, root)
        partial = partial_of(root / at) if at is not None else None
        if partial is not None and size is None:
            size = partial.total
        return PlanItem(e, Action.FETCH, reason, size, partial.have if partial else 0)

    try:
        items = parallel(decide, entries)
    finally:
        if cache is not None:
            cache.close()
    p = Plan(m, root, list(variants), items, list(only), exclude=list(exclude))
    p.archives = _archives_to_download(p)
    return p


def _archives_to_download(p: Plan) -> dict[str, tuple[int | None, int]]:
    """The archives the plan must download (not already cached whole), with their size and what is here."""
    out: dict[str, tuple[int | None, int]] = {}
    for name in dict.fromkeys(i.entry.archive for i in p.to_fetch if i.entry.archive):
        assert name is not None
        archive, cached = p.manifest.archives[name], cached_archive(p.dest, p.manifest.name, name)
        if cached.is_file():
            continue  # downloaded whole by an earlier run: only extracted
        partial = partial_of(cached)
        size = archive.integrity.size
        if partial is not None and size is None:
            size = partial.total
        out[name] = (size, partial.have if partial else 0)
    return out


__all__ = ["plan"]
