"""Target paths: which relative paths a manifest may name, and how variants and `--only`/`--exclude` select them."""

from __future__ import annotations

import fnmatch
import re
import unicodedata


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
    return None


__all__ = ["path_matches", "path_problem", "selects"]
