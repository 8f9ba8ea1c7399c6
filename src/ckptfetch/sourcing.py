"""Getting one file's bytes from the first of its sources that yields verified bytes.

Each URL (hashed mirrors' objects and mirror rewrites first) is resolved by its source only when its
turn comes; the pins the source declares (the sha256 a hub knows) are merged
with the manifest's before any byte moves, and the one engine downloads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import download as dl
from .checking import needed_algorithms
from .download.settings import Settings
from .errors import DownloadError
from .failover import first_success
from .hashing import hash_file
from .manifest import Integrity
from .pins import first_mismatch
from .proclock import locked
from .progress import Reporter
from .reuse import Reuse
from .sources import Context, Resolved, resolve
from .sources import huggingface as hf
from .urls import Mirror, candidates, hashed_urls, redact

if TYPE_CHECKING:
    import requests

Target = Path | Callable[[dict[str, str]], Path]
"""Where the bytes go: a path, or a function of the source's metadata (a blob named after the Hub's etag)."""


def merge_pins(
    integrity: Integrity, hashes: dict[str, str], size: int | None, label: str, url: str
) -> tuple[dict[str, str], int | None]:
    """The manifest's pins plus those a source declared; a disagreement is an error before any byte moves.

    A weak pin (a sha256 prefix from the file name) gives way to a full digest the source declares, when
    that digest starts with it.
    """
    merged = dict(integrity.checks)
    for algo, digest in hashes.items():
        digest = digest.lower()
        pinned = merged.setdefault(algo, digest)
        if not digest.startswith(pinned):
            what = f"the {integrity.weak_origin} says it starts with" if pinned == integrity.weak else "the manifest pins"
            raise DownloadError(
                f"{label}: {redact(url)} declares {algo} {digest} but {what} {pinned}; "
                "the upstream file changed, or the manifest is wrong. Nothing was downloaded."
            )
        merged[algo] = digest
    if size is not None and integrity.size is not None and size != integrity.size:
        raise DownloadError(
            f"{label}: {redact(url)} declares {size} bytes but the manifest pins {integrity.size}; "
            "the upstream file changed, or the manifest is wrong. Nothing was downloaded."
        )
    return merged, integrity.size if integrity.size is not None else size


@dataclass
class Fetcher:
    """What every download of a run shares: the pooled session, settings, mirrors, reporter, and DIR for locks."""

    dest: Path
    mirrors: list[Mirror]
    settings: Settings
    reporter: Reporter
    algorithms: tuple[str, ...] = ()  # digests to compute besides those the pins need
    offline: bool = False  # only mirrors and local sources: no request reaches an original host
    resolved: dict[str, Resolved] = field(default_factory=dict)  # what the plan already asked (sizes), used once
    reuse: Reuse | None = None  # the store and caches (`reuse.py`), for fetches that ask for it
    hashed: list[str] = field(default_factory=list)  # hashed mirrors' roots (`ROOT/sha256/<hex>`), tried first
    pool_size: int = 8  # connections the session keeps per host
    _session: requests.Session | None = field(default=None, init=False, repr=False)
    _session_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def session(self) -> requests.Session:
        """The run's pooled session, made on first use: a run that downloads nothing never imports requests."""
        with self._session_lock:
            if self._session is None:
                self._session = dl.make_session(self.pool_size)
            return self._session

    def close(self) -> None:
        """Close the session's connections, if it was ever made."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()

    def algos(self, hashes: dict[str, str]) -> list[str]:
        return needed_algorithms(hashes, self.algorithms)

    def fetch(self, urls: Sequence[str], target: Target, integrity: Integrity, label: str, *, sync_dir: bool = True,
              reuse: bool = False, hashed_only: bool = False) -> tuple[dict[str, str], dict[str, str]]:
        """Fetch `target` from the first of `urls` (hashed mirrors and mirrors first) that yields verified bytes.

        A `target` that is a function of the source's metadata and already holds
        the right bytes is not fetched again. With `reuse`, bytes this machine
        already has under the pins the source declared (a Hub file's sha256) are
        placed instead of downloaded, and downloaded bytes go to the store.
        `hashed_only` asks the hashed mirrors alone. Returns (digests, the
        source's metadata).
        """
        ctx = Context(self.session, self.settings, label)
        hashed = hashed_urls(self.hashed, known_sha256(integrity))
        by_hash = set(hashed)

        def attempt(url: str) -> tuple[dict[str, str], dict[str, str]]:
            found = self.resolved.pop(url, None) or resolve(url, ctx)
            hashes, size = merge_pins(integrity, found.hashes, found.size, label, url)
            # A hashed mirror knows bytes, not where they came from: no store's ETag may name a Hub blob.
            meta = {"source": "hashed-mirror"} if url in by_hash else found.meta

            def get(path: Path) -> dict[str, str]:
                return self._get(found, path, hashes, size, label, sync_dir, reuse, callable(target))

            if not callable(target):
                return get(target), meta
            path = target(meta)
            # Several entries may share one blob (the same repo file under two keys, identical files):
            # one download at a time per blob, and a blob already in place is not fetched again.
            with locked(self.dest, f"blob:{path}", self.settings.cancel):
                if path.is_file() and (size is None or path.stat().st_size == size) and hashes:
                    have = hash_file(path, self.algos(hashes))
                    if first_mismatch(hashes, have) is None:
                        return have, meta
                return get(path), meta

        return first_success(hashed if hashed_only else self.candidates(urls, label, integrity), attempt, label)

    def _get(self, found: Resolved, path: Path, hashes: dict[str, str], size: int | None, label: str,
             sync_dir: bool, reuse: bool, blob: bool) -> dict[str, str]:
        """The engine's download of `found` to `path`, unless the store already has the bytes; then into the store."""
        into_store = self.reuse if reuse else None
        # Pins the manifest gave were looked for before any request; new ones (a Hub's sha256) now.
        if into_store is not None and (blob or found.hashes):
            taken = into_store.take(hashes, size, path, self.dest, self.algos(hashes), symlink_ok=not blob)
            if taken is not None:
                return taken.digests
        digests = dl.download(found.requests, path, hashes=hashes, size=size, algorithms=self.algos(hashes),
                           session=self.session, settings=self.settings, reporter=self.reporter, label=label,
                           sync_dir=sync_dir)
        if into_store is not None:
            into_store.keep(path, digests, self.dest, symlink_ok=not blob)
        return digests

    def candidates(self, urls: Sequence[str], label: str, integrity: Integrity | None = None) -> list[str]:
        """The URLs to try for one file, hashed mirrors and mirrors first; offline, an error when none serves it."""
        sha256 = known_sha256(integrity) if integrity is not None else None
        found = candidates(urls, self.mirrors, offline=self.offline, match_as=mirror_form,
                           hashed=hashed_urls(self.hashed, sha256))
        if not found:
            what = redact(urls[0]) if urls else label
            unknown = (" (--hashed-mirror serves only files whose sha256 is known: pinned, or in a lock file)"
                       if self.hashed and sha256 is None else "")
            raise DownloadError(
                f"{label}: offline, and no mirror serves {what}{unknown}; add a --mirror whose FROM it starts with "
                "(CKPTFETCH_MIRRORS) or a --hashed-mirror (CKPTFETCH_HASHED_MIRRORS), or drop --offline."
            )
        return found

    def from_hashed_mirror(self, target: Path, integrity: Integrity, label: str) -> dict[str, str] | None:
        """`target` fetched from a hashed mirror only (a member of an archive); None when none has it."""
        if not hashed_urls(self.hashed, known_sha256(integrity)):
            return None
        try:
            digests = self.fetch([], target, integrity, label, sync_dir=False, hashed_only=True)[0]
        except DownloadError:
            self.reporter.finish(label, False)
            return None  # the archive is the next source
        self.reporter.finish(label, True)
        return digests


def known_sha256(integrity: Integrity) -> str | None:
    """The file's full sha256 when its pins (or a weak pin of full length) give it: a hashed mirror's object name."""
    sha = integrity.checks.get("sha256")
    return sha if sha is not None and len(sha) == 64 else None


def mirror_form(url: str) -> str:
    """The form a URL is matched against mirrors in: an hf:// file as its Hub resolve URL (HF_ENDPOINT's host)."""
    if url.startswith("hf://"):
        f = hf.parse(url)
        if f is not None and f.path and not f.path.endswith("/"):
            return f.resolve_url()
    return url


__all__ = ["Fetcher", "Target", "known_sha256", "merge_pins"]
