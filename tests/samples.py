"""Synthetic stand-ins for a manifest's files, served by the test server."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .conftest import blob
from .httpserver import TestServer


def mirror_path(url: str) -> str:
    """Where `--mirror https://=SERVER/` sends `url`: /host/path?query."""
    parts = urlsplit(url)
    return f"/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def make_archive(fmt: str, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt]
        with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def serve_manifest(src: Path, server: TestServer, out_dir: Path, size: int = 20000) -> tuple[Path, dict[str, bytes]]:
    """Serve synthetic bytes for every source of manifest `src`.

    Writes a copy of the manifest into `out_dir` with its hashes swapped for
    the synthetic ones, and returns (copy, {target path: bytes}).
    """
    doc = yaml.safe_load(src.read_text())
    contents: dict[str, bytes] = {}
    archive_members: dict[str, dict[str, bytes]] = {}
    for n, (path, entry) in enumerate(doc["files"].items()):
        data = blob(size + n * 7, seed=n)
        contents[path] = data
        for algo in ("md5", "sha1", "sha256", "sha512"):
            if algo in entry:
                entry[algo] = hashlib.new(algo, data).hexdigest()
        if "size" in entry:
            entry["size"] = len(data)
        if "archive" in entry:
            archive_members.setdefault(entry["archive"], {})[entry["member"]] = data
        elif "manual" not in entry:
            for url in entry.get("urls", [entry.get("url")]):
                server.add(mirror_path(url), data)
    for name, members in archive_members.items():
        entry = doc["archives"][name]
        url = entry.get("url") or entry["urls"][0]
        fmt = "zip" if "zip" in url else "tar.gz"
        members = {**members, "unlisted/extra.txt": b"not listed, never extracted"}
        data = make_archive(fmt, members)
        for algo in ("md5", "sha1", "sha256", "sha512"):
            if algo in entry:
                entry[algo] = hashlib.new(algo, data).hexdigest()
        for u in entry.get("urls", [entry.get("url")]):
            server.add(mirror_path(u), data)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy = out_dir / src.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy, contents
