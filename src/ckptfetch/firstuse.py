"""First use from a library: `ckptfetch.path(manifest, file)` is the verified file, fetched (only it) if needed.

A library that downloads its weights the first time they are needed calls
`path()` where it would have built a cache path and called `urlretrieve`:

    weights = ckptfetch.path("mypkg:manifests/models.yaml", "detector.pth")

The manifest may be a name, a path, a loaded `Manifest`, or `PACKAGE:RESOURCE`
for a manifest shipped inside a Python package (read with importlib.resources).
A file already in place and verified costs a stat and a cache look-up; else
it is fetched as `get --only FILE` would fetch it, under the same per-file
inter-process lock, so many threads and processes asking at once cause one
download. Errors are the CLI's (`ckptfetch.CkptfetchError` subclasses).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .concrete import ManifestRef, check_entry, load, located
from .config import effective
from .errors import ManifestError, UsageError
from .fetching import fetch
from .manifest import FileEntry, Manifest, load_manifest, manifest_stem
from .state import STATE_DIR, VerifiedCache
from .status import Check
from .urls import parse_hashed, parse_mirrors
from .yamlsafe import hint

_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def package_resource(ref: str) -> tuple[str, str] | None:
    """(package, resource) when `ref` is `PACKAGE:RESOURCE`, else None (a name, a path, a drive letter).

    >>> package_resource("mypkg:manifests/models.yaml"), package_resource("C:/models.yaml")
    (('mypkg', 'manifests/models.yaml'), None)
    """
    pkg, sep, resource = ref.partition(":")
    if not sep or not resource or len(pkg) < 2 or not _PACKAGE.match(pkg) or os.path.exists(ref):
        return None
    return pkg, resource


@contextlib.contextmanager
def opened(ref: ManifestRef) -> Iterator[tuple[Manifest, bool]]:
    """The manifest `ref` names, and whether it ships inside a package (then it may be a temporary copy)."""
    if isinstance(ref, Manifest):
        yield ref, False
        return
    text = os.fspath(ref)
    found = package_resource(text)
    if found is None:
        yield load(text), False
        return
    import importlib.resources

    pkg, resource = found
    try:
        item = importlib.resources.files(pkg).joinpath(resource)
    except ModuleNotFoundError:
        raise ManifestError(f"no Python package {pkg!r} to read {resource} from", text) from None
    if not item.is_file():
        raise ManifestError(f"package {pkg!r} has no file {resource}", text)
    if isinstance(item, Path):
        yield load_manifest(item), True
        return
    # A zipped package: copied out, under its own name (the loader checks it) and with its lock file if it has one.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ckptfetch-manifest-") as tmp:
        copy = Path(tmp) / item.name
        copy.write_bytes(item.read_bytes())
        lock = item.parent.joinpath(f"{manifest_stem(copy)}.lock.yaml") if hasattr(item, "parent") else None
        if lock is not None and lock.is_file():
            (Path(tmp) / lock.name).write_bytes(lock.read_bytes())
        yield load_manifest(copy), True


def pick(m: Manifest, file: str, variant: str | None) -> tuple[FileEntry, str]:
    """The entry for `file` (a target path, a glob matching one file, or a file inside a folder entry) and its key."""
    entries = m.select([variant]) if variant else list(m.files.values())
    for e in entries:
        if e.path == file:
            return e, file
    folder = next((e for e in entries if e.folder and file.startswith(e.path)), None)
    if folder is not None:
        return folder, file  # listed when fetched; `file` is one of its files
    matched = [e for e in entries if fnmatch.fnmatchcase(e.path, file)]
    if len(matched) == 1:
        return matched[0], matched[0].path
    where = f" of variant {variant!r}" if variant else ""
    if matched:
        raise UsageError(f"{file!r} matches {len(matched)} files{where} of manifest {m.name!r}: "
                         + ", ".join(e.path for e in matched[:5]))
    raise UsageError(f"no file {file!r}{where} in manifest {m.name!r}{hint(file, [e.path for e in entries])}")


def exactly(key: str) -> tuple[list[str], list[str]]:
    """`--only` and `--exclude` selectors that take the file `key` and nothing else.

    A selector without a slash also takes that file name in every folder, so those are excluded.

    >>> exactly("a[1].bin"), exactly("sub/a.bin")
    ((['a[[]1].bin'], ['*/a[[]1].bin']), (['sub/a.bin'], []))
    """
    only = glob.escape(key)
    return [only], ([] if "/" in key else [f"*/{only}"])


def _destination(m: Manifest, dest: str | os.PathLike[str] | None, packaged: bool) -> Path:
    if dest is not None:
        return Path(dest)
    configured = effective()["dest"]
    if configured.value is not None:
        return Path(configured.value)
    if packaged:
        # A relative `root` means the project checkout for `get`; a library has no checkout: the user's cache.
        import platformdirs

        return Path(platformdirs.user_cache_dir("ckptfetch", appauthor=False)) / m.name
    return Path(m.root)


def _in_place(root: Path, e: FileEntry) -> Path | None:
    """The file if it is already there and verified (no lock, no network), else None."""
    if e.folder or not (root / STATE_DIR).is_dir():
        return None
    rel = located(e, root)
    if rel is None:
        return None
    cache = VerifiedCache(root)
    try:
        status, _ = check_entry(root, e, cache)
    finally:
        cache.close()
    return Path(os.path.abspath(root / rel)) if status == Check.OK else None


def path(manifest: ManifestRef, file: str, *, dest: str | os.PathLike[str] | None = None,
         variant: str | None = None) -> Path:
    """The verified file `file` of `manifest`, fetched (it alone) into `dest` first if it is missing or wrong.

    `dest` defaults to the configured `dest` (CKPTFETCH_DEST, pyproject.toml,
    the user's config.toml), else for a manifest inside a package the user's
    cache dir (`~/.cache/ckptfetch/NAME` on Linux), else the manifest's root.
    `variant` narrows the files `file` is looked up in. Mirrors come from the
    same configuration (CKPTFETCH_MIRRORS first), and so do hashed mirrors
    (CKPTFETCH_HASHED_MIRRORS).
    """
    with opened(manifest) as (m, packaged):
        e, key = pick(m, file, variant)
        root = _destination(m, dest, packaged)
        ready = _in_place(root, e)
        if ready is not None:
            return ready
        settings = effective()
        mirrors = parse_mirrors(settings["mirrors"].value)
        only, exclude = exactly(key)
        result = fetch(m, root, only=only, exclude=exclude, jobs=1, mirrors=mirrors, raise_on_error=True,
                       hashed_mirrors=parse_hashed(settings["hashed-mirrors"].value))
        if key not in result.paths:
            raise UsageError(f"{file!r} is not a file of folder entry {e.path!r} of manifest {m.name!r}")
        return Path(os.path.abspath(result.paths[key]))


__all__ = ["exactly", "opened", "package_resource", "path", "pick"]
