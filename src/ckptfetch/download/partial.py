"""The partial file beside a target and its JSON sidecar: what a later run may resume.

`TARGET.ckptfetch-partial` holds the bytes received so far;
`TARGET.ckptfetch-partial.json` remembers the URL (or the request's key), the
validator (ETag or Last-Modified), the total size, the pins the bytes are for
and, for a segmented download, each piece's `[start, end, pos]`. A partial
without a sidecar is never resumed (nor removed by the clean-up of a finished
target: it may be an archive member another process is extracting). Nothing
here talks HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import _testhooks, compat
from ..errors import DownloadError
from ..urls import redact

PARTIAL_SUFFIX = ".ckptfetch-partial"
SIDECAR_SUFFIX = PARTIAL_SUFFIX + ".json"

fsync_dir = compat.fsync_dir


def partial_paths(target: Path) -> tuple[Path, Path]:
    """The partial file and its sidecar for `target`."""
    return target.with_name(target.name + PARTIAL_SUFFIX), target.with_name(target.name + SIDECAR_SUFFIX)


def sidecar_tmp(sidecar: Path) -> Path:
    """The temporary file a sidecar is saved through (a kill during a save leaves it)."""
    return sidecar.with_name(sidecar.name + ".tmp")


def leftovers(target: Path) -> list[Path]:
    """A download's sidecar beside `target` and the partial it describes.

    A partial without a sidecar is not touched: it may be a member that another
    process is extracting under the archive's lock, not this file's.
    """
    part, sidecar = partial_paths(target)
    tmp = sidecar_tmp(sidecar)
    if not (sidecar.exists() or tmp.exists()):
        return []
    return [part, sidecar, tmp]


def drop_leftovers(target: Path) -> None:
    """Remove what a run killed between its rename and its clean-up left beside a finished target."""
    for p in leftovers(target):
        p.unlink(missing_ok=True)


def discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def url_key(url: str) -> str:
    """The URL as the sidecar stores it: readable, but a credential or token in it is only a digest."""
    shown = redact(url)
    if shown == url:
        return url
    return f"{shown}#sha256={hashlib.sha256(url.encode()).hexdigest()[:32]}"


@dataclass
class Sidecar:
    url: str
    validator: str | None = None
    total: int | None = None
    expect: dict[str, object] = field(default_factory=dict)
    pieces: list[list[int]] | None = None  # [start, end, pos] of a segmented download

    @classmethod
    def load(cls, path: Path) -> Sidecar | None:
        try:
            data = json.loads(path.read_text())
            pieces = data.get("pieces")
            if pieces is not None and not (
                isinstance(data.get("total"), int)
                and all(isinstance(p, list) and len(p) == 3 and p[0] <= p[2] <= p[1] for p in pieces)
            ):
                return None
            return cls(data["url"], data.get("validator"), data.get("total"), data.get("expect", {}), pieces)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        # One fixed name: only the job's own thread saves (the file lock keeps other processes
        # out), and a temporary file left by a kill is overwritten or removed with the sidecar.
        tmp = sidecar_tmp(path)
        doc: dict[str, object] = {"url": url_key(self.url), "validator": self.validator, "total": self.total, "expect": self.expect}
        if self.pieces is not None:
            doc["pieces"] = self.pieces
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no stray temporary file in DIR
            raise


class Partial:
    """The partial file of one target: resuming it, saving its sidecar, and the final rename."""

    def __init__(self, target: Path, key: str, expect: dict[str, object], known_validator: str | None) -> None:
        self.target = target
        self.path, self.sidecar = partial_paths(target)
        self.key = key  # what the sidecar remembers
        self.expect = expect  # the pins the bytes are for: other pins make the partial useless
        self.known_validator = known_validator  # the source's word on the current version, if it has one

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def resumable(self) -> tuple[int, Sidecar | None]:
        """How many bytes of the partial can be kept, and its sidecar; a useless partial is removed."""
        side = Sidecar.load(self.sidecar)
        have = self.size()
        changed = bool(side and side.validator and self.known_validator and side.validator != self.known_validator)
        if side is None or side.url != url_key(self.key) or side.expect != self.expect or changed:
            if have or side is not None:
                discard(self.path, self.sidecar)
            return 0, None
        if side.total is not None and have > side.total:
            discard(self.path, self.sidecar)
            return 0, None
        return have, side

    def save(self, validator: str | None, total: int | None, pieces: list[list[int]] | None = None) -> None:
        Sidecar(self.key, validator, total, self.expect, pieces).save(self.sidecar)

    def forget(self) -> None:
        """Drop the partial and its sidecar: the next attempt starts from byte 0."""
        discard(self.path, self.sidecar, sidecar_tmp(self.sidecar))

    def drop_bytes(self) -> None:
        """Drop the partial only (its sidecar is about to be written anew)."""
        discard(self.path)

    def commit(self, sync_dir: bool) -> None:
        """Rename the verified partial onto the target, then remove the sidecar."""
        _testhooks.point("download-before-rename")
        os.replace(self.path, self.target)
        _testhooks.point("download-after-rename")
        if sync_dir:
            fsync_dir(self.target.parent)
        discard(self.sidecar, sidecar_tmp(self.sidecar))

    def write_failed(self, label: str, exc: OSError) -> DownloadError:
        """A local write failed (disk full, read-only, permissions): say what and what to do.

        The partial and its sidecar are kept on purpose, so that once there is
        room the next run resumes instead of starting again.
        """
        try:
            kept = self.path.stat().st_size if self.sidecar.exists() else 0
        except OSError:
            kept = 0
        where = (f" The partial download ({kept} bytes) was kept at {self.path} so the next run resumes; "
                 "delete it to get the space back.") if kept else ""
        return DownloadError(
            f"{label}: cannot write {self.path}: {exc.strerror or exc}. "
            f"Free some space (or make the folder writable), or choose another --dest, then run the same command again; "
            f"files already in place were not touched.{where}"
        )

    def check_space(self, label: str, needed: int, reclaim: bool) -> None:
        """Fail before downloading what the destination has no room for.

        With `reclaim`, the old partial is about to be replaced: its space counts as free.
        """
        try:
            old = compat.allocated_bytes(self.path.stat()) if reclaim and self.path.exists() else 0
            free = compat.free_bytes(self.target.parent) + old
        except OSError:
            return
        if needed > free:
            raise DownloadError(
                f"{label}: needs {needed} more bytes but {self.target.parent} has only {free} bytes free "
                "(no space left on device). Free some space or choose another --dest, then run the same command "
                "again; nothing was downloaded and files already in place were not touched."
            )


@dataclass(frozen=True)
class Resumable:
    """A partial download waiting beside its target, for a later run to resume."""

    have: int  # bytes here
    total: int | None  # the whole file, when the partial's sidecar knows it


def partial_of(target: Path) -> Resumable | None:
    """What a killed or failed download left for `target`, if anything with a sidecar (so it can be resumed)."""
    part, side = partial_paths(target)
    sidecar = Sidecar.load(side)
    try:
        have = part.stat().st_size
    except OSError:
        return None
    if sidecar is None:
        return None
    if sidecar.pieces is not None:
        have = sum(p[2] - p[0] for p in sidecar.pieces)
    return Resumable(have, sidecar.total) if have else None
