"""Portability: every call that only some systems have, each with its fallback.

The rest of ckptfetch calls these and never `os.preadv`, `os.statvfs`,
`sync_file_range`, `/proc` or `os.symlink` directly. Each capability is a
module-level flag checked at call time, so a test can switch it off and run
the fallback on this machine (see `tests/test_compat.py`):

| capability | where it exists | fallback |
|---|---|---|
| `HAVE_PREADV` / `HAVE_PWRITE`: positional I/O | Linux, macOS (`pwrite`: all POSIX) | seek + read/write under a per-fd lock (Windows) |
| `HAVE_STATVFS`: free space | POSIX | `shutil.disk_usage` |
| `HAVE_SYNC_FILE_RANGE`: start writeback without waiting | Linux | `fdatasync`, else `fsync` |
| `HAVE_PROC`: boot id, process start time, pid namespace | Linux | unknown (`""`): locks then trust the heartbeat |
| `HAVE_KILL0`: "is this pid alive?" | POSIX | unknown (`None`): locks then trust the heartbeat |
| `HAVE_DIR_FSYNC`: fsync a folder to make renames durable | POSIX | nothing (NTFS journals renames) |
| `HAVE_SYMLINKS`: symlinks | POSIX; Windows with developer mode | a copy (the hf-cache layout, as huggingface_hub does) |
| `HAVE_REFLINK`: clone a file's blocks (copy-on-write) | Linux (`FICLONE`: btrfs, XFS, bcachefs, ...); macOS (`clonefile`: APFS) | the caller hard-links or copies (`linking.py`) |
| `WINDOWS_NAMES`: file names obey Windows' rules (no `CON`/`NUL`/`COM1`..., no `<>:"|?*`, no trailing dot or space) | Windows | - (elsewhere such names are only a `lint` warning: `targets.windows_problem`) |
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

HAVE_PREADV = hasattr(os, "preadv")
HAVE_PWRITE = hasattr(os, "pwrite")
HAVE_STATVFS = hasattr(os, "statvfs")
HAVE_SYNC_FILE_RANGE = sys.platform.startswith("linux")
HAVE_PROC = os.path.isdir("/proc/self")
HAVE_KILL0 = os.name == "posix"
HAVE_DIR_FSYNC = os.name == "posix"
HAVE_SYMLINKS = hasattr(os, "symlink")
HAVE_REFLINK = sys.platform.startswith("linux") or sys.platform == "darwin"
WINDOWS_NAMES = os.name == "nt"  # a target `a:b` would write into an NTFS stream of `a`, `NUL.bin` nowhere
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows opens files in text mode otherwise

_FD_LOCKS: dict[int, threading.Lock] = {}
_FD_LOCKS_GUARD = threading.Lock()


def _fd_lock(fd: int) -> threading.Lock:
    with _FD_LOCKS_GUARD:
        return _FD_LOCKS.setdefault(fd, threading.Lock())


# --- positional I/O -----------------------------------------------------------------


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into `view` from `offset` of `fd` without moving a shared file position; bytes read."""
    if HAVE_PREADV:
        return os.preadv(fd, [view], offset)
    with _fd_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write `data` at `offset` of `fd` (possibly only part of it); bytes written."""
    if HAVE_PWRITE:
        return os.pwrite(fd, data, offset)
    with _fd_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


# --- disks ---------------------------------------------------------------------------


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still write on the filesystem holding `path`."""
    if HAVE_STATVFS:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    return shutil.disk_usage(path).free


def allocated_bytes(st: os.stat_result) -> int:
    """Disk space a file takes (its blocks where the system says, else its size)."""
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


@functools.lru_cache(maxsize=1)
def _sync_file_range() -> Callable[[int], object] | None:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return lambda fd: fn(fd, 0, 0, 2)  # 2 = SYNC_FILE_RANGE_WRITE; errors show at the final fsync


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing `fd`'s dirty pages to disk.

    On Linux, sync_file_range(SYNC_FILE_RANGE_WRITE) starts writeback and
    returns without waiting for the disk or committing the journal (an
    fdatasync every 64 MiB cost ~0.5 s of CPU per GiB on a 2-core VM).
    Durability still comes from the one fsync before the rename; this is
    only a head start. Elsewhere fdatasync (macOS lacks it: fsync) stands in.
    """
    fn = _sync_file_range() if HAVE_SYNC_FILE_RANGE else None
    if fn is not None:
        fn(fd)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make renames in folder `path` durable; a no-op where folders cannot be opened (Windows)."""
    if not HAVE_DIR_FSYNC:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- processes (for the NFS-safe locks) -----------------------------------------------


def boot_id() -> str:
    """An id that changes at every boot of this machine ("" when unknown)."""
    if not HAVE_PROC:
        return ""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot ("" when unknown): tells a reused pid apart."""
    if not HAVE_PROC:
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def pid_namespace() -> str:
    """This process's pid namespace ("" when unknown): two containers may share a host name, not their pids."""
    if not HAVE_PROC:
        return ""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool | None:
    """Whether process `pid` exists on this machine; None when this system cannot tell."""
    if not HAVE_KILL0:
        return None  # on Windows os.kill(pid, 0) would terminate the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    except OSError:
        return None
    return True


# --- links -------------------------------------------------------------------------------


def symlink(target: str, link: str | os.PathLike[str]) -> bool:
    """Create symlink `link` -> `target`; False where symlinks are unavailable (the caller copies instead)."""
    if not HAVE_SYMLINKS:
        return False
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        return False
    return True


# --- reflinks (copy-on-write clones) ------------------------------------------------------

_FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
# What a filesystem (or a pair of them) that cannot clone answers; anything else is a real error.
_NO_CLONE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS,
                       errno.EBADF, errno.EPERM})


@functools.lru_cache(maxsize=1)
def _clonefile() -> Callable[[bytes, bytes, int], int] | None:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).clonefile
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    fn.restype = ctypes.c_int

    def call(src: bytes, dst: bytes, flags: int) -> int:
        """0, or the errno clonefile(2) set."""
        return 0 if fn(src, dst, flags) == 0 else ctypes.get_errno()

    return call


def reflink(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Create `dst` (which must not exist) sharing `src`'s blocks, copy-on-write; False where this cannot be done.

    Linux: `ioctl(FICLONE)` on btrfs, XFS (reflink=1), bcachefs, OCFS2 and the like; macOS: `clonefile(2)` on APFS.
    Elsewhere, across filesystems, or on ext4 and tmpfs, False (and no `dst` left): the caller hard-links or
    copies. Real errors (no space, read-only, no permission) raise OSError.
    """
    if not HAVE_REFLINK:
        return False
    if sys.platform == "darwin":
        fn = _clonefile()
        if fn is None:
            return False
        err = fn(os.fsencode(src), os.fsencode(dst), 0)
        if err == 0:
            return True
        if err in _NO_CLONE:
            return False
        raise OSError(err, os.strerror(err), str(dst))
    import fcntl

    with open(src, "rb") as s:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o644)
        try:
            fcntl.ioctl(fd, _FICLONE, s.fileno())
        except OSError as exc:
            os.close(fd)
            os.unlink(dst)
            if exc.errno in _NO_CLONE:
                return False
            raise
        os.close(fd)
    return True


__all__ = [
    "HAVE_REFLINK", "O_BINARY", "allocated_bytes", "boot_id", "free_bytes", "fsync_dir", "pid_alive",
    "pid_namespace", "pread_into", "pwrite", "reflink", "start_time", "start_writeback", "symlink",
]
