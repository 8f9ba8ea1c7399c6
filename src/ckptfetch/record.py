"""The install record, DIR/.ckptfetch/record.json: what `get` selected and installed, for `verify DIR`.

One entry per manifest: where the manifest was (`source`), the variants asked
for, and every selected file, fetched or not, with its pins (the manifest's,
plus the sha256 verified on the way, the size on disk, where the layout put
it, an hf-cache blob, the folder entry it came from, the Hub commit), so a
later `verify DIR` reports what a failed run left MISSING.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _testhooks
from .errors import CkptfetchError
from .layout import blob_of
from .manifest import FileEntry
from .proclock import locked
from .results import FileOutcome, Plan
from .state import RECORD, state_dir, unwritable
from .status import Layout, Outcome


def read_record(dest: Path) -> dict[str, Any]:
    """The install record, or an empty one."""
    path = state_dir(dest) / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": 1, "manifests": {}}
    if not isinstance(data, dict) or not isinstance(data.get("manifests"), dict):
        return {"version": 1, "manifests": {}}
    return data


def fingerprint(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a manifest file: `verify`'s fast path trusts the record only while it is unchanged."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _merged_only(old: list[str] | None, new: list[str]) -> list[str] | None:
    """The `--only` globs covering both runs; None (everything) as soon as one run took everything."""
    if old is None or not new:
        return None
    return sorted(set(old) | set(new))


def _merged_exclude(old: list[str] | None, new: list[str]) -> list[str] | None:
    """The `--exclude` selectors both runs left out (what one run took is in); None when nothing is."""
    both = sorted(set(old or ()) & set(new))
    return both or None


def update_record(dest: Path, manifest: str, source: str, variants: Iterable[str],
                  files: Mapping[str, Mapping[str, Any]], *, only: Iterable[str] = (), exclude: Iterable[str] = (),
                  manifest_stat: list[int] | None = None) -> None:
    """Merge installed `files` of `manifest` into the record, atomically.

    Nothing is written (and no lock taken) when the record already says it all,
    so a run that finds everything in place also works on a read-only DIR.
    """
    only, exclude = sorted(only), sorted(exclude)
    current = read_record(dest)
    entry = current["manifests"].get(manifest)
    says_it_all = (entry is not None and entry.get("source") == source
                   and set(variants) <= set(entry.get("variants", []))
                   and _merged_only(entry.get("only"), only) == entry.get("only")
                   and _merged_exclude(entry.get("exclude"), exclude) == entry.get("exclude")
                   and all(entry.get("files", {}).get(k) == dict(v) for k, v in files.items()))
    if says_it_all and entry is not None and entry.get("manifest_stat") == manifest_stat:
        return
    try:
        _write(dest, manifest, source, variants, files, only, exclude, manifest_stat)
    except CkptfetchError:
        if not says_it_all:
            raise
        # Only the manifest's mtime moved (a checkout): the record still says it all, so a read-only DIR
        # stays usable; `verify` then compares with the manifest instead of trusting its fast path.


def _write(dest: Path, manifest: str, source: str, variants: Iterable[str],
           files: Mapping[str, Mapping[str, Any]], only: list[str], exclude: list[str],
           manifest_stat: list[int] | None) -> None:
    with locked(dest, "record"):
        data = read_record(dest)
        entry = data["manifests"].get(manifest)
        merged = (only or None) if entry is None else _merged_only(entry.get("only"), only)
        excluded = (exclude or None) if entry is None else _merged_exclude(entry.get("exclude"), exclude)
        entry = data["manifests"].setdefault(manifest, {"source": source, "variants": [], "files": {}})
        entry["source"] = source
        entry["variants"] = sorted(set(entry.get("variants", [])) | set(variants))
        for key, value in (("only", merged), ("exclude", excluded)):
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        entry["manifest_stat"] = manifest_stat
        entry.setdefault("files", {}).update({k: dict(v) for k, v in files.items()})
        path = state_dir(dest) / RECORD
        tmp = path.with_name(f"{RECORD}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise unwritable(path.parent, exc) from None


def record_outcomes(p: Plan, outcomes: Iterable[FileOutcome], children: Mapping[str, FileEntry] | None = None) -> None:
    """Write what a run installed (and what it did not) into DIR/.ckptfetch/record.json.

    `children` are the entries of files a folder of an archive yielded; a folder that failed as a whole is not
    recorded (its files are unknown).
    """
    files: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        # Every selected file is recorded, fetched or not, so `verify DIR` reports what a failed run left MISSING.
        e = (children or {}).get(o.path) or p.manifest.files[o.path]
        if e.folder:
            continue
        # The manifest's pins, plus the sha256 verified on the way (e.g. the one the Hub declared).
        pins: dict[str, Any] = dict(e.integrity.checks)
        at = o.at or o.path
        if o.status in (Outcome.PRESENT, Outcome.FETCHED):
            pins.update({k: v for k, v in o.digests.items() if k == "sha256"})
            try:
                pins["size"] = (p.dest / at).stat().st_size
            except OSError:
                pass
        elif e.integrity.size is not None:
            pins["size"] = e.integrity.size
        if at != o.path:
            pins["at"] = at  # where the layout put it; `verify` checks it there
        if e.layout == Layout.HF_CACHE and (blob := blob_of(p.dest, at)):
            pins["blob"] = blob
        if e.parent:
            pins["parent"] = e.parent
        commit = e.commit or o.meta.get("commit")
        if commit:
            pins["commit"] = commit
        if "from" in o.meta:
            pins["from"] = o.meta["from"]  # which archive and folder the file came out of
        files[o.path] = pins
    if files:
        _testhooks.point("record")
        update_record(p.dest, p.manifest.name, str(p.manifest.source), p.variants, files, only=p.only,
                      exclude=p.exclude, manifest_stat=fingerprint(p.manifest.source))


__all__ = ["fingerprint", "read_record", "record_outcomes", "update_record"]
