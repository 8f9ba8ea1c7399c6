"""`plan`: which selected files are present and correct, and what `get` will do with the rest."""

from __future__ import annotations

import os

from .checking import parallel
from .concrete import ManifestRef, check_entry, concrete, destination, load, with_layout
from .download import Settings
from .errors import UsageError
from .layout import check as check_layouts
from .manifest import FileEntry
from .results import Plan, PlanItem
from .reuse import Reuse
from .state import VerifiedCache
from .status import Action, Check


def plan(
    manifest: ManifestRef,
    dest: str | os.PathLike[str] | None = None,
    *,
    variants: tuple[str, ...] | list[str] = (),
    only: tuple[str, ...] | list[str] = (),
    force: bool = False,
    layout: str | None = None,
    settings: Settings | None = None,
    reuse: Reuse | None = None,
) -> Plan:
    """What `fetch` would do: which selected files are present and correct.

    Folder entries are listed through the Hub (or taken from the lock file), so
    the plan is per file. `layout` overrides the manifest's default layout.
    With `reuse`, a file to fetch says where on this machine its bytes are
    expected from (not yet verified: the run verifies before placing).
    """
    m = with_layout(load(manifest), layout)
    root = destination(m, dest, layout)
    unlisted: dict[str, str] = {}
    m = concrete(m, root, variants, only, settings=settings, unlisted=unlisted)
    entries = m.select(variants, only)
    if not entries:
        raise UsageError(f"the selection matches no file of manifest {m.name!r}; check --only / --variant")
    check_layouts(entries)
    cache = VerifiedCache(root) if root.is_dir() else None

    def decide(e: FileEntry) -> PlanItem:
        if e.path in unlisted:
            return PlanItem(e, Action.FAILED, unlisted[e.path])
        status, _ = check_entry(root, e, cache)
        if status == Check.OK and not force:
            return PlanItem(e, Action.PRESENT)
        if e.manual is not None:
            return PlanItem(e, Action.MANUAL, "missing" if status == Check.MISSING else "corrupt")
        reason = "forced" if status == Check.OK else "missing" if status == Check.MISSING else "corrupt"
        found = reuse.plan_origin(e) if reuse is not None and not force else None
        if found is not None:
            return PlanItem(e, Action.FETCH, reason, found.origin, str(found.path))
        return PlanItem(e, Action.FETCH, reason)

    try:
        items = parallel(decide, entries)
    finally:
        if cache is not None:
            cache.close()
    return Plan(m, root, list(variants), items)


__all__ = ["plan"]
