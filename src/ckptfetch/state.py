"""What lives in DIR/.ckptfetch/: the install record, the verified-state cache, locks.

- `record.json`: which manifests, variants and files `get` installed, with
  their hashes, so `verify DIR` needs no other argument.
- `state.sqlite`: digests of files already verified, keyed on device, inode,
  size, mtime_ns and ctime_ns, so an unchanged file is not hashed again. Any
  write to a file changes its ctime, so edits are caught even when the mtime
  is put back.
- `locks/`: one lock file per target or archive while it is being worked on,
  so concurrent runs (on one host or several sharing DIR over NFS) never
  fetch the same bytes twice; see `locked`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import compat
from .errors import CkptfetchError, Interrupted

STATE_DIR = ".ckptfetch"
RECORD = "record.json"
CACHE = "state.sqlite"


def state_dir(dest: Path) -> Path:
    return dest / STATE_DIR


# --- locks -------------------------------------------------------------------
#
# A lock is a file created with O_CREAT|O_EXCL, which is atomic on local
# filesystems and on NFSv3+ (the server decides), unlike flock(), which some
# NFS mounts (`nolock`, old NLM setups) keep host-local. The file says who holds
# it (host, boot id, pid, process start time, a random token). A lock is stale
# when its holder is provably dead: same host and boot but that process is gone
# (or the pid was reused), or another boot of this host; or, for a holder on
# another host, when its heartbeat (the file's mtime, touched every
# LOCK_HEARTBEAT seconds) is older than LOCK_STALE seconds. A stale lock is
# broken by renaming it to a unique name first, so two waiters cannot both
# break it and then both take it.

LOCK_HEARTBEAT = 10.0
LOCK_STALE = float(os.environ.get("CKPTFETCH_LOCK_STALE", "120"))


def _owner() -> dict[str, Any]:
    # The pid namespace too: two containers may share a host name and a kernel, not their pids.
    return {"host": socket.gethostname(), "boot": compat.boot_id(), "pidns": compat.pid_namespace(),
            "pid": os.getpid(), "start": compat.start_time(os.getpid()), "token": uuid.uuid4().hex}


def _stale(path: Path, me: dict[str, Any]) -> bool:
    try:
        st = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        return False  # released meanwhile: just try again
    except OSError:
        return False
    try:
        holder = json.loads(text)
        host, boot, pid, start = holder["host"], holder["boot"], int(holder["pid"]), str(holder["start"])
    except (ValueError, KeyError, TypeError):
        # Created but not yet written, or cut short by a crash: stale once it is clearly old.
        return time.time() - st.st_mtime > 5
    heartbeat_stale = time.time() - st.st_mtime > LOCK_STALE
    if host == me["host"] and boot and me["boot"] and boot != me["boot"]:
        return True  # held before this machine rebooted
    if host == me["host"] and boot == me["boot"] and holder.get("pidns", "") == me["pidns"]:
        alive = compat.pid_alive(pid)
        if alive is False:
            return True
        now = compat.start_time(pid)
        if alive and start and now and now != start:
            return True  # a reused pid is another process
        if alive and boot:
            return False  # this boot, this pid, still running (or unknown start time): the holder lives
    return heartbeat_stale  # another host, or a system that cannot tell: trust the heartbeat only


def _break(path: Path) -> None:
    """Remove a stale lock without racing another waiter that breaks it too."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except OSError:
        return
    aside.unlink(missing_ok=True)


class _Heartbeat(threading.Thread):
    """Touches a held lock so waiters on other hosts can tell it is alive."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="lock-heartbeat", daemon=True)
        self.path = path
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(LOCK_HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return


def _unwritable(path: Path, exc: OSError, what: str = "") -> CkptfetchError:
    return CkptfetchError(
        f"{what + ': ' if what else ''}cannot write in {path}: {exc.strerror or exc}. ckptfetch keeps its locks and "
        f"records in DIR/{STATE_DIR}/; free some space or make DIR writable, or choose another --dest."
    )


@contextmanager
def locked(dest: Path, key: str, cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the inter-process (and inter-host) lock for `key` under `dest`, waiting for it."""
    lock_dir = state_dir(dest) / "locks"
    what = key.split(":", 1)[-1]
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(lock_dir, exc, what) from None
    path = lock_dir / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".lock")
    me = _owner()
    body = json.dumps({**me, "key": key}).encode()
    wait = 0.01
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _stale(path, me):
                _break(path)
                continue
            if cancel is not None and cancel.is_set():
                raise Interrupted("interrupted while waiting for another ckptfetch process") from None
            time.sleep(wait)
            wait = min(0.25, wait * 2)
            continue
        except OSError as exc:
            raise _unwritable(lock_dir, exc, what) from None
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        break
    beat = _Heartbeat(path)
    beat.start()
    try:
        yield
    finally:
        beat.stop.set()
        try:
            still_ours = json.loads(path.read_text()).get("token") == me["token"]
        except (OSError, ValueError):
            still_ours = False
        if still_ours:
            path.unlink(missing_ok=True)


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
    """Merge installed `files` of `manifest` into the record, atomically.

    Nothing is written (and no lock taken) when the record already says it all,
    so a run that finds everything in place also works on a read-only DIR.
    """
    current = read_record(dest)
    entry = current["manifests"].get(manifest)
    if (entry is not None and entry.get("source") == source and set(variants) <= set(entry.get("variants", []))
            and all(entry.get("files", {}).get(k) == dict(v) for k, v in files.items())):
        return
    with locked(dest, "record"):
        data = read_record(dest)
        entry = data["manifests"].setdefault(manifest, {"source": source, "variants": [], "files": {}})
        entry["source"] = source
        entry["variants"] = sorted(set(entry.get("variants", [])) | set(variants))
        entry.setdefault("files", {}).update({k: dict(v) for k, v in files.items()})
        path = state_dir(dest) / RECORD
        tmp = path.with_name(f"{RECORD}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _unwritable(path.parent, exc) from None


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
