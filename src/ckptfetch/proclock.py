"""Locks between processes and hosts sharing DIR: one lock file per target, archive or record.

A lock is a file created with O_CREAT|O_EXCL, which is atomic on local
filesystems and on NFSv3+ (the server decides), unlike flock(), which some
NFS mounts (`nolock`, old NLM setups) keep host-local. The file says who holds
it (host, boot id, pid, process start time, a random token). A lock is stale
when its holder is provably dead: same host and boot but that process is gone
(or the pid was reused), or another boot of this host; or, for a holder on
another host, when its heartbeat (the file's mtime, touched every
LOCK_HEARTBEAT seconds) is older than LOCK_STALE seconds. A stale lock is
broken by renaming it to a unique name first, so two waiters cannot both
break it and then both take it.

Written here rather than taken from filelock: filelock's `FileLock` uses
flock()/fcntl, which NFS mounts may keep host-local, and its `SoftFileLock`
cannot tell a dead holder from a slow one. Whether a holder is alive is asked
through `compat` (a system that cannot tell falls back to the heartbeat).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import compat
from .errors import Interrupted
from .state import state_dir, unwritable

LOCK_HEARTBEAT = 10.0
LOCK_STALE = float(os.environ.get("CKPTFETCH_LOCK_STALE", "120"))


_identity: dict[str, Any] = {}  # this process's, read once (from /proc): a run takes a lock per file


def _owner() -> dict[str, Any]:
    """Who holds a lock: this process (host, boot, pid namespace, pid, start time) and a token of its own."""
    pid = os.getpid()
    if _identity.get("pid") != pid:  # the first lock, or a forked child: read it (again)
        # The pid namespace too: two containers may share a host name and a kernel, not their pids.
        _identity.update(host=socket.gethostname(), boot=compat.boot_id(), pidns=compat.pid_namespace(), pid=pid,
                         start=compat.start_time(pid))
    return {**_identity, "token": uuid.uuid4().hex}


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


class _Heartbeat:
    """Touches every lock this process holds, every LOCK_HEARTBEAT seconds, so waiters elsewhere see it alive.

    One thread per process, started with the first lock (again in a forked
    child, which inherits no threads): a run takes a lock per file, and a
    thread per lock cost more than the lock.
    """

    def __init__(self) -> None:
        self.held: set[Path] = set()
        self.guard = threading.Lock()
        self.pid = 0  # the process whose thread runs

    def hold(self, path: Path) -> None:
        with self.guard:
            if self.pid != os.getpid():
                self.held, self.pid = set(), os.getpid()
                threading.Thread(target=self._run, name="lock-heartbeat", daemon=True).start()
            self.held.add(path)

    def release(self, path: Path) -> None:
        with self.guard:
            self.held.discard(path)

    def forked(self) -> None:
        """In a forked child: no thread and no locks are inherited, and the guard may have been held mid-fork."""
        self.guard, self.held, self.pid = threading.Lock(), set(), 0

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            time.sleep(LOCK_HEARTBEAT)
            with self.guard:
                if self.pid != pid:
                    return
                paths = list(self.held)
            for path in paths:
                try:
                    os.utime(path)
                except OSError:
                    pass  # released meanwhile, or broken by another process: its holder finds out


_heartbeat = _Heartbeat()
if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_heartbeat.forked)


@contextmanager
def locked(dest: Path, key: str, cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the inter-process (and inter-host) lock for `key` under `dest`, waiting for it."""
    lock_dir = state_dir(dest) / "locks"
    what = key.split(":", 1)[-1]
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(lock_dir, exc, what) from None
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
            raise unwritable(lock_dir, exc, what) from None
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        break
    _heartbeat.hold(path)
    try:
        yield
    finally:
        _heartbeat.release(path)
        try:
            still_ours = json.loads(path.read_text()).get("token") == me["token"]
        except (OSError, ValueError):
            still_ours = False
        if still_ours:
            path.unlink(missing_ok=True)


__all__ = ["LOCK_HEARTBEAT", "LOCK_STALE", "locked"]
