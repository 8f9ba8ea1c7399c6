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
from .layout import blob_of
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


def update_record(dest: Path, manifest: str, source: str, variants: Iterable[str], files: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge installed `files` of `manifest` into the record, atomically.

    Nothing is written (and no lock taken) when the record already says it all,
    so a run that finds everything in place also works on a read-only DIR.
    """
    current = read_record(dest)
    entry = current["manifests"].get(manifest)
    if (entry is not None and entry.get("source") == source and set(variants) <= set(entry.get("variants", []))
            and all(entry.get("files", {}).get(k) == dict(v) for k, v in files.items())):
        return
    with locked(dest, "record"):
        data = read_record(dest)
        entry = data["manifests"].setdefault(manifest, {"source": source, "variants": [], "files": {}})
        entry["source"] = source
        entry["variants"] = sorted(set(entry.get("variants", [])) | set(variants))
        entry.setdefault("files", {}).update({k: dict(v) for k, v in files.items()})
        path = state_dir(dest) / RECORD
        tmp = path.with_name(f"{RECORD}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise unwritable(path.parent, exc) from None



def record_outcomes(p: Plan, outcomes: Iterable[FileOutcome]) -> None:
    """Write what a run installed (and what it did not) into DIR/.ckptfetch/record.json."""
    files: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        # Every selected file is recorded, fetched or not, so `verify DIR` reports what a failed run left MISSING.
        e = p.manifest.files[o.path]
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
        files[o.path] = pins
    if files:
        _testhooks.point("record")
        update_record(p.dest, p.manifest.name, str(p.manifest.source), p.variants, files)


__all__ = ["read_record", "record_outcomes", "update_record"]
