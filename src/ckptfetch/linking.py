"""Putting a file's bytes at another path: reflink, hardlink, copy or symlink, each atomically.

`get --link MODE` chooses; each mode falls back when the filesystem cannot
do it (`WAYS`): a reflink needs a copy-on-write filesystem (btrfs, XFS, APFS)
and both paths on it, a hardlink both paths on one filesystem (and, with
Linux's protected_hardlinks, a file the user owns), a symlink a system that has
them. A copy always works, and is what a store on another filesystem gets.

The new name is made under a temporary name beside the target
(`NAME.ckptfetch-link`, one per target: callers hold the target's lock) and
renamed over it, so a reader sees the old file or the new one, never a
half-made one. Copies are fsynced before the rename; links and clones share
blocks that are already on disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from . import _testhooks, compat
from .download.partial import leftovers as partial_leftovers
from .status import Link

WAYS: dict[str, tuple[Link, ...]] = {
    Link.AUTO: (Link.REFLINK, Link.HARDLINK, Link.COPY),
    Link.REFLINK: (Link.REFLINK, Link.COPY),
    Link.HARDLINK: (Link.HARDLINK, Link.COPY),
    Link.COPY: (Link.COPY,),
    Link.SYMLINK: (Link.SYMLINK, Link.COPY),
}
"""Each `--link` mode and the ways it tries, in order; the first that works is used."""

TMP_SUFFIX = ".ckptfetch-link"

# What link(2) answers when it cannot link these two paths (another filesystem, a file the user may not link
# under protected_hardlinks, too many links, no hardlinks at all): try the next way. Anything else is real.
_NO_HARDLINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def tmp_name(target: Path) -> Path:
    """The temporary name `place` uses beside `target` (a run killed before its rename leaves it)."""
    return target.with_name(target.name + TMP_SUFFIX)


def leftovers(target: Path) -> list[Path]:
    """What a killed run left beside `target`: a download's partial and sidecar (`download.partial`), and a
    link being made from the store (only ever made under the target's own lock)."""
    link = [tmp_name(target)] if os.path.lexists(tmp_name(target)) else []
    return [*partial_leftovers(target), *link]


def drop_leftovers(target: Path) -> None:
    """Remove what a run killed between its rename and its clean-up left beside a finished target."""
    for p in leftovers(target):
        p.unlink(missing_ok=True)


def copy(src: Path, dst: Path) -> None:
    """Copy `src` to a new file `dst` (the kernel's fast path where there is one), durably."""
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY | compat.O_BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make(way: Link, src: Path, dst: Path) -> bool:
    """Create `dst` (absent) from `src` by `way`; False when that way is not possible for these two paths.

    A symlinked `src` (an hf-cache snapshot entry) stands for the file it leads to: Linux's link(2) would
    link the symlink itself.
    """
    src = Path(os.path.realpath(src))
    if way == Link.REFLINK:
        return compat.reflink(src, dst)
    if way == Link.HARDLINK:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno in _NO_HARDLINK:
                return False
            raise
        return True
    if way == Link.SYMLINK:
        return compat.symlink(str(src), dst)
    copy(src, dst)
    return True


def place(src: Path, target: Path, mode: str = Link.AUTO) -> Link:
    """Put `src`'s bytes at `target` by the first way `mode` allows that works here, atomically; the way used.

    An existing `target` is replaced in one rename. Raises OSError when even a
    copy fails (no space, read-only, no permission), leaving no temporary file.

    >>> place(Path("store/sha256/ab/ab12..."), Path("models/sam.pth"))  # doctest: +SKIP
    <Link.HARDLINK: 'hardlink'>
    """
    tmp = tmp_name(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)  # left by a run killed before its rename; we hold the target's lock
    try:
        way = next(w for w in WAYS[Link(mode)] if make(w, src, tmp))
        _testhooks.point("link-before-rename")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.unlink(missing_ok=True)  # rename(2) does nothing when both names are already links to one file
    return way


__all__ = ["TMP_SUFFIX", "WAYS", "copy", "drop_leftovers", "leftovers", "make", "place", "tmp_name"]
