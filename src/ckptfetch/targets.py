"""Target paths: which relative paths a manifest may name, and how variants and `--only`/`--exclude` select them."""

from __future__ import annotations

import fnmatch
import re
import unicodedata

from . import compat

# Names Windows keeps for devices, with any extension (`NUL.tar.gz` is NUL), and the characters it refuses.
_WINDOWS_DEVICE = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3])(\..*)?$", re.IGNORECASE)
_WINDOWS_REFUSED = frozenset('<>:"|?*')


def selects(path: str, selector: str) -> bool:
    """Whether a `--only` / `--exclude` selector takes `path`: a glob over target paths, a folder with or
    without its slash (`sam_ckpts` takes `sam_ckpts/...`), or a bare file name (`sam_vit_b_01ec64.pth`).

    >>> [selects("sam_ckpts/sam_vit_b.pth", s) for s in ("sam_ckpts", "sam_vit_b.pth", "*.pth", "sam")]
    [True, True, True, False]
    """
    folder = selector.rstrip("/")
    return (path_matches(path, selector) or (bool(folder) and path_matches(path, folder + "/"))
            or ("/" not in selector and fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], selector)))


def path_matches(path: str, pattern: str) -> bool:
    """fnmatch, and a pattern ending in `/` (a folder entry's key) also takes everything under it."""
    if fnmatch.fnmatchcase(path, pattern):
        return True
    return pattern.endswith("/") and (path.startswith(pattern) or fnmatch.fnmatchcase(path, pattern + "*"))


def path_problem(text: str) -> str | None:
    """Why `text` is not a safe relative POSIX path, or None when it is."""
    if "\\" in text:
        return "contains a backslash; use forward slashes"
    if text.startswith("/"):
        return "is absolute; paths are relative to the destination"
    if re.match(r"^[A-Za-z]:", text):
        return "has a drive letter; paths are relative to the destination"
    if any(ord(c) < 32 or c == "\x7f" for c in text):
        return "contains a control character"
    if any(unicodedata.bidirectional(c) in ("LRO", "RLO", "LRE", "RLE", "PDF", "LRI", "RLI", "FSI", "PDI") for c in text):
        return "contains a bidirectional-override character, which makes printed paths lie"
    parts = text.split("/")
    if any(part == ".." for part in parts):
        return "contains `..`"
    if any(part in ("", ".") for part in parts):
        return "has an empty or `.` component"
    if parts[0] == ".ckptfetch":
        return "is inside .ckptfetch/, which ckptfetch reserves for its records"
    return windows_problem(text) if compat.WINDOWS_NAMES else None


def windows_problem(text: str) -> str | None:
    """Why Windows cannot create the relative path `text`, or None when it can.

    An error on Windows (`path_problem`), a `lint` warning elsewhere: a manifest is shared across systems.

    >>> [windows_problem(p) for p in ("a/b.pth", "aux/x", "a:b", "v1.")]  # doctest: +NORMALIZE_WHITESPACE
    [None, "names 'aux', a device on Windows (CON, NUL, COM1, ...)",
     'contains : (Windows does not allow <>:"|?* in file names)', "has 'v1.', which ends in a dot or space (Windows drops it)"]
    """
    for part in text.rstrip("/").split("/"):
        if _WINDOWS_DEVICE.match(part):
            return f"names {part!r}, a device on Windows (CON, NUL, COM1, ...)"
        refused = sorted(set(part) & _WINDOWS_REFUSED)
        if refused:
            return f"contains {' '.join(refused)} (Windows does not allow <>:\"|?* in file names)"
        if part.endswith((".", " ")):
            return f"has {part!r}, which ends in a dot or space (Windows drops it)"
    return None


__all__ = ["path_matches", "path_problem", "selects", "windows_problem"]
