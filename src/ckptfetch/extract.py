"""Safe extraction of listed members from zip and tar archives.

Only the members a manifest lists are read, and each is written to the
target path the manifest gives (never to a path taken from the archive), via a
partial file that is hashed while it streams and renamed once it verifies.
Links, devices, FIFOs, setuid files, duplicated members and members larger
than declared are refused. An archive with any entry whose name is hostile
(absolute, `..`, a drive letter, control characters) or that expands like a
decompression bomb is refused as a whole: nothing of it is extracted.
"""

from __future__ import annotations

import difflib
import fnmatch
import lzma
import os
import re
import stat
import tarfile
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import _testhooks, compat
from .download.partial import PARTIAL_SUFFIX
from .errors import CkptfetchError, HashMismatch, Interrupted, UnsafeArchive
from .hashing import MultiHasher
from .pins import first_mismatch

CHUNK = 1 << 20
MAX_RATIO = 200  # uncompressed / compressed beyond this (past BOMB_FLOOR bytes) is a bomb
BOMB_FLOOR = 8 << 20  # small members may compress as well as they like
MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "tar.gz",
    b"BZh": "tar.bz2",
    b"\xfd7zXZ\x00": "tar.xz",
}


@dataclass(frozen=True)
class Wanted:
    """One member to extract and where it must end up."""

    member: str
    target: Path
    label: str
    hashes: Mapping[str, str]
    size: int | None
    algorithms: tuple[str, ...] = ()


@dataclass(frozen=True)
class WantedFolder:
    """Every regular file under folder `member` of the archive (all of it when ""), placed under `target`."""

    member: str  # without slashes at the ends; "" for the whole archive
    target: Path
    label: str
    include: tuple[str, ...] = ()  # fnmatch globs over paths inside the folder
    algorithms: tuple[str, ...] = ()

    def wants(self, name: str) -> Wanted | None:
        """The member `name` (normalized) as a file of this folder, or None when it is not one."""
        if self.member and not name.startswith(self.member + "/"):
            return None
        rel = name[len(self.member) + 1:] if self.member else name
        if not rel or (self.include and not any(fnmatch.fnmatchcase(rel, g) for g in self.include)):
            return None
        return Wanted(name, self.target / rel, f"{self.label}{rel}", {}, None, self.algorithms)


def detect_format(path: Path) -> str | None:
    """Archive format from the content (never from the file name)."""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, fmt in MAGIC.items():
        if head.startswith(magic):
            return fmt
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


_DRIVE = re.compile(r"^[A-Za-z]:")
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def name_problem(name: str) -> str | None:
    """Why an archive entry name is hostile, or None.

    Backslashes count as separators here: a `..\\..\\x` entry is a traversal
    on Windows and a trap everywhere.
    """
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "climbs out with `..`"
    if any(unicodedata.category(c) == "Cc" or c in _BIDI for c in name):
        return "contains control or bidirectional-override characters"
    return None


def _refuse_names(names: list[str], label: str) -> None:
    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise UnsafeArchive(
                f"{label}: archive entry {name!r} {problem}, so the whole archive was refused and nothing "
                "was extracted. Check the archive URL; if the archive is genuine, report it upstream."
            )


def _bomb(label: str, what: str, expanded: int, packed: int) -> UnsafeArchive:
    return UnsafeArchive(
        f"{label}: {what} expands to {expanded} bytes from {packed} ({expanded // max(1, packed)}:1), "
        "like a decompression bomb, so the archive was refused and nothing was extracted."
    )



def extract(
    archive: Path,
    wanted: list[Wanted],
    *,
    label: str,
    folders: Sequence[WantedFolder] = (),
    declared_format: str | None = None,
    cancel: threading.Event | None = None,
    source: str = "",
) -> dict[str, dict[str, str] | CkptfetchError]:
    """Extract `wanted` members and the files of `folders` of `archive`; per member, digests or the error.

    A member that fails (bad hash, unsafe) does not stop the others; a broken
    or unsafe archive as a whole raises `UnsafeArchive`. A folder's files come
    back keyed by their member names; a folder with no file at all comes back
    as an error keyed by the folder's member with a slash. `source` (the
    archive's URL, for messages) is named when a member is missing.
    """
    fmt = detect_format(archive) or declared_format
    if fmt is None:
        raise UnsafeArchive(
            f"{label}: {archive.name} is not a zip or tar archive (checked its first bytes). "
            "The download may be an error page; check the archive URL."
        )
    cancel = cancel or threading.Event()
    by_name = {_norm(w.member): w for w in wanted}
    seen_names: list[str] = []
    try:
        extractor = _extract_zip if fmt == "zip" else _extract_tar
        results = extractor(archive, _Want(by_name, folders, seen_names), label, cancel)
    except BaseException as exc:
        for w in by_name.values():
            _partial(w).unlink(missing_ok=True)
        corrupt = isinstance(exc, (tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError, zlib.error, lzma.LZMAError))
        if isinstance(exc, OSError) and exc.errno is None:
            corrupt = True  # gzip.BadGzipFile, bz2's "Invalid data stream"
        if not corrupt:
            raise
        raise UnsafeArchive(f"{label}: {archive.name} is corrupt or truncated ({exc}); it will be downloaded again.",
                            corrupt=True) from None
    out: dict[str, dict[str, str] | CkptfetchError] = {}
    for name, w in by_name.items():
        out[w.member] = results[name] if name in results else _missing(w, name, seen_names, label, source)
    for f in folders:
        if not any(k == f.member or k.startswith(f.member + "/") or not f.member for k in results):
            what = "matches the include patterns" if f.include else "is there"
            out[f.member + "/"] = UnsafeArchive(
                f"{f.label}: no file under {f.member + '/' if f.member else 'the top'} of archive {label} {what}"
                + _folder_hint(f.member, seen_names) + (f" ({source})" if source else "")
            )
    return out


def _missing(w: Wanted, name: str, names: list[str], label: str, source: str) -> UnsafeArchive:
    return UnsafeArchive(f"{w.label}: member {w.member!r} is not in archive {label}" + _did_you_mean(name, names)
                         + (f" ({source})" if source else ""))


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _folder_hint(member: str, names: list[str]) -> str:
    """A did-you-mean among the archive's folders, else the folders at its top (a GitHub archive has one)."""
    folders = {n.rsplit("/", i)[0] for n in names for i in range(1, n.count("/") + 1)}
    hint = _did_you_mean(member, folders)
    if hint:
        return hint
    tops = sorted({n.split("/", 1)[0] + "/" for n in names if "/" in n})
    if len(tops) == 1:
        return f"; did you mean {tops[0][:-1]!r}?"
    return f"; its top folders are {', '.join(tops[:5])}" if tops else "; it has no folders"


class _Want:
    """Which members an extraction wants: the listed ones, and the files of the listed folders as they come."""

    def __init__(self, by_name: dict[str, Wanted], folders: Sequence[WantedFolder], seen: list[str]) -> None:
        self.by_name = by_name
        self.folders = folders
        self.seen = seen  # every entry name, for did-you-mean hints
        # NFC and NFD spellings of one name are one member (a macOS zip and a Linux tar disagree on them)
        self.nfc = {unicodedata.normalize("NFC", n): w for n, w in by_name.items()}

    def get(self, name: str, is_dir: bool) -> Wanted | None:
        """The wanted member an archive entry (`name`: normalized, NFC) is, if any."""
        self.seen.append(name)
        w = self.nfc.get(name)
        if w is not None or is_dir:
            return w
        for f in self.folders:
            w = f.wants(name)
            if w is not None:
                self.by_name[name] = self.nfc[name] = w
                return w
        return None


def _partial(w: Wanted) -> Path:
    return w.target.with_name(w.target.name + PARTIAL_SUFFIX)


def _stream_member(src: IO[bytes], w: Wanted, declared: int, cancel: threading.Event) -> dict[str, str]:
    """Copy one member to its partial file, hashing it; bounded by `declared`."""
    if w.size is not None and declared != w.size:
        raise UnsafeArchive(f"{w.label}: member {w.member!r} is {declared} bytes, the manifest expects {w.size}")
    part = _partial(w)
    hasher = MultiHasher([*w.hashes, *w.algorithms])
    written = 0
    try:
        w.target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as f:
            while True:
                if cancel.is_set():
                    raise Interrupted()
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > declared:
                    raise UnsafeArchive(
                        f"{w.label}: member {w.member!r} expands past its declared {declared} bytes; refused"
                    )
                f.write(chunk)
                _testhooks.point("extract-member")
                hasher.update(chunk)
            f.flush()
            os.fsync(f.fileno())
        if written != declared:
            raise UnsafeArchive(f"{w.label}: member {w.member!r} is truncated ({written} of {declared} bytes)")
        digests = hasher.hexdigests()
        bad = first_mismatch(w.hashes, digests)
        if bad is not None:
            raise HashMismatch(w.label, f"member {w.member!r} of the archive", *bad)
    except OSError as exc:
        part.unlink(missing_ok=True)  # cheap to redo: the archive stays cached
        if exc.errno is None:
            raise  # a corrupt compressed stream (gzip, bz2): handled as a corrupt archive
        raise CkptfetchError(
            f"{w.label}: cannot write {part}: {exc.strerror or exc}. Free some space (or make the folder writable), "
            "or choose another --dest, then run the same command again; files already in place were not touched."
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digests


def _commit(w: Wanted) -> None:
    os.replace(_partial(w), w.target)
    compat.fsync_dir(w.target.parent)


def _finish(staged: dict[str, tuple[Wanted, dict[str, str]]], results: dict[str, dict[str, str] | CkptfetchError]) -> None:
    for name, (w, digests) in staged.items():
        if name not in results:
            _testhooks.point("extract-before-rename")
            _commit(w)
            results[name] = digests
            _testhooks.point("extract-after-rename")


def _extract_zip(path: Path, want: _Want, label: str, cancel: threading.Event) -> dict[str, dict[str, str] | CkptfetchError]:
    results: dict[str, dict[str, str] | CkptfetchError] = {}
    staged: dict[str, tuple[Wanted, dict[str, str]]] = {}
    with zipfile.ZipFile(path) as zf:
        _refuse_names([i.filename for i in zf.infolist()], label)
        infos: dict[str, list[zipfile.ZipInfo]] = {}
        for info in zf.infolist():
            infos.setdefault(unicodedata.normalize("NFC", _norm(info.filename)), []).append(info)
        _check_overlaps(zf.infolist(), label)
        for nfc_name, same in infos.items():
            want.get(nfc_name, same[0].is_dir())
        for name, w in list(want.by_name.items()):
            found = infos.get(unicodedata.normalize("NFC", name))
            if not found:
                continue
            info = found[0]
            if info.file_size > BOMB_FLOOR and info.file_size > MAX_RATIO * max(1, info.compress_size):
                raise _bomb(label, f"member {w.member!r}", info.file_size, info.compress_size)
            try:
                if len(found) > 1:
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} appears {len(found)} times in {label}; refused")
                mode = (info.external_attr >> 16) & 0xFFFF
                # Many zips carry permission bits only (no file type): those are regular files.
                if info.is_dir() or (stat.S_IFMT(mode) and not stat.S_ISREG(mode)):
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} of {label} is not a regular file (a link or special file); refused")
                if mode & (stat.S_ISUID | stat.S_ISGID):
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} of {label} has a setuid/setgid bit; refused")
                with zf.open(info) as src:
                    staged[name] = (w, _stream_member(src, w, info.file_size, cancel))
            except (UnsafeArchive, HashMismatch) as exc:
                results[name] = exc
    _finish(staged, results)
    return results


def _check_overlaps(infos: list[zipfile.ZipInfo], label: str) -> None:
    """Zip entries whose data overlap are a known bomb construction."""
    spans = sorted((i.header_offset, i.header_offset + 30 + len(i.filename.encode()) + i.compress_size) for i in infos)
    for (a_start, a_end), (b_start, _) in zip(spans, spans[1:], strict=False):
        if b_start < a_end and b_start != a_start:
            raise UnsafeArchive(f"{label}: zip entries overlap each other (a zip bomb construction); refused")
        if b_start == a_start:
            raise UnsafeArchive(f"{label}: two zip entries share the same data; refused")


def _extract_tar(path: Path, want: _Want, label: str, cancel: threading.Event) -> dict[str, dict[str, str] | CkptfetchError]:
    results: dict[str, dict[str, str] | CkptfetchError] = {}
    staged: dict[str, tuple[Wanted, dict[str, str]]] = {}
    seen: set[str] = set()
    # One sequential pass: extract listed members to partial files as they
    # come, and rename them only once the whole archive was read and no
    # listed member turned out to appear twice.
    packed = path.stat().st_size
    budget = max(BOMB_FLOOR, MAX_RATIO * packed)
    with tarfile.open(path, mode="r:*") as tf:
        for info in tf:
            if cancel.is_set():
                raise Interrupted()
            _refuse_names([info.name], label)
            if info.offset_data + info.size > budget:
                raise _bomb(label, "the tar stream", info.offset_data + info.size, packed)
            w = want.get(unicodedata.normalize("NFC", _norm(info.name)), info.isdir())
            if w is None:
                continue
            name = _norm(w.member)
            if name in seen:
                staged.pop(name, None)
                _partial(w).unlink(missing_ok=True)
                results[name] = UnsafeArchive(f"{w.label}: member {w.member!r} appears more than once in {label}; refused")
                continue
            seen.add(name)
            try:
                if not info.isreg():
                    kind = "a link" if info.issym() or info.islnk() else "a device or special file" if (info.isdev() or info.isfifo()) else "a directory" if info.isdir() else "not a regular file"
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} of {label} is {kind}; refused")
                if info.mode & (stat.S_ISUID | stat.S_ISGID):
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} of {label} has a setuid/setgid bit; refused")
                src = tf.extractfile(info)
                if src is None:
                    raise UnsafeArchive(f"{w.label}: member {w.member!r} of {label} cannot be read")
                with src:
                    staged[name] = (w, _stream_member(src, w, info.size, cancel))
            except (UnsafeArchive, HashMismatch) as exc:
                results[name] = exc
    _finish(staged, results)
    return results
