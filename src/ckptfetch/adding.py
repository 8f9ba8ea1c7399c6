"""`ckptfetch add`: fetch a URL once, then write its manifest entry with md5, sha256 and size.

The file is fetched like `get` would fetch it (the same sources, engine and
locks) into the manifest's destination, so a later `get` finds it in place;
md5 and sha256 are computed as the bytes stream in. A Hub URL is written
pinned to the commit it resolved to. The manifest is edited in place with its
comments and order kept (`yamledit`), and created when it does not exist.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from .concrete import destination
from .download import Settings
from .errors import CkptfetchError, ManifestError, UsageError
from .fetching import fetch
from .firstuse import exactly
from .layout import hub_file
from .manifest import FileEntry, Manifest, load_manifest, parse_manifest, path_matches
from .progress import Reporter
from .sources import huggingface as hf
from .sources import source_for
from .urls import Mirror
from .yamledit import ManifestEdit

ALGOS = ("md5", "sha256")


@dataclass
class AddResult:
    """What `add` wrote: the entry (URL as written, digests, size) and where the file now is."""

    manifest: Path
    key: str
    url: str
    digests: dict[str, str]
    size: int
    created: bool
    replaced: bool
    variant: str | None
    at: Path
    commit: str | None = None
    note: str = ""  # something the user should do next (e.g. lock again)


def default_key(url: str) -> str:
    """The target path `add` uses without `--path`: the file name the URL ends in.

    >>> default_key("hf://org/repo@v1/sub/model.safetensors")
    'model.safetensors'
    >>> default_key("https://example.org/a/ckpt%20v2.pth?dl=1")
    'ckpt v2.pth'
    """
    f = hf.parse(url)
    name = posixpath.basename(f.path) if f is not None else posixpath.basename(unquote(urlsplit(url).path))
    if not name or source_for(url).name == "gdrive" or "." not in name:
        raise UsageError(f"cannot tell a file name from {url}; give the target with --path")
    return name


def _entry(path: Path, before: Manifest | None, key: str, url: str) -> FileEntry:
    """The new entry as the loader reads it (URL and key checked, a weak pin from the URL applied)."""
    doc = {"ckptfetch": 1, "name": before.name if before else _stem(path), "files": {key: {"url": url}}}
    if before is not None:
        doc.update(root=before.root, layout=str(before.layout))
    m = parse_manifest(yaml.safe_dump(doc, sort_keys=False), path)
    e = m.files[key]
    if e.folder:
        raise UsageError(f"{key!r} is a folder entry; `add` takes one file (write folder entries by hand)")
    return e


def _stem(path: Path) -> str:
    return path.name.rsplit(".", 1)[0]


def _write(path: Path, text: str) -> None:
    """Atomically, keeping the file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add(
    manifest: str | os.PathLike[str],
    url: str,
    *,
    path: str | None = None,
    variant: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    replace: bool = False,
    mirrors: Sequence[Mirror] | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> AddResult:
    """Fetch `url` into the manifest's destination and add (or with `replace`, re-pin) its entry."""
    source = Path(manifest)
    if not source.name.endswith((".yaml", ".yml")):
        raise UsageError(f"{source}: give the manifest as a FILE.yaml path (a bundled manifest: copy it first, "
                         "then add to the copy)")
    before = load_manifest(source) if source.exists() else None
    key = path or default_key(url)
    e = _entry(source, before, key, url)
    if before is not None and key in before.files and not replace:
        raise ManifestError(f"already lists {key!r}; pass --replace to pin it again from the URL", str(source))
    name = before.name if before else _stem(source)
    with tempfile.TemporaryDirectory(prefix="ckptfetch-add-") as tmp:
        # A lock beside the manifest does not list the new file yet: fetch as a manifest that has no lock.
        beside = source.with_name(f"{name}.lock.yaml").exists()
        one = Manifest(name, Path(tmp) / source.name if beside else source, {key: e}, {}, {},
                       root=before.root if before else "models", layout=e.layout)
        root = destination(one, dest, None)
        # Forced: a file already at the target may not be what this URL serves; the pins must come from the URL.
        result = fetch(one, root, force=True, jobs=1, mirrors=mirrors, reporter=reporter, settings=settings,
                       algorithms=ALGOS, raise_on_error=True)
    got = result.files[0]
    commit = got.meta.get("commit")
    f = hub_file(e)
    written = hf.at_commit(url, commit) if f is not None and commit and not hf.COMMIT_RE.match(f.revision) else url
    fields = {"url": written, **{a: got.digests[a] for a in ALGOS}, "size": got.size}
    edit = ManifestEdit(source, source.read_text(encoding="utf-8") if before is not None else None)
    edit.set_file(key, fields, replace=replace)
    if variant is not None:
        already = before is not None and any(path_matches(key, p) for p in before.variants.get(variant, ()))
        edit.add_to_variant(variant, key, already)
    want = dataclasses.replace(e, urls=(written,), integrity=dataclasses.replace(
        e.integrity, hashes={a: got.digests[a] for a in ALGOS}, size=got.size))
    text, _ = edit.render(want, before)
    _write(source, text)
    note = _refresh_record(source, root, key)
    return AddResult(source, key, written, {a: got.digests[a] for a in ALGOS}, got.size or 0, before is None,
                     before is not None and key in before.files, variant, result.paths[key], commit, note)


def _refresh_record(source: Path, root: Path, key: str) -> str:
    """Record the file under the manifest as written (its md5 too); already in place, so nothing is fetched."""
    only, exclude = exactly(key)
    try:
        fetch(source, root, only=only, exclude=exclude, jobs=1, raise_on_error=True)
    except CkptfetchError as exc:
        return f"the record in {root} was not updated: {exc}"
    return ""


__all__ = ["AddResult", "add", "default_key"]
