"""Finding manifests by name: a path on the command line, CKPTFETCH_MANIFESTS, ./manifests/, the bundled ones."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

from .errors import ManifestError
from .manifest import Manifest, load_manifest, manifest_stem
from .yamlsafe import hint


def bundled_dir() -> Path:
    """The manifests shipped inside the installed package."""
    return Path(__file__).resolve().parent / "manifests"


def search_dirs() -> list[Path]:
    """Where manifests are looked for, in order (as the README's "Lock files" section lists them)."""
    dirs: list[Path] = []
    env = os.environ.get("CKPTFETCH_MANIFESTS", "")
    dirs.extend(Path(d) for d in env.split(os.pathsep) if d)
    dirs.append(Path.cwd() / "manifests")
    dirs.append(bundled_dir())
    # Running from a source checkout without installing: the repo's manifests/.
    repo = Path(__file__).resolve().parents[2] / "manifests"
    if repo.is_dir() and repo not in dirs:
        dirs.append(repo)
    return dirs


def iter_manifest_files() -> Iterator[Path]:
    """Every manifest file found, first occurrence of a name wins."""
    seen: set[str] = set()
    for d in search_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix in (".yaml", ".yml") and not p.name.endswith((".lock.yaml", ".lock.yml")):
                stem = manifest_stem(p)
                if stem not in seen:
                    seen.add(stem)
                    yield p


def find_manifest(name_or_path: str) -> Path:
    """Resolve a manifest name or a path to a manifest file."""
    p = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path or "/" in name_or_path:
        if p.is_file():
            return p
        raise ManifestError("no such manifest file", name_or_path)
    for found in iter_manifest_files():
        if manifest_stem(found) == name_or_path:
            return found
    names = [manifest_stem(f) for f in iter_manifest_files()]
    raise ManifestError(
        f"no manifest named {name_or_path!r}{hint(name_or_path, names)}; "
        f"known: {', '.join(names) or 'none'}. Give a path to a .yaml file, or add its folder to CKPTFETCH_MANIFESTS."
    )


def shown_name(m: Manifest) -> str:
    """How to name manifest `m` in a command to run: by name when discovery finds this very file, else its path."""
    try:
        by_name = find_manifest(m.name).resolve() == m.source.resolve()
    except (ManifestError, OSError):
        by_name = False
    return m.name if by_name else shlex.quote(str(m.source))


def resolve_manifest(name_or_path: str) -> Manifest:
    """Find and load a manifest by name or path."""
    return load_manifest(find_manifest(name_or_path))


__all__ = ["bundled_dir", "find_manifest", "iter_manifest_files", "resolve_manifest", "search_dirs", "shown_name"]
