"""What `plan`, `fetch` and `verify` return: plain dataclasses with status words from `status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .manifest import FileEntry, Manifest
from .status import Action, Check, Origin, Outcome


@dataclass
class PlanItem:
    """One selected file and what `get` will do with it."""

    entry: FileEntry
    action: Action
    reason: str = ""  # why it is fetched: missing, corrupt, forced; or why it cannot be (a folder not listed)
    origin: Origin = Origin.NETWORK  # where a file to fetch is expected from (the store, a cache, ...; `reuse.py`)
    found_at: str = ""  # the file it is expected from, when not the network


@dataclass
class Plan:
    """The selected files of a manifest (folders listed file by file) and what `get` will do with each."""

    manifest: Manifest
    dest: Path
    variants: list[str]
    items: list[PlanItem]

    @property
    def to_fetch(self) -> list[PlanItem]:
        return [i for i in self.items if i.action == Action.FETCH]

    def bytes_to_fetch(self) -> int | None:
        """Bytes expected over the network (files found on this machine cost none)."""
        return self.manifest.total_size(i.entry for i in self.to_fetch if i.origin == Origin.NETWORK)


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
    notes: list[str] = field(default_factory=list)  # what the user should know that is no file's error

    @property
    def ok(self) -> bool:
        return all(f.status in (Outcome.PRESENT, Outcome.FETCHED, Outcome.PLANNED) for f in self.files)

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


__all__ = ["FetchResult", "FileOutcome", "Plan", "PlanItem", "VerifyItem", "VerifyResult"]
