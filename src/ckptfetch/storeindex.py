"""The store's index, `<store>/index.sqlite`: what each object's other digests are, when it was verified, who uses it.

Two tables:

- `objects`: one row per object (its sha256), with its size, the md5 / sha1 /
  sha512 computed when it came in (so an md5-only manifest finds it), the
  stat it had when last verified (device, inode, size, mtime, ctime) and when it was
  added and last placed somewhere.
- `uses`: which destination path (DIR, path under DIR) was placed from which
  object, and how (hardlink, reflink, copy, symlink); `cache du` and `gc` read it.

The index is a cache of facts the objects themselves prove: an object is named
by its sha256, and anything the index says about it is checked before use or
redone by hashing. So it favours speed over durability (no fsync per write:
`synchronous=OFF`), and an index SQLite finds damaged is moved aside and
started again. The rollback journal (not WAL) keeps it readable from a
read-only store, where WAL's shared-memory file cannot be created.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OTHER = ("md5", "sha1", "sha512")
"""Digests the index maps to an object's sha256."""

StatKey = tuple[int, int, int, int, int]
"""(device, inode, size, mtime_ns, ctime_ns) of an object when it was last verified."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (sha256 TEXT PRIMARY KEY, size INTEGER, md5 TEXT, sha1 TEXT, sha512 TEXT,"
    " extra TEXT, dev INTEGER, ino INTEGER, vsize INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, added REAL, used REAL)",
    "CREATE INDEX IF NOT EXISTS objects_md5 ON objects (md5)",
    "CREATE INDEX IF NOT EXISTS objects_sha1 ON objects (sha1)",
    "CREATE INDEX IF NOT EXISTS objects_sha512 ON objects (sha512)",
    "CREATE TABLE IF NOT EXISTS uses (dest TEXT, path TEXT, sha256 TEXT, way TEXT, at REAL,"
    " PRIMARY KEY (dest, path))",
    "CREATE INDEX IF NOT EXISTS uses_sha256 ON uses (sha256)",
)


@dataclass
class ObjectRow:
    """What the index knows about one object."""

    sha256: str
    size: int
    digests: dict[str, str] = field(default_factory=dict)  # sha256 and whichever others were computed
    verified: StatKey | None = None
    added: float = 0.0
    used: float = 0.0


@dataclass(frozen=True)
class Use:
    """A destination path placed from an object."""

    dest: str
    path: str
    sha256: str
    way: str
    at: float


class Index:
    """The SQLite index; every method answers "nothing known" rather than fail when the database cannot be used."""

    def __init__(self, path: Path, writable: bool) -> None:
        self.path = path
        self.writable = writable
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    def _open(self) -> sqlite3.Connection:
        if self.writable:
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA synchronous=OFF")  # a cache of facts the objects prove; see the module doc
            for statement in _SCHEMA:
                conn.execute(statement)
            return conn
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False, isolation_level=None)

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._broken:
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError:
                if not (self.writable and self._set_aside()):
                    self._broken = True
        return self._conn

    def _set_aside(self) -> bool:
        """Move a damaged index out of the way and start a new one (objects are re-described as they are used)."""
        try:
            self.path.rename(self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}"))
            self._conn = self._open()
        except (OSError, sqlite3.DatabaseError):
            return False
        return True

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Connection | None]:
        with self._lock:
            db = self._db()
            try:
                yield db
            except sqlite3.DatabaseError:
                pass  # locked for too long, read-only, damaged: the caller goes on as if the index knew nothing

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        if not self.writable:
            return
        with self._cursor() as db:
            if db is not None:
                db.execute(sql, params)

    # --- objects ----------------------------------------------------------------------

    def find(self, algo: str, digest: str) -> list[str]:
        """The sha256 of objects whose `algo` digest is `digest`."""
        if algo not in OTHER:
            return []
        with self._cursor() as db:
            if db is not None:
                return [r[0] for r in db.execute(f"SELECT sha256 FROM objects WHERE {algo} = ?", (digest.lower(),))]
        return []

    def row(self, sha256: str) -> ObjectRow | None:
        with self._cursor() as db:
            if db is not None:
                r = db.execute("SELECT * FROM objects WHERE sha256 = ?", (sha256,)).fetchone()
                return _row(r) if r is not None else None
        return None

    def rows(self) -> list[ObjectRow]:
        with self._cursor() as db:
            if db is not None:
                return [_row(r) for r in db.execute("SELECT * FROM objects ORDER BY used")]
        return []

    def describe(self, sha256: str, size: int, digests: Mapping[str, str], verified: StatKey | None) -> None:
        """Add what is known of an object: digests merge with those known; `verified` replaces the stat (None keeps it)."""
        known = self.row(sha256)
        merged = {**(known.digests if known else {}), **{k: v.lower() for k, v in digests.items()}, "sha256": sha256}
        extra = {k: v for k, v in merged.items() if k not in (*OTHER, "sha256")}
        key = verified if verified is not None else (known.verified if known else None)
        now = time.time()
        self._write(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sha256, size, merged.get("md5"), merged.get("sha1"), merged.get("sha512"), json.dumps(extra),
             *(key or (None, None, None, None, None)), known.added if known else now, now),
        )

    def trust(self, sha256: str, key: StatKey) -> None:
        """The object's stat changed in a way known not to touch its bytes (a link was added): vouch for the new one."""
        self._write("UPDATE objects SET dev = ?, ino = ?, vsize = ?, mtime_ns = ?, ctime_ns = ? WHERE sha256 = ?",
                    (*key, sha256))

    def forget(self, sha256: str) -> None:
        """Drop an object and its uses (it was evicted)."""
        self._write("DELETE FROM objects WHERE sha256 = ?", (sha256,))
        self._write("DELETE FROM uses WHERE sha256 = ?", (sha256,))

    # --- uses -------------------------------------------------------------------------

    def use(self, sha256: str, dest: str, path: str, way: str) -> None:
        now = time.time()
        self._write("INSERT OR REPLACE INTO uses VALUES (?, ?, ?, ?, ?)", (dest, path, sha256, way, now))
        self._write("UPDATE objects SET used = ? WHERE sha256 = ?", (now, sha256))

    def uses(self, sha256: str | None = None) -> list[Use]:
        with self._cursor() as db:
            if db is not None:
                if sha256 is None:
                    rows = db.execute("SELECT dest, path, sha256, way, at FROM uses ORDER BY dest, path")
                else:
                    rows = db.execute("SELECT dest, path, sha256, way, at FROM uses WHERE sha256 = ?", (sha256,))
                return [Use(*r) for r in rows]
        return []

    def drop_use(self, use: Use) -> None:
        self._write("DELETE FROM uses WHERE dest = ? AND path = ? AND sha256 = ?", (use.dest, use.path, use.sha256))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _row(r: Sequence[Any]) -> ObjectRow:
    sha, size, md5, sha1, sha512, extra, dev, ino, vsize, mtime, ctime, added, used = r
    digests = {"sha256": str(sha)}
    digests.update({k: str(v) for k, v in (("md5", md5), ("sha1", sha1), ("sha512", sha512)) if v})
    try:
        digests.update(json.loads(str(extra or "{}")))
    except ValueError:
        pass
    verified = (int(dev), int(ino), int(vsize), int(mtime), int(ctime)) if dev is not None else None
    return ObjectRow(str(sha), int(size or 0), digests, verified, float(added or 0), float(used or 0))


__all__ = ["OTHER", "Index", "ObjectRow", "StatKey", "Use"]
