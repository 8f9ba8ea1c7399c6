"""`mirror push`: the verified files of a manifest (or of an install DIR) onto a hashed mirror, and their lock.

A manifest is fetched first, exactly as `get` would fetch it into its
destination (files already there and verified are not downloaded again);
every selected file then goes to `ROOT/sha256/<hex>`. An install DIR is pushed
from its record: each file a `get` installed is verified against what the
record pins before it is sent, and nothing is fetched. Either way an object
already on the mirror is not sent again (`mirrortargets.py`), and
`ROOT/manifests/NAME.lock.yaml` pins each pushed file by sha256 and size (and
a Hub file's commit), merged with what earlier pushes of NAME left there and
rewritten only when it changes: a second push sends nothing at all.

A push where some file could not be fetched or verified sends what is good
but leaves the lock alone, so the mirror's lock never names a file the mirror
lacks. A folder entry's files are written to the lock only when the push took
the whole folder (no `--only` or `--exclude` behind the record); a partial
folder would read as complete at the other site.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checking import check_file, file_digests
from .concrete import ManifestRef
from .download import Settings
from .errors import ManifestError, UsageError
from .fetching import fetch
from .hashedmirror import lock_url
from .hashing import ALGORITHMS, hash_file
from .lock import Pin, load_lock, render
from .manifest import Manifest
from .mirrortargets import Target, Upload, open_target
from .progress import NullReporter, Reporter
from .record import read_record
from .state import RECORD, STATE_DIR, VerifiedCache
from .status import Check, Outcome, Pushed
from .threads import parallel
from .urls import Mirror, hashed_root, redact

_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})/")
LOCK_HEAD = ("# Lock file of manifest {name} on a hashed mirror: each file is at sha256/<hex> beside manifests/.\n"
             "# Written by `ckptfetch mirror push`; `get --hashed-mirror` reads it for a manifest without a lock.\n")


@dataclass(frozen=True)
class _Item:
    """One verified file to push: whose it is, where it is, what it is."""

    manifest: str
    key: str
    path: Path
    sha256: str
    size: int
    commit: str | None = None
    parent: str | None = None  # the folder entry it belongs to
    in_lock: bool = True


@dataclass
class PushedFile:
    path: str
    manifest: str
    sha256: str
    size: int
    status: Pushed
    error: str | None = None


@dataclass
class PushResult:
    """What `mirror push` did: each file's fate, each lock (written or unchanged), and what could not be pushed."""

    target: str
    files: list[PushedFile]
    locks: dict[str, bool] = field(default_factory=dict)  # manifest -> lock written (False: it already said so)
    problems: list[str] = field(default_factory=list)  # files neither fetched nor verified, and why

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.status != Pushed.FAILED for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "target": self.target, "problems": self.problems,
                "locks": [{"manifest": n, "at": lock_url(self.target, n), "written": w} for n, w in self.locks.items()],
                "files": [{"path": f.path, "manifest": f.manifest, "sha256": f.sha256, "size": f.size,
                           "status": str(f.status), **({"error": f.error} if f.error else {})} for f in self.files]}


def is_install_dir(source: ManifestRef) -> bool:
    """Whether `source` is a destination a `get` installed into (it has a record), rather than a manifest."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return False
    if not (Path(source) / STATE_DIR / RECORD).is_file():
        raise UsageError(f"{source} is a folder without a ckptfetch record; push a manifest by name, or `ckptfetch get` "
                         "into the folder first")
    return True


def push(source: ManifestRef, target: str, *, dest: str | os.PathLike[str] | None = None,
         variants: Sequence[str] = (), mirrors: Sequence[Mirror] | None = None,
         hashed_mirrors: Sequence[str] | None = None, offline: bool | None = None, jobs: int = 8,
         reporter: Reporter | None = None, settings: Settings | None = None) -> PushResult:
    """Push the verified files of `source` (a manifest, fetched into `dest` first; or an install DIR) to `target`.

    `target` is `s3://BUCKET/PREFIX` or a folder. The other options are `fetch`'s, for the manifest's files.
    """
    root = hashed_root(target)
    mirror = open_target(root, jobs)
    reporter = reporter or NullReporter()
    if is_install_dir(source) and not isinstance(source, Manifest):
        if dest is not None or variants:
            raise UsageError("--dest and --variant choose what to fetch from a manifest; a DIR pushes its record")
        items, problems = from_dir(Path(source))
    else:
        items, problems = from_manifest(source, dest, variants=variants, mirrors=mirrors, hashed=hashed_mirrors,
                                        offline=offline, jobs=jobs, reporter=reporter, settings=settings)
    files = send(mirror, items, jobs, reporter)
    result = PushResult(redact(mirror.shown), files, problems=problems)
    if result.ok:
        result.locks = write_locks(mirror, items)
    return result


def from_manifest(manifest: ManifestRef, dest: str | os.PathLike[str] | None, *, variants: Sequence[str],
                  mirrors: Sequence[Mirror] | None, hashed: Sequence[str] | None, offline: bool | None, jobs: int,
                  reporter: Reporter, settings: Settings | None) -> tuple[list[_Item], list[str]]:
    """The manifest's selected files, fetched into `dest` as `get` would (what is there and verified stays)."""
    result = fetch(manifest, dest, variants=variants, mirrors=mirrors, hashed_mirrors=hashed, offline=offline,
                   jobs=jobs, reporter=reporter, settings=settings, algorithms=("sha256",))
    recorded = read_record(result.dest)["manifests"].get(result.manifest, {}).get("files", {})
    items, problems = [], []
    for o in result.files:
        if o.status not in (Outcome.PRESENT, Outcome.FETCHED):
            problems.append(o.error or f"{o.path} is {o.status}")
            continue
        path = result.dest / (o.at or o.path)
        sha = o.digests.get("sha256") or hash_file(path, ["sha256"])["sha256"]
        pins = recorded.get(o.path, {})
        items.append(_Item(result.manifest, o.path, path, sha, path.stat().st_size, _commit(pins, o.at),
                           pins.get("parent")))
    return items, problems


def from_dir(dest: Path) -> tuple[list[_Item], list[str]]:
    """Every file the record of `dest` lists, verified against its recorded pins (and its sha256 learned)."""
    record = read_record(dest)
    cache = VerifiedCache(dest)
    items: list[_Item] = []
    problems: list[str] = []
    try:
        for name, info in record["manifests"].items():
            partial = bool(info.get("only") or info.get("exclude"))

            def check(entry: tuple[str, dict[str, Any]], name: str = name, partial: bool = partial) -> _Item | str:
                key, pins = entry
                at = pins.get("at") or key
                hashes = {k: v for k, v in pins.items() if k in ALGORITHMS}
                # Every digest in one read (the cache keeps the set it is given): the pins' and the sha256.
                here = _size(dest / at)
                if here is not None and pins.get("size") in (None, here):
                    file_digests(dest, at, list(dict.fromkeys([*hashes, "sha256"])), cache)
                status, detail = check_file(dest, at, hashes, pins.get("size"), cache)
                digests = file_digests(dest, at, ["sha256"], cache) if status == Check.OK else None
                if digests is None:
                    return f"{key}: {status}{f' ({detail})' if detail else ''}; run `ckptfetch get` into {dest} again"
                parent = pins.get("parent")
                return _Item(name, key, dest / at, digests["sha256"], (dest / at).stat().st_size, _commit(pins, at),
                             parent, in_lock=not (partial and parent))

            for found in parallel(check, list(info.get("files", {}).items())):
                (problems if isinstance(found, str) else items).append(found)  # type: ignore[arg-type]
    finally:
        cache.close()
    return items, problems


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _commit(pins: dict[str, Any], at: str | None) -> str | None:
    """A Hub file's commit: recorded, else the one its hf-cache snapshot path names (a run that found it present)."""
    found = _SNAPSHOT.search(f"/{at}") if at and pins.get("blob") else None
    return pins.get("commit") or (found.group(1) if found else None)


def send(mirror: Target, items: Sequence[_Item], jobs: int, reporter: Reporter) -> list[PushedFile]:
    """HEAD every object (side by side), upload the missing ones; identical files are one object."""
    unique = list({i.sha256: i for i in items}.values())
    there = parallel(lambda i: mirror.has(i.sha256, i.size), unique, workers=max(2, min(16, jobs, len(unique))))
    missing = [Upload(i.path, i.sha256, i.size, i.key) for i, here in zip(unique, there, strict=True) if not here]
    errors = mirror.upload(missing, reporter) if missing else {}
    sent = {u.sha256 for u in missing}
    return [PushedFile(i.key, i.manifest, i.sha256, i.size,
                       Pushed.FAILED if i.sha256 in errors else Pushed.UPLOADED if i.sha256 in sent else Pushed.PRESENT,
                       errors.get(i.sha256)) for i in items]


def write_locks(mirror: Target, items: Sequence[_Item]) -> dict[str, bool]:
    """Each manifest's lock on the mirror, merged with the one there; written only when it changes."""
    out: dict[str, bool] = {}
    for name in dict.fromkeys(i.manifest for i in items):
        mine = [i for i in items if i.manifest == name]
        rel = f"manifests/{name}.lock.yaml"
        old_text = mirror.read(rel)
        old = _parse(old_text, name)
        # A folder pushed whole replaces what the lock said about it (files it no longer has go).
        folders = {i.parent for i in mine if i.parent and i.in_lock}
        pins = {k: p for k, p in old.items() if not any(k.startswith(f) for f in folders)}
        pins.update((i.key, Pin(i.sha256, i.size, i.commit)) for i in mine if i.in_lock)
        text = LOCK_HEAD.format(name=name) + _body(render(name, dict(sorted(pins.items()))))
        if text != old_text:
            mirror.write(rel, text)
        out[name] = text != old_text
    return out


def _body(text: str) -> str:
    """A rendered lock without its header comment (the mirror's lock has its own)."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def _parse(text: str | None, name: str) -> dict[str, Pin]:
    """The pins of a lock already on the mirror; one that cannot be read is replaced."""
    if not text:
        return {}
    with tempfile.TemporaryDirectory(prefix="ckptfetch-push-") as tmp:
        path = Path(tmp) / f"{name}.lock.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            lock = load_lock(path)
        except ManifestError:
            return {}
    return dict(lock.files) if lock.manifest == name else {}


__all__ = ["PushResult", "PushedFile", "from_dir", "from_manifest", "is_install_dir", "push", "send", "write_locks"]
