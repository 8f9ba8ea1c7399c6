"""Writing a lock file (`ckptfetch lock NAME`): pins from declared hashes, else from the bytes, fetched by a run."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import download as dl
from .concrete import load
from .download.settings import Settings
from .errors import DownloadError, UsageError
from .fetching import fetch
from .folders import expand, hub_lister
from .layout import hub_file
from .lock import Pin, lock_path, render, write
from .manifest import FileEntry, Manifest
from .progress import Reporter
from .sources import Context, resolve
from .sources import huggingface as hf
from .sourcing import mirror_form
from .status import Layout, Outcome
from .urls import Mirror, candidates, env_mirrors, env_offline


@dataclass
class LockResult:
    path: Path
    changed: bool
    files: dict[str, Pin]
    from_metadata: list[str]  # pinned from the Hub's (or the manifest's) declared sha256, no download
    from_bytes: list[str]  # downloaded and hashed
    skipped: list[str]  # manual files without a sha256 and size in the manifest


def make_lock(
    manifest: str | os.PathLike[str] | Manifest,
    output: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[Mirror] | None = None,
    jobs: int = 4,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    offline: bool | None = None,
) -> LockResult:
    """Pin every file of `manifest` (folders listed file by file) and write the lock file.

    A file whose sha256 and size are already known (the Hub declares them for
    LFS files; or the manifest pins them) is not downloaded; any other is
    fetched into a temporary folder through the engine and hashed as it streams.
    `offline` (default: CKPTFETCH_OFFLINE) asks no original host, the Hub
    included: every file is hashed from the bytes its mirror serves.
    """
    m = load(manifest)
    path = Path(output) if output is not None else lock_path(m)
    mirrors = list(mirrors) if mirrors is not None else env_mirrors()
    settings = settings or Settings.from_env()
    offline = env_offline() if offline is None else offline
    session = dl.make_session()
    try:
        ctx = Context(session, settings)
        hub = hub_lister(ctx)

        def lister(e: FileEntry) -> list[FileEntry]:
            if e.archive:  # listed by extracting it, below, with the files that need their bytes
                return [e]
            if offline:
                raise UsageError(f"{e.path}: a Hub folder cannot be listed offline; lock {m.name} where the Hub "
                                 "is reachable (a mirror serves files, not the Hub's folder listings)")
            return hub(e)

        m = expand(m, lister)
        known = _pins_from_metadata(m, mirrors, ctx, offline)
    finally:
        session.close()
    pins = known.pins
    if known.need_bytes:
        pins = _pins_from_bytes(m, known.need_bytes, pins, mirrors, jobs, reporter, settings, offline)
    text = render(m.name, pins)
    changed = write(path, text)
    return LockResult(path, changed, pins, known.from_meta, [e.path for e in known.need_bytes], known.skipped)


@dataclass
class _Known:
    pins: dict[str, Pin]
    need_bytes: list[FileEntry]
    from_meta: list[str]
    skipped: list[str]


def _pins_from_metadata(m: Manifest, mirrors: list[Mirror], ctx: Context, offline: bool) -> _Known:
    """Pins the manifest or the Hub's metadata already give; the other files are listed as needing their bytes."""
    known = _Known({}, [], [], [])
    for key, e in m.files.items():
        sha, size, commit = e.integrity.hashes.get("sha256"), e.integrity.size, e.commit
        f = hub_file(e)
        if f is not None and commit is None and hf.COMMIT_RE.match(f.revision):
            commit = f.revision
        tries = candidates(e.urls, mirrors, offline=offline, match_as=mirror_form) if e.urls else []
        first = tries[0] if tries else ""
        # Ask the Hub only when it is what `get` would ask first; behind a plain mirror, hash the bytes.
        if f is not None and hf.parse(first) and (commit is None or sha is None or size is None):
            found = resolve(first, ctx)
            declared = found.hashes.get("sha256")
            if sha is not None and declared is not None and sha != declared:
                raise DownloadError(f"{key}: the Hub declares sha256 {declared} but the manifest pins {sha}; "
                                    "fix the manifest or the URL")
            sha = sha or declared
            size = size if size is not None else found.size
            commit = commit or found.meta.get("commit")
        if e.manual is not None and (sha is None or size is None):
            known.skipped.append(key)
        elif sha is not None and size is not None and not e.folder:
            known.pins[key] = Pin(sha, size, commit)
            known.from_meta.append(key)
        else:
            known.need_bytes.append(dataclasses.replace(e, commit=commit))
            known.pins[key] = Pin("0" * 64, 0, commit)  # keeps the manifest's order; filled in below
    return known


def _pins_from_bytes(m: Manifest, need_bytes: list[FileEntry], pins: dict[str, Pin], mirrors: list[Mirror],
                     jobs: int, reporter: Reporter | None, settings: Settings, offline: bool) -> dict[str, Pin]:
    """Fetch `need_bytes` to a temporary folder, hashing as they stream; a folder's place goes to its files."""
    with tempfile.TemporaryDirectory(prefix="ckptfetch-lock-") as tmp:
        # A copy of the manifest placed where no lock file is, listing only the files to hash.
        sub = dataclasses.replace(m, source=Path(tmp) / f"{m.name}.yaml",
                                  files={e.path: dataclasses.replace(e, layout=Layout.PLAIN) for e in need_bytes},
                                  variants={})
        result = fetch(sub, Path(tmp) / "files", mirrors=mirrors, jobs=jobs, reporter=reporter, settings=settings,
                       algorithms=("sha256",), offline=offline)
    failed = [f for f in result.files if f.status != Outcome.FETCHED]
    if failed:
        raise DownloadError(f"cannot lock {m.name}: " + " ".join(f.error or f.path for f in failed))
    got = {o.path: o for o in result.files}
    out: dict[str, Pin] = {}
    for key, old in pins.items():
        if key.endswith("/"):  # a folder of an archive: its files, in order
            for child in sorted(k for k in got if k.startswith(key)):
                out[child] = Pin(got[child].digests["sha256"], got[child].size or 0)
            continue
        o = got.get(key)
        out[key] = old if o is None else Pin(o.digests["sha256"], o.size or 0, old.commit or o.meta.get("commit"))
    return out


__all__ = ["LockResult", "make_lock"]
