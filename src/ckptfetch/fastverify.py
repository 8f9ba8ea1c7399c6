"""`ckptfetch verify DIR` when nothing changed, with nothing but os, json and sqlite3.

CI runs `verify` on every build, and the usual answer is "every file is as it
was". That answer comes from the record and the verified-state cache alone (a
`stat` per file), so loading the library (dataclasses, pathlib, typing, hashing,
URL handling: ~3x the interpreter's own start-up) would be most of the cost.
This module settles only the all-OK case: every recorded file exists, has its
recorded size, and its device, inode, size, mtime_ns and ctime_ns equal a cache
entry whose digests match the recorded ones. Anything else (missing, changed,
unpinned, no cache, an odd record) returns None and the caller runs the full
`api.verify`, which hashes and reports. The output is the same as
`report.print_verify` prints for an all-OK result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

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


def expected_files(record: object) -> dict[str, tuple[dict[str, str], int | None]] | None:
    """rel -> (hashes, size) from a parsed record.json, as api.verify reads it; None if odd."""
    if not isinstance(record, dict) or not isinstance(record.get("manifests"), dict) or not record["manifests"]:
        return None
    out: dict[str, tuple[dict[str, str], int | None]] = {}
    for info in record["manifests"].values():
        files = info.get("files", {}) if isinstance(info, dict) else None
        if not isinstance(files, dict):
            return None
        for rel, pins in files.items():
            if not isinstance(pins, dict):
                return None
            size = pins.get("size")
            if size is not None and not isinstance(size, int):
                return None
            out[rel] = ({k: v for k, v in pins.items() if k != "size"}, size)
    return out


def all_ok_from_cache(directory: str) -> list[str] | None:
    """The sorted recorded paths when every one is settled OK by the cache, else None."""
    state = os.path.join(directory, STATE_DIR)
    try:
        with open(os.path.join(state, RECORD), "rb") as f:
            expected = expected_files(json.loads(f.read()))
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
    for rel, (hashes, size) in expected.items():
        row = rows.get(rel)
        if not hashes or row is None:
            return None
        try:
            st = os.stat(os.path.join(directory, rel))
        except (OSError, ValueError):
            return None
        if size is not None and st.st_size != size:
            return None
        if tuple(row[:5]) != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        try:
            cached = json.loads(row[5])
        except (TypeError, ValueError):
            return None
        if not isinstance(cached, dict):
            return None
        for algo, digest in hashes.items():
            if not isinstance(digest, str) or str(cached.get(algo, "")).lower() != digest.lower():
                return None
    return sorted(expected)


def run(directory: str | None, quiet: bool) -> bool:
    """Print the all-OK report and return True, or print nothing and return False."""
    directory = "models" if directory is None else directory
    try:
        # A regular file does not hold the cache: S_ISREG check as Path.is_dir() would do it.
        if not os.path.isdir(directory):
            return False
    except (OSError, ValueError):
        return False
    paths = all_ok_from_cache(directory)
    if paths is None:
        return False
    if not quiet:
        sys.stdout.write("".join(f"{p}: OK\n" for p in paths))
        sys.stdout.flush()
        sys.stderr.write(f"ckptfetch: {len(paths)} files in {shown(directory)}: {len(paths)} OK\n")
    return True
