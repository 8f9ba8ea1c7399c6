"""From a manifest to concrete entries: the lock's pins applied, folder entries listed file by file.

Also where each entry lands under a destination (its layout decides) and the
check of one entry on disk, which `plan`, `show` and the run share.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from . import download as dl
from .checking import check_file
from .discovery import resolve_manifest
from .download.settings import Settings
from .errors import CkptfetchError, DownloadError, ManifestError, UsageError
from .folders import Lister, expand, hub_lister, might_select, recorded_lister
from .layout import default_dest
from .layout import located as layout_located
from .lock import apply_lock, find_lock
from .manifest import FileEntry, Manifest
from .record import read_record
from .sources import Context
from .state import VerifiedCache, state_dir
from .status import LAYOUTS, Check, Layout

ManifestRef = str | os.PathLike[str] | Manifest
"""A manifest given by name, by path, or already loaded."""


def load(manifest: ManifestRef) -> Manifest:
    """The manifest `manifest` names (a name found by discovery, or a path), or itself when already loaded."""
    return manifest if isinstance(manifest, Manifest) else resolve_manifest(os.fspath(manifest))


def with_layout(m: Manifest, layout: str | None) -> Manifest:
    """`m` with its default layout replaced by `layout`; files that chose their own layout keep it."""
    if layout is None or layout == m.layout:
        return m
    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    files = {k: dataclasses.replace(e, layout=layout) if e.layout == m.layout else e for k, e in m.files.items()}
    return dataclasses.replace(m, files=files, layout=layout)


def destination(m: Manifest, dest: str | os.PathLike[str] | None, layout: str | None) -> Path:
    """`dest`, else the layout's framework cache dir (with --layout), else the manifest's root."""
    if dest is not None:
        return Path(dest)
    return (default_dest(layout) if layout else None) or Path(m.root)


def concrete(
    m: Manifest, root: Path, variants: Sequence[str] = (), only: Sequence[str] = (), *, online: bool = True,
    settings: Settings | None = None, unlisted: dict[str, str] | None = None,
) -> Manifest:
    """`m` with its lock file applied and its folder entries listed file by file.

    Folders come from the lock when there is one, else from the Hub (`online`),
    else from what a past `get` recorded in `root`. With `unlisted`, a folder
    that cannot be listed (gated or missing on the Hub; never fetched here,
    offline) stays a folder entry and its error is put there, so the other
    files are still fetched or checked.
    """
    lock = find_lock(m)
    if lock is not None:
        return apply_lock(m, lock)
    if not any(e.folder for e in m.files.values()):
        return m
    recorded = recorded_lister(read_record(root)["manifests"].get(m.name, {}).get("files", {}), m)

    def archive_folder(e: FileEntry) -> list[FileEntry]:
        try:
            return recorded(e)
        except ManifestError:
            return [e]  # its files are known once the archive is extracted

    if not online or not any(e.folder and not e.archive for e in m.files.values()):
        hub_folder = _tolerant(recorded, unlisted, ManifestError)
        return expand(m, lambda e: archive_folder(e) if e.archive else hub_folder(e))
    session = dl.make_session()  # only here: a run that lists nothing never imports requests
    try:
        hub_folder = _tolerant(hub_lister(Context(session, settings or Settings.from_env())), unlisted, DownloadError)
        return expand(m, lambda e: archive_folder(e) if e.archive else hub_folder(e),
                      wanted=lambda e: might_select(e, m, variants, only))
    finally:
        session.close()


def _tolerant(lister: Lister, unlisted: dict[str, str] | None, error: type[CkptfetchError]) -> Lister:
    """`lister`, except that with `unlisted` a folder it cannot list stays a folder entry, its error noted there."""
    if unlisted is None:
        return lister

    def tolerant(e: FileEntry) -> list[FileEntry]:
        try:
            return lister(e)
        except error as exc:
            unlisted[e.path] = str(exc)
            return [e]

    return tolerant


def located(e: FileEntry, root: Path) -> str | None:
    """Where entry `e` is under `root` (its layout decides); None when that is not known yet."""
    return e.path if e.layout == Layout.PLAIN else layout_located(e, root)


def cached_archive(dest: Path, manifest: str, archive: str) -> Path:
    """Where a run keeps a downloaded archive until every file it yields is in place."""
    return state_dir(dest) / "archives" / f"{manifest}--{archive}"


def check_entry(root: Path, e: FileEntry, cache: VerifiedCache | None) -> tuple[Check, str]:
    """(OK | FAILED | MISSING | FOLDER, detail) for one manifest entry, wherever its layout puts it."""
    if e.folder:
        return Check.FOLDER, "listed from the Hub when fetched"
    rel = located(e, root)
    if rel is None:
        return Check.MISSING, ""
    return check_file(root, rel, e.integrity.checks, e.integrity.size, cache)


__all__ = ["ManifestRef", "cached_archive", "check_entry", "concrete", "destination", "load", "located", "with_layout"]
