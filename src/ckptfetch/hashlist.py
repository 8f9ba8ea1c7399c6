"""Hash lists: the `md5sum`/`sha256sum` format both ways, and manifest entries for files on disk.

`ckptfetch hash` writes lines `md5sum -c` accepts; `ckptfetch import` reads
the lists projects publish (`md5sum` and `sha256sum` output, with `*` for
binary mode, and the BSD `MD5 (path) = digest` form).

>>> line("d41d8cd98f00b204e9800998ecf8427e", "models/a b.pth")
'd41d8cd98f00b204e9800998ecf8427e  models/a b.pth'
>>> parse_line("d41d8cd98f00b204e9800998ecf8427e *models/x.pth")
HashLine(algo='md5', digest='d41d8cd98f00b204e9800998ecf8427e', path='models/x.pth')
>>> parse_line("SHA256 (a.bin) = " + "0" * 64).algo
'sha256'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .hashing import ALGORITHMS, hash_file

_BY_LENGTH = {n: algo for algo, n in ALGORITHMS.items()}
_GNU = re.compile(r"^(\\?)([0-9a-fA-F]{32,128}) [ *](.+)$")
_BSD = re.compile(r"^(MD5|SHA1|SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]{32,128})$")
SKIPPED_DIRS = (".ckptfetch", ".git")  # never hashed when a folder is given


@dataclass(frozen=True)
class HashLine:
    """One line of a hash list: which algorithm, the digest, the path as written."""

    algo: str
    digest: str
    path: str


def _unescape(path: str) -> str:
    # GNU coreutils escapes `\` and newline in names and marks the line with a leading `\`.
    return path.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")


def parse_line(text: str) -> HashLine | None:
    """The hash line `text` is, or None (the digest's length names the algorithm)."""
    text = text.rstrip("\r\n")
    m = _GNU.match(text)
    if m is not None:
        escaped, digest, path = m.groups()
        algo = _BY_LENGTH.get(len(digest))
        if algo is None:
            return None
        return HashLine(algo, digest.lower(), _unescape(path) if escaped else path)
    b = _BSD.match(text)
    if b is not None:
        algo, path, digest = b.group(1).lower(), b.group(2), b.group(3)
        if ALGORITHMS[algo] != len(digest):
            return None
        return HashLine(algo, digest.lower(), path)
    return None


def line(digest: str, path: str) -> str:
    """One line as `md5sum` writes it (names with `\\` or a newline escaped, the line marked with `\\`)."""
    if "\\" in path or "\n" in path:
        return "\\" + digest + "  " + path.replace("\\", "\\\\").replace("\n", "\\n")
    return f"{digest}  {path}"


def walk(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Each file named, and every file under each folder named (sorted, like `find | sort`)."""
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
                for name in sorted(names):
                    if not name.endswith((".ckptfetch-partial", ".ckptfetch-partial.json")):
                        yield Path(root) / name
        else:
            yield p


@dataclass(frozen=True)
class Hashed:
    """A file's digests and size."""

    path: Path
    digests: dict[str, str]
    size: int


def hash_paths(paths: Iterable[Path], algorithms: Sequence[str]) -> list[Hashed]:
    """Digests of each file for `algorithms`, in order, hashed side by side; OSError for an unreadable file."""
    import concurrent.futures as cf

    def one(p: Path) -> Hashed:
        return Hashed(p, hash_file(p, algorithms), p.stat().st_size)

    # hashlib releases the GIL on large buffers: a few threads hash a few files at once.
    with cf.ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        return list(pool.map(one, paths))


def entry_key(path: Path, root: Path | None) -> str:
    """The manifest key for `path`: relative to `root` when given, POSIX slashes."""
    rel = path.relative_to(root) if root is not None else path
    return rel.as_posix()


def yaml_entries(files: Sequence[Hashed], root: Path | None) -> str:
    """Manifest `files:` entries (hashes and size) for `files`, to paste under `files:`."""
    import yaml

    doc = {entry_key(h.path, root): {**h.digests, "size": h.size} for h in files}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


__all__ = ["HashLine", "Hashed", "entry_key", "hash_paths", "line", "parse_line", "walk", "yaml_entries"]
