"""DIR/.ckptfetch/ and the verified-state cache in it.

What lives in DIR/.ckptfetch/ (ARCHITECTURE.md "On disk"):

- `state.sqlite`: digests of files already verified, keyed on device, inode,
  size, mtime_ns and ctime_ns, so an unchanged file is not hashed again. Any
  write to a file changes its ctime, so edits are caught even when the mtime
  is put back. This module.
- `record.json`: what `get` installed (`record.py`).
- `locks/`: one lock file per target or archive while it is being worked on
  (`proclock.py`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from .errors import CkptfetchError

STATE_DIR = ".ckptfetch"
RECORD = "record.json"
CACHE = "state.sqlite"


def state_dir(dest: Path) -> Path:
    return dest / STATE_DIR


def unwritable(path: Path, exc: OSError, what: str = "") -> CkptfetchError:
    """The error for a state file that cannot be written: what failed and what to do."""
    return CkptfetchError(
        f"{what + ': ' if what else ''}cannot write in {path}: {exc.strerror or exc}. ckptfetch keeps its locks and "
        f"records in DIR/{STATE_DIR}/; free some space or make DIR writable, or choose another --dest."
    )


# --- the verified-state cache ------------------------------------------------------


class VerifiedCache:
    """Digests of files known to be good, valid while their stat is unchanged."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._path = state_dir(dest) / CACHE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last entries costs a re-hash
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS verified (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER,"
                    " size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, digests TEXT)"
                )
                self._conn = conn
            except (sqlite3.Error, OSError):
                return None  # a read-only, full or odd filesystem: work without the cache
        return self._conn

    @staticmethod
    def key(st: os.stat_result) -> tuple[int, int, int, int, int]:
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def lookup(self, rel: str, st: os.stat_result) -> dict[str, str]:
        """Digests cached for `rel` if its stat is exactly what it was."""
        with self._lock:
            db = self._db()
            if db is None:
                return {}
            try:
                row = db.execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, digests FROM verified WHERE path = ?", (rel,)
                ).fetchone()
            except sqlite3.Error:
                return {}
        if row is None or tuple(row[:5]) != self.key(st):
            return {}
        try:
            return dict(json.loads(row[5]))
        except (ValueError, TypeError):
            return {}

    def store(self, rel: str, st: os.stat_result, digests: Mapping[str, str]) -> None:
        with self._lock:
            db = self._db()
            if db is None:
                return
            try:
                db.execute(
                    "INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rel, *self.key(st), json.dumps(dict(digests), sort_keys=True)),
                )
            except sqlite3.Error:
                pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
