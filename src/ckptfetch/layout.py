"""Where a file lands under the destination: the `layout` of its manifest entry.

- `plain` (default): at DEST/KEY.
- `hf-cache`: exactly as huggingface_hub stores it under its cache dir (DEST =
  what HF_HUB_CACHE points at), so `hf_hub_download(...)` with
  `HF_HUB_OFFLINE=1` finds it::

      models--ORG--NAME/blobs/<etag>                        the bytes
      models--ORG--NAME/snapshots/<commit>/<path-in-repo>   -> ../../blobs/<etag> (relative link)
      models--ORG--NAME/refs/<revision>                     the commit, no newline

  The etag is the Hub's, unquoted (for LFS files the sha256, else the git blob
  id). Where symlinks are not available the snapshot entry is a copy.
- `torch-hub`: at DEST/checkpoints/<file name of the URL>, as
  `torch.hub.load_state_dict_from_url` keeps it (DEST = $TORCH_HOME/hub); a
  folder taken from an archive (a repo's source tree for `torch.hub.load`)
  at DEST/KEY/, where KEY is the folder name torch.hub gives the repo.

For `hf-cache` and `torch-hub` the manifest KEY is a logical name (for
`--only`, variants and messages); `located` says where the file really is.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import compat
from .errors import DownloadError, UsageError
from .manifest import FileEntry
from .sources import huggingface as hf
from .status import Layout

HF_OWN_TOP = (".locks", "CACHEDIR.TAG")  # what huggingface_hub itself keeps at the top of its cache
HF_OWN_IN_REPO = ("refs", ".no_exist", "trees")  # ... and inside a repo folder, beside blobs/ and snapshots/


def torch_hub_dir() -> str:
    """torch's hub dir: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return os.path.join(os.path.expanduser(home), "hub")


def default_dest(layout: str) -> Path | None:
    """Where a layout's files go when no --dest is given (None: the manifest's root)."""
    if layout == Layout.HF_CACHE:
        return Path(hf.hub_cache_dir())
    if layout == Layout.TORCH_HUB:
        return Path(torch_hub_dir())
    return None


def hub_file(e: FileEntry) -> hf.HubFile | None:
    """The Hub file an entry comes from (its first Hub URL), if any."""
    for url in e.urls:
        f = hf.parse(url)
        if f is not None:
            return f
    return None


def check(entries: list[FileEntry]) -> None:
    """Refuse entries a layout cannot place, and two files landing on one path."""
    seen: dict[str, str] = {}
    for e in entries:
        if e.layout == Layout.HF_CACHE and (e.archive or e.manual is not None or hub_file(e) is None):
            raise UsageError(
                f"{e.path}: the hf-cache layout only places Hugging Face files (hf:// or huggingface.co/.../resolve/ "
                "URLs); give this file `layout: plain` or `layout: torch-hub` in the manifest"
            )
        if e.layout == Layout.TORCH_HUB and not e.folder:
            rel = located(e, Path("."))
            if rel is not None and rel in seen and seen[rel] != e.path:
                raise UsageError(f"{e.path} and {seen[rel]} would both land at {rel} in the torch-hub layout")
            if rel is not None:
                seen[rel] = e.path


def url_file_name(e: FileEntry) -> str:
    """The file name torch.hub would give the download: the last part of the URL's path."""
    f = hub_file(e)
    if f is not None:
        name = posixpath.basename(f.path)
    elif e.urls:
        name = posixpath.basename(unquote(urlsplit(e.urls[0]).path))
    else:
        name = posixpath.basename(e.path)
    if name in ("", ".", "..") or "\\" in name or "\x00" in name:
        raise UsageError(f"{e.path}: the torch-hub layout names files after their URL, and {e.urls[0] if e.urls else e.path!r} "
                         "has no usable file name; use `layout: plain` for it")
    return name


def repo_folder(f: hf.HubFile) -> str:
    return f.cache_folder


def read_ref(dest: Path, f: hf.HubFile) -> str | None:
    """The commit huggingface_hub's cache records for `f.revision`."""
    if hf.COMMIT_RE.match(f.revision):
        return f.revision
    try:
        text = (dest / repo_folder(f) / "refs" / f.revision).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if hf.COMMIT_RE.match(text) else None


def located(e: FileEntry, dest: Path) -> str | None:
    """Where entry `e` is (or would be) under `dest`, relative; None when that cannot be known offline.

    For hf-cache it is the snapshot entry of the commit the lock pins, else the
    one `refs/<revision>` names: the file huggingface_hub would return.
    """
    if e.layout == Layout.TORCH_HUB:
        # A source tree (a folder of an archive) lands as it is: `DEST/KEY/`, named as torch.hub names
        # a repo's folder (`facebookresearch_dinov2_main/`); single files go to `checkpoints/`.
        return e.path if e.archive and (e.folder or e.parent) else f"checkpoints/{url_file_name(e)}"
    if e.layout == Layout.HF_CACHE:
        f = hub_file(e)
        if f is None:
            return None
        commit = e.commit or read_ref(dest, f)
        return f"{repo_folder(f)}/snapshots/{commit}/{f.path}" if commit else None
    return e.path


def blob_of(dest: Path, rel: str) -> str | None:
    """For an hf-cache snapshot entry: the blob it links to, relative to `dest` (None for a copy)."""
    path = dest / rel
    if not path.is_symlink():
        return None
    real = Path(os.path.realpath(path))
    try:
        return real.relative_to(Path(os.path.realpath(dest))).as_posix()
    except ValueError:
        return None


def blob_target(dest: Path, e: FileEntry, meta: dict[str, str]) -> tuple[Path, str, str]:
    """(blob path, commit, etag) for a Hub file resolved with `meta`."""
    f = hub_file(e)
    # From a plain mirror (offline) the Hub says nothing: a lock file's commit and sha256 stand in. The blob is
    # then named by its sha256, as huggingface_hub names LFS blobs (it names small files by their git blob id);
    # hf_hub_download reads through the snapshot link either way.
    commit = meta.get("commit") or e.commit
    etag = meta.get("etag") or (e.integrity.hashes.get("sha256") if e.commit else None)
    if f is None or not commit or not hf.COMMIT_RE.match(commit) or not etag:
        raise DownloadError(
            f"{e.path}: the hf-cache layout needs the Hub's commit and the file's etag or sha256, and neither the "
            "source (a plain mirror?) nor a lock file gave them; run `ckptfetch lock` once where the Hub is "
            "reachable, or use --layout plain"
        )
    if "/" in etag or etag in (".", "..") or "\x00" in etag:
        raise DownloadError(f"{e.path}: the Hub sent an etag that is not a valid blob name; refused")
    return dest / repo_folder(f) / "blobs" / etag, commit, etag


def link_snapshot(dest: Path, e: FileEntry, commit: str, etag: str) -> str:
    """Make `snapshots/<commit>/<path>` point at `blobs/<etag>` and write the ref; returns the snapshot path.

    The link is made under a temporary name and renamed over, so a reader never
    sees a half-made entry. Where symlinks are unavailable the blob is copied.
    """
    f = hub_file(e)
    assert f is not None
    folder = dest / repo_folder(f)
    rel = f"{repo_folder(f)}/snapshots/{commit}/{f.path}"
    link = dest / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    blob = folder / "blobs" / etag
    relative = os.path.relpath(blob, link.parent)  # ../../blobs/<etag>, one more ../ per folder in the path
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if not (link.is_symlink() and os.readlink(link) == relative):
            if not compat.symlink(relative, tmp):
                # No symlinks here: the snapshot entry holds the bytes, as huggingface_hub then does (it moves
                # the new blob there; a later file with the same blob is fetched again).
                os.replace(blob, tmp)
            os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    if f.revision != commit:
        # huggingface_hub writes no ref when the revision is the commit itself.
        ref = folder / "refs" / f.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        try:
            current = ref.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != commit:
            tmp_ref = ref.with_name(f".{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp_ref.write_text(commit, encoding="utf-8")
            os.replace(tmp_ref, ref)
    return rel


def own_files(dest: Path, repo_folders: set[str]) -> set[str]:
    """Files huggingface_hub keeps beside the snapshots of `repo_folders` (refs, locks): not UNLISTED."""
    out: set[str] = set()
    roots = [dest / name for name in HF_OWN_TOP] + [dest / r / name for r in repo_folders for name in HF_OWN_IN_REPO]
    for root in roots:
        if root.is_file():
            out.add(root.relative_to(dest).as_posix())
        elif root.is_dir():
            out.update(p.relative_to(dest).as_posix() for p in root.rglob("*") if not p.is_dir())
    return out


__all__ = [
    "blob_of", "blob_target", "check", "default_dest", "hub_file",
    "link_snapshot", "located", "own_files", "torch_hub_dir", "url_file_name",
]
