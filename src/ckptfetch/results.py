"""What `plan`, `fetch` and `verify` return: plain dataclasses with status words from `status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CkptfetchError, DownloadError, FetchFailed, ManualFileNeeded
from .manifest import FileEntry, Manifest
from .status import Action, Check, Origin, Outcome


@dataclass
class PlanItem:
    """One selected file and what `get` will do with it."""

    entry: FileEntry
    action: Action
    reason: str = ""  # why it is fetched: missing, corrupt, forced; or why it cannot be (a folder not listed)
    size: int | None = None  # the pinned size, else the one its source declared when the plan asked
    resume: int = 0  # bytes a partial download already holds here
    origin: Origin = Origin.NETWORK  # where a file to fetch is expected from (the store, a cache, ...; `reuse.py`)
    found_at: str = ""  # the file it is expected from, when not the network


@dataclass
class Cost:
    """What fetching a plan takes: bytes to download (archives once), files of unknown size, bytes already here."""

    download: int
    unknown: int
    here: int


@dataclass
class Plan:
    """The selected files of a manifest (folders listed file by file) and what `get` will do with each."""

    manifest: Manifest
    dest: Path
    variants: list[str]
    items: list[PlanItem]
    only: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    archives: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # to download: (size, bytes here)

    @property
    def to_fetch(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == Action.FETCH]

    def cost(self) -> Cost:
        """Bytes still to download: each file's size less what its partial holds; an archive counts once; a file
        found on this machine (the store, a cache) costs nothing."""
        sizes = [(i.size, i.resume) for i in self.to_fetch if not i.entry.archive and i.origin == Origin.NETWORK]
        sizes += list(self.archives.values())
        return Cost(sum(s - here for s, here in sizes if s is not None), sum(1 for s, _ in sizes if s is None),
                    sum(here for _, here in sizes))

    def bytes_to_fetch(self) -> int | None:
        """The total size of what is downloaded (what a progress bar counts to), or None when a size is unknown."""
        c = self.cost()
        return None if c.unknown else c.download + c.here


@dataclass
class FileOutcome:
    """What happened to one file."""

    path: str
    status: Outcome
    size: int | None = None
    source: str = "url"
    error: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    manual: str | None = None
    manual_url: str | None = None  # the page to visit for a manual file
    meta: dict[str, str] = field(default_factory=dict)  # what the source told us, e.g. a resolved commit
    at: str | None = None  # where the file really is under dest, when the layout puts it elsewhere than `path`
    origin: str | None = None  # for a fetched (or planned) file: where its bytes came from (`status.Origin`)
    link: str | None = None  # for a file taken from the store or a cache: how it reached dest (`status.Link`)


@dataclass
class FetchResult:
    """Every selected file's outcome; `ok` when each is present, fetched (or planned, on a dry run)."""

    manifest: str
    dest: Path
    files: list[FileOutcome]
    dry_run: bool = False
    errors: dict[str, CkptfetchError] = field(default_factory=dict, repr=False, compare=False)  # by target path
    notes: list[str] = field(default_factory=list)  # what the user should know that is no file's error

    @property
    def ok(self) -> bool:
        return all(f.status in (Outcome.PRESENT, Outcome.FETCHED, Outcome.PLANNED) for f in self.files)

    @property
    def paths(self) -> dict[str, Path]:
        """Where each present or fetched file is (under `dest`, where its layout put it), by target path."""
        return {f.path: self.dest / (f.at or f.path) for f in self.files
                if f.status in (Outcome.PRESENT, Outcome.FETCHED)}

    def raise_for_status(self) -> None:
        """Raise the error of the file that failed (the CLI's message), `FetchFailed` for several; else nothing."""
        failed = [f for f in self.files if f.status in (Outcome.FAILED, Outcome.MANUAL)]
        messages = {f.path: self._message(f) for f in failed}
        if len(failed) == 1:
            exc = self.errors.get(failed[0].path)
            if exc is not None:
                raise exc.with_traceback(None)
            if failed[0].status == Outcome.MANUAL:
                raise ManualFileNeeded(messages[failed[0].path])
            raise DownloadError(messages[failed[0].path])
        if failed:
            raise FetchFailed(messages)

    def _message(self, f: FileOutcome) -> str:
        if f.status != Outcome.MANUAL:
            return f.error or f"{f.path}: failed"
        page = f"; get it from {f.manual_url}" if f.manual_url else ""
        return f"{f.error}: {f.manual}{page}; put it at {self.dest / f.path}"

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest, "dest": str(self.dest), "ok": self.ok, "dry_run": self.dry_run,
            "files": [asdict(f) for f in self.files], "notes": list(self.notes),
        }


@dataclass
class VerifyItem:
    path: str
    status: Check
    detail: str = ""
    repair: str = ""  # the command that puts a FAILED or MISSING file right, when the record knows it


@dataclass
class VerifyResult:
    """One line per file, like `md5sum -c`; `ok` when every file is OK."""

    dest: Path
    items: list[VerifyItem]

    @property
    def ok(self) -> bool:
        return all(i.status == Check.OK for i in self.items)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[str(i.status)] = out.get(str(i.status), 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "ok": self.ok, "counts": self.counts(), "files": [asdict(i) for i in self.items]}


__all__ = ["Cost", "FetchResult", "FileOutcome", "Plan", "PlanItem", "VerifyItem", "VerifyResult"]
