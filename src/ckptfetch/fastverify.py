"""`ckptfetch verify DIR` when nothing changed, with nothing but os, json and sqlite3.

CI runs `verify` on every build, and the usual answer is "every file is as it
was". That answer comes from the record and the verified-state cache alone (a
`stat` per file), so loading the library (dataclasses, pathlib, typing, hashing,
URL handling: ~3x the interpreter's own start-up) would be most of the cost.
This module settles only the all-OK case: every recorded file exists, has its
recorded size, and its device, inode, size, mtime_ns and ctime_ns equal a cache
entry whose digests match the recorded ones. Anything else (missing, changed,
unpinned, no cache, an odd record) returns None and the caller runs the full
`verify`, which hashes and reports. Whether cached digests match the record is
`pins.judge`, the rule every check uses. The output is the same as
`report.print_verify` prints for an all-OK result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from .pins import judge, judge_size

# Mirrors state.STATE_DIR / RECORD / CACHE; a test checks they agree.
STATE_DIR = ".ckptfetch"
RECORD = "record.json"
CACHE = "state.sqlite"


def shown(directory: str) -> str:
    """`str(pathlib.Path(directory))` without importing pathlib (POSIX rules)."""
    if directory.startswith("//") and not directory.startswith("///"):
        return "//" + "/".join(p for p in directory[2:].split("/") if p not in ("", "."))
    parts = [p for p in directory.split("/") if p not in ("", ".")]
    head = "/" if directory.startswith("/") else ""
    return head + "/".join(parts) or "."


ALGORITHMS = ("md5", "sha1", "sha256", "sha512")  # hashing.ALGORITHMS; a test checks they agree


def _unchanged(source: str, recorded: object) -> bool:
    """Whether the manifest file is as it was when the record was written (size and mtime_ns)."""
    try:
        st = os.stat(source)
    except (OSError, ValueError):
        return False
    return recorded == [st.st_size, st.st_mtime_ns]


def expected_files(record: object, record_only: bool = False) -> dict[str, tuple[dict[str, str], int | None, str]] | None:
    """rel -> (hashes, size, where the file is) from a parsed record.json, as api.verify reads it; None if odd.

    Records this module cannot settle alone give None, and the full verify runs: a lock file beside the
    recorded manifest (its pins win over the record's), hf-cache files (their snapshot links are checked),
    and, unless `record_only`, a manifest file changed since the record was written (its pins may have).
    """
    if not isinstance(record, dict) or not isinstance(record.get("manifests"), dict) or not record["manifests"]:
        return None
    out: dict[str, tuple[dict[str, str], int | None, str]] = {}
    for name, info in record["manifests"].items():
        if not isinstance(info, dict):
            return None
        source = info.get("source")
        if not isinstance(source, str) or os.path.exists(os.path.join(os.path.dirname(source), f"{name}.lock.yaml")):
            return None
        if not record_only and not _unchanged(source, info.get("manifest_stat")):
            return None  # the manifest may have changed its pins since: the full verify compares them
        files = info.get("files", {})
        if not isinstance(files, dict):
            return None
        for rel, pins in files.items():
            if not isinstance(pins, dict) or "blob" in pins:
                return None
            size, at = pins.get("size"), pins.get("at", rel)
            if (size is not None and not isinstance(size, int)) or not isinstance(at, str):
                return None
            out[rel] = ({k: v for k, v in pins.items() if k in ALGORITHMS}, size, at)
    return out


def all_ok_from_cache(directory: str, record_only: bool = False) -> list[str] | None:
    """The sorted recorded paths when every one is settled OK by the cache, else None."""
    state = os.path.join(directory, STATE_DIR)
    try:
        with open(os.path.join(state, RECORD), "rb") as f:
            expected = expected_files(json.loads(f.read()), record_only)
    except (OSError, ValueError):
        return None
    if not expected:
        return None
    db = os.path.join(state, CACHE)
    if not os.path.isfile(db):
        return None
    try:
        conn = sqlite3.connect(db, timeout=30)
    except sqlite3.Error:
        return None
    try:
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digests FROM verified")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    for hashes, size, at in expected.values():
        row = rows.get(at)
        if not hashes or row is None:
            return None
        try:
            st = os.stat(os.path.join(directory, at))
        except (OSError, ValueError):
            return None
        if judge_size(st.st_size, size) is not None:
            return None
        if tuple(row[:5]) != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        try:
            cached = json.loads(row[5])
        except (TypeError, ValueError):
            return None
        if not isinstance(cached, dict) or not all(isinstance(d, str) for d in [*hashes.values(), *cached.values()]):
            return None
        # The same rule as every other check (a recorded digest may be a weak pin's prefix).
        if judge(hashes, cached) != (True, ""):
            return None
    return sorted(expected)


def run(directory: str | None, quiet: bool, record_only: bool = False) -> bool:
    """Print the all-OK report and return True, or print nothing and return False."""
    directory = "models" if directory is None else directory
    try:
        # A regular file does not hold the cache: S_ISREG check as Path.is_dir() would do it.
        if not os.path.isdir(directory):
            return False
    except (OSError, ValueError):
        return False
    paths = all_ok_from_cache(directory, record_only)
    if paths is None:
        return False
    if not quiet:
        sys.stdout.write("".join(f"{p}: OK\n" for p in paths))
        sys.stdout.flush()
        n = len(paths)
        sys.stderr.write(f"ckptfetch: {n} file{'' if n == 1 else 's'} in {shown(directory)}: {n} OK\n")
    return True
