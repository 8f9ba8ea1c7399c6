"""`verify`: check every recorded (or listed) file where its layout put it, like `md5sum -c`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checking import check_cached, check_file
from .concrete import ManifestRef, concrete, load, located
from .discovery import resolve_manifest, shown_name
from .errors import ManifestError, UsageError
from .hashing import ALGORITHMS
from .layout import blob_of, own_files
from .lock import Lock, load_lock
from .manifest import Manifest, load_manifest
from .record import read_record
from .results import VerifyItem, VerifyResult
from .state import STATE_DIR, VerifiedCache
from .status import Check, Layout
from .threads import parallel


@dataclass
class Expected:
    """What `verify` checks for one file: pins, and where it is (`at`; for hf-cache also its blob).

    `verdict` is set when the answer is known without looking at the file (the manifest's pins changed since
    the record, or the file was added to the manifest since); `repair` is the command that fixes the file.
    """

    hashes: dict[str, str]
    size: int | None
    at: str | None
    blob: str | None = None
    verdict: tuple[Check, str] | None = None
    repair: str = ""


def expected_from_manifest(m: Manifest, root: Path) -> dict[str, Expected]:
    m = concrete(m, root, online=False)
    out = {}
    for e in m.files.values():
        if e.folder:  # a folder of an archive never extracted here
            out[e.path] = Expected({}, None, None, verdict=(Check.MISSING, "its files come out of its archive"))
            continue
        at = located(e, root)
        blob = blob_of(root, at) if at is not None and e.layout == Layout.HF_CACHE else None
        out[e.path] = Expected(dict(e.integrity.checks), e.integrity.size, at, blob)
    return out


def expected_from_record(root: Path, *, record_only: bool = False) -> dict[str, Expected]:
    """What the record says, checked against the manifest it came from when that is still found."""
    record = read_record(root)
    if not record["manifests"]:
        if not root.is_dir():
            raise UsageError(f"{root} does not exist; run `ckptfetch get NAME --dest {root}` first, or pass --manifest")
        raise UsageError(
            f"{root} has no {STATE_DIR}/record.json, so there is nothing to verify against; "
            "run `ckptfetch get` into it, or pass --manifest NAME"
        )
    expected: dict[str, Expected] = {}
    for name, info in record["manifests"].items():
        lock = _recorded_lock(name, info.get("source"))
        files = info.get("files", {})
        for rel, pins in files.items():
            hashes = {k: v for k, v in pins.items() if k in ALGORITHMS}
            size = pins.get("size")
            pin = lock.files.get(rel) if lock is not None else None
            if pin is not None:
                # The lock beside the manifest is enforced here too: its pins win over what was recorded.
                hashes["sha256"], size = pin.sha256, pin.size
            expected[rel] = Expected(hashes, size, pins.get("at") or rel, pins.get("blob"))
        m = None if record_only else _manifest_of(name, info.get("source"))
        if m is not None:
            compare_with_manifest(m, root, info, expected)
    return expected


def _manifest_of(name: str, source: Any) -> Manifest | None:
    """The manifest a record entry came from, if still found: at the same path, else by name."""
    if isinstance(source, str) and Path(source).is_file():
        return load_manifest(Path(source))
    try:
        return resolve_manifest(name)
    except ManifestError:
        return None  # gone: the record alone is all there is to check against


def repair_command(m: Manifest, root: Path, variants: Sequence[str]) -> str:
    """The command that fetches what `m` lists into `root` (the manifest by name when discovery finds it)."""
    return " ".join(["ckptfetch", "get", shown_name(m), *(f"--variant {shlex.quote(v)}" for v in variants),
                     "--dest", shlex.quote(str(root))])


def compare_with_manifest(m: Manifest, root: Path, info: dict[str, Any], expected: dict[str, Expected]) -> None:
    """Mark what changed in `m` since the record `info` was written: new pins FAILED, new files MISSING."""
    variants = [v for v in info.get("variants", []) if v in m.variants]
    repair = repair_command(m, root, variants)
    unlisted: dict[str, str] = {}
    m = concrete(m, root, online=False, unlisted=unlisted)
    recorded = info.get("files", {})
    for e in m.select(variants, info.get("only") or (), info.get("exclude") or ()):
        x = expected.get(e.path)
        if x is None or e.path in unlisted:
            why = ("its files are not known here: it was never fetched, or where it comes from changed since"
                   if e.folder else "added to the manifest since the last `get`")
            expected[e.path] = Expected(dict(e.integrity.checks), e.integrity.size, None, repair=repair,
                                        verdict=(Check.MISSING, why))
            continue
        x.repair = repair
        changed = _changed_pin(e.integrity.checks, e.integrity.size, recorded.get(e.path, {}))
        if changed is not None:
            x.verdict = (Check.FAILED, f"the manifest now expects {changed}")
        else:
            # Pins the record does not hold (a hash added to the manifest) are checked on the bytes.
            x.hashes = {**e.integrity.checks, **x.hashes}
            x.size = e.integrity.size if x.size is None else x.size


def _changed_pin(hashes: dict[str, str], size: int | None, recorded: dict[str, Any]) -> str | None:
    """How the manifest's pins contradict what the file was fetched and recorded for; None if they agree."""
    for algo, want in hashes.items():
        have = recorded.get(algo)
        if isinstance(have, str) and not (have.lower().startswith(want.lower()) or want.lower().startswith(have.lower())):
            return f"{algo} {want}, but the file here was fetched for {have}"
    have_size = recorded.get("size")
    if size is not None and isinstance(have_size, int) and have_size != size:
        return f"{size} bytes, but the file here has {have_size}"
    return None


def _recorded_lock(name: str, source: Any) -> Lock | None:
    """The lock file beside a recorded manifest, if it is still there."""
    if not isinstance(source, str):
        return None
    path = Path(source).with_name(f"{name}.lock.yaml")
    return load_lock(path) if path.is_file() else None


def _check_all(root: Path, expected: dict[str, Expected], full: bool) -> list[VerifyItem]:
    """One item per expected file; unchanged files cost a stat and a cache look-up, the rest are hashed in parallel."""
    cache = VerifiedCache(root) if root.is_dir() else None

    def link_problem(x: Expected) -> str | None:
        if x.blob is None or x.at is None or os.path.realpath(root / x.at) == os.path.realpath(root / x.blob):
            return None
        return f"{x.at} does not lead to {x.blob}"

    def settled(rel: str) -> VerifyItem | None:
        x = expected[rel]
        if x.verdict is not None:
            return VerifyItem(rel, *x.verdict, repair=x.repair)
        if x.at is None:
            return VerifyItem(rel, Check.MISSING, "not in the cache's refs", repair=x.repair)
        quick = check_cached(root, x.at, x.hashes, x.size, None if full else cache)
        if quick is not None and quick[0] == Check.OK and (problem := link_problem(x)) is not None:
            quick = (Check.FAILED, problem)
        return VerifyItem(rel, *quick, repair=x.repair) if quick is not None else None

    def hashed(rel: str) -> VerifyItem:
        x = expected[rel]
        assert x.at is not None
        status, detail = check_file(root, x.at, x.hashes, x.size, cache, trust_cache=not full)
        if status == Check.OK and (problem := link_problem(x)):
            status, detail = Check.FAILED, problem
        return VerifyItem(rel, status, detail, repair=x.repair)

    try:
        quick = {rel: settled(rel) for rel in sorted(expected)}
        todo = [r for r, v in quick.items() if v is None]
        done = dict(zip(todo, parallel(hashed, todo), strict=True))
        return [quick[rel] or done[rel] for rel in sorted(expected)]
    finally:
        if cache is not None:
            cache.close()


def _unlisted(root: Path, expected: dict[str, Expected]) -> list[VerifyItem]:
    """Files under `root` that nothing lists (what the cache layouts keep for themselves aside)."""
    listed = {x.at or rel for rel, x in expected.items()} | {x.blob for x in expected.values() if x.blob}
    repos = {x.at.split("/", 1)[0] for x in expected.values() if x.at and "/snapshots/" in x.at}
    listed |= own_files(root, repos)
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == STATE_DIR or rel.startswith(STATE_DIR + "/") or path.is_dir():
            continue
        if rel not in listed:
            out.append(VerifyItem(rel, Check.UNLISTED, "no manifest lists this file"))
    return out


def verify(
    dest: str | os.PathLike[str] | None = None,
    *,
    manifests: Sequence[ManifestRef] = (),
    strict: bool = False,
    full: bool = False,
    record_only: bool = False,
) -> VerifyResult:
    """Check every file recorded in DIR/.ckptfetch/ (or listed by `manifests`).

    Like `md5sum -c`: each file is OK, FAILED or MISSING; with `strict`, files
    under DIR that nothing lists are UNLISTED. Unchanged files verified before
    are not hashed again unless `full`. Files are checked where their layout
    put them; an hf-cache snapshot entry must also lead to its recorded blob.
    A lock file beside a manifest is enforced. Unless `record_only`, the
    record is compared with the manifest it came from (at the same path, else
    by name): a file whose pins changed since is FAILED, a file added since
    is MISSING.
    """
    loaded = [load(m) for m in manifests]
    root = Path(dest) if dest is not None else Path(loaded[0].root) if loaded else Path("models")
    expected: dict[str, Expected] = {}
    for m in loaded:
        expected.update(expected_from_manifest(m, root))
    if not loaded:
        expected = expected_from_record(root, record_only=record_only)
    items = _check_all(root, expected, full)
    if strict and root.is_dir():
        items += _unlisted(root, expected)
    return VerifyResult(root, items)


__all__ = ["Expected", "expected_from_manifest", "expected_from_record", "verify"]
