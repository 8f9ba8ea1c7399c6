"""What lives in DIR/.ckptfetch/: the install record, the verified-state cache, locks.

- `record.json`: which manifests, variants and files `get` installed, with
  their hashes, so `verify DIR` needs no other argument.
- `state.sqlite`: digests of files already verified, keyed on device, inode,
  size, mtime_ns and ctime_ns, so an unchanged file is not hashed again. Any
  write to a file changes its ctime, so edits are caught even when the mtime
  is put back.
- `locks/`: one lock per target or archive, so concurrent runs never fetch the
  same bytes twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_DIR = ".ckptfetch"
RECORD = "record.json"
CACHE = "state.sqlite"


def state_dir(dest: Path) -> Path:
    return dest / STATE_DIR


# --- locks -------------------------------------------------------------------


@contextmanager
def locked(dest: Path, key: str, cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the inter-process lock for `key` under `dest` (waits for it)."""
    from filelock import FileLock, Timeout

    lock_dir = state_dir(dest) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(key.encode()).hexdigest()[:20] + ".lock"
    lock = FileLock(str(lock_dir / name), thread_local=False)
    while True:
        try:
            lock.acquire(timeout=0.25)
            break
        except Timeout:
            if cancel is not None and cancel.is_set():
                from .errors import Interrupted

                raise Interrupted("interrupted while waiting for another ckptfetch process") from None
    try:
        yield
    finally:
        lock.release()


# --- the record ----------------------------------------------------------------


def read_record(dest: Path) -> dict[str, Any]:
    """The install record, or an empty one."""
    path = state_dir(dest) / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": 1, "manifests": {}}
    if not isinstance(data, dict) or not isinstance(data.get("manifests"), dict):
        return {"version": 1, "manifests": {}}
    return data


def update_record(dest: Path, manifest: str, source: str, variants: Iterable[str], files: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge installed `files` of `manifest` into the record, atomically."""
    with locked(dest, "record"):
        data = read_record(dest)
        entry = data["manifests"].setdefault(manifest, {"source": source, "variants": [], "files": {}})
        entry["source"] = source
        entry["variants"] = sorted(set(entry.get("variants", [])) | set(variants))
        entry.setdefault("files", {}).update({k: dict(v) for k, v in files.items()})
        path = state_dir(dest) / RECORD
        tmp = path.with_name(f"{RECORD}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


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
            except sqlite3.Error:
                return None  # a read-only or odd filesystem: work without the cache
        return self._conn

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
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
        if row is None or tuple(row[:5]) != self._key(st):
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
                    (rel, *self._key(st), json.dumps(dict(digests), sort_keys=True)),
                )
            except sqlite3.Error:
                pass

    def forget(self, rel: str) -> None:
        with self._lock:
            db = self._db()
            if db is not None:
                try:
                    db.execute("DELETE FROM verified WHERE path = ?", (rel,))
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
