"""The manifest format: its types, and loading and validating a manifest file (README "Manifest format").

Manifests are read by the guarded safe loader (`yamlsafe`). Errors name the
file and the line, and suggest the closest known key. Finding a manifest by
name is `discovery`'s job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from . import yamlsafe
from .errors import ManifestError
from .hashing import ALGORITHMS, is_hex_digest, sha256_from_url
from .status import LAYOUTS, Layout
from .targets import path_matches, path_problem, selects
from .urls import redact
from .yamlsafe import hint, short

FORMAT_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
ARCHIVE_FORMATS = ("zip", "tar", "tar.gz", "tar.bz2", "tar.xz")
URL_SCHEMES = ("https://", "http://", "file://", "hf://", "s3://")
MAX_MANIFEST_BYTES = 16 << 20

TOP_KEYS = ("ckptfetch", "name", "description", "homepage", "root", "layout", "variants", "archives", "files")
FILE_KEYS = ("url", "urls", "archive", "member", "manual", "layout", "include", "size", *ALGORITHMS)
ARCHIVE_KEYS = ("url", "urls", "format", "size", *ALGORITHMS)


@dataclass(frozen=True)
class Integrity:
    """What a download must match: digests by algorithm, and a size."""

    hashes: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    # A sha256, or a prefix of one, that the URL carries by convention (torch hub / OpenMMLab file names,
    # OpenAI CLIP paths); only set when `hashes` is empty, and then checked instead.
    weak: str | None = None
    weak_origin: str = ""  # "file name" | "URL path"

    @property
    def pinned(self) -> bool:
        return bool(self.hashes)

    @property
    def checks(self) -> dict[str, str]:
        """What the bytes must match: the manifest's hashes, else the weak pin (`first_mismatch` takes prefixes)."""
        if self.hashes:
            return self.hashes
        return {"sha256": self.weak} if self.weak else {}

    @property
    def pin_level(self) -> str:
        """"pinned", "weak" or "unpinned", as `show` reports it."""
        return "pinned" if self.hashes else "weak" if self.weak else "unpinned"

    def describe_pin(self) -> str:
        """How the file is pinned, in words (`show`)."""
        if self.hashes:
            return "pinned"
        if self.weak:
            what = "sha256" if len(self.weak) == 64 else "sha256 prefix"
            return f"weakly pinned ({what} from the {self.weak_origin})"
        return "unpinned"


@dataclass(frozen=True)
class Archive:
    """A download that yields several files."""

    name: str
    urls: tuple[str, ...]
    integrity: Integrity
    format: str | None = None


@dataclass(frozen=True)
class FileEntry:
    """One target file and where it comes from."""

    path: str  # POSIX, relative to the destination root
    integrity: Integrity
    urls: tuple[str, ...] = ()
    archive: str | None = None
    member: str | None = None
    manual: str | None = None
    manual_url: str | None = None  # with `manual`: the page to visit (shown, never fetched)
    layout: str = Layout.PLAIN
    folder: bool = False  # `path` ends in "/": every file under the source's folder (an hf:// tree, an archive's)
    include: tuple[str, ...] = ()  # for a folder: fnmatch globs over paths inside it (empty: all)
    commit: str | None = None  # an hf:// file: fetch it at this commit (from a lock file or a folder listing)
    parent: str | None = None  # a file listed from folder entry `parent` (its key, ending in "/")

    @property
    def kind(self) -> str:
        if self.archive:
            return "archive"
        if self.manual is not None:
            return "manual"
        return "url"


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest."""

    name: str
    source: Path
    files: dict[str, FileEntry]
    archives: dict[str, Archive]
    variants: dict[str, tuple[str, ...]]
    root: str = "models"
    layout: str = Layout.PLAIN
    description: str = ""
    homepage: str = ""

    def select(self, variants: Sequence[str] = (), only: Sequence[str] = (),
               exclude: Sequence[str] = ()) -> list[FileEntry]:
        """Files in the union of `variants` (all when empty), narrowed by `only` and `exclude` selectors
        (see `selects`)."""
        paths = list(self.files)
        if variants:
            chosen: dict[str, None] = {}
            for v in variants:
                if v not in self.variants:
                    known = ", ".join(self.variants) or "none"
                    raise ManifestError(
                        f"no variant {short(v)} in manifest {self.name!r}{hint(v, self.variants)} (variants: {known})"
                    )
                for pattern in self.variants[v]:
                    chosen.update(dict.fromkeys(p for p in paths if path_matches(p, pattern)))
            paths = [p for p in paths if p in chosen]
        if only:
            paths = [p for p in paths if any(selects(p, g) for g in only)]
        if exclude:
            paths = [p for p in paths if not any(selects(p, g) for g in exclude)]
        return [self.files[p] for p in paths]

    def total_size(self, entries: Iterable[FileEntry]) -> int | None:
        """Sum of the sizes, or None when any is unknown."""
        total = 0
        for e in entries:
            if e.integrity.size is None:
                return None
            total += e.integrity.size
        return total


# --- parsing -------------------------------------------------------------


def _shown_url(text: str) -> str:
    """A URL for an error message: credentials and token parameters hidden, length bounded."""
    shown = redact(text)
    if "@" in text.split("?")[0] and "***@" not in shown:
        return "<a URL with credentials>"
    return short(shown)


class _Fields:
    """Validators for single values; each failure names the file, the line and what was expected."""

    def __init__(self, text: str, source: Path) -> None:
        self.source = source
        self.where = str(source)
        self.data, self.lines = yamlsafe.load(text, self.where)

    def fail(self, message: str, *keys: str) -> ManifestError:
        return ManifestError(message, self.where, self.lines.of(*keys))

    def mapping(self, value: Any, what: str, *keys: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a mapping, not {type(value).__name__}", *keys)
        for k in value:
            if not isinstance(k, str):
                raise self.fail(f"{what} has a non-string key {short(k)}", *keys)
        return value

    def known(self, value: dict[str, Any], allowed: Sequence[str], what: str, *keys: str) -> None:
        for k in value:
            if k not in allowed:
                raise self.fail(f"unknown key `{k}` in {what}{hint(k, allowed)}", *keys, k)

    def string(self, value: Any, what: str, *keys: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what} must be a non-empty string", *keys)
        return value

    def rel_path(self, value: Any, what: str, *keys: str) -> str:
        text = self.string(value, what, *keys)
        problem = path_problem(text)
        if problem:
            raise self.fail(f"{what} {short(text)} {problem}", *keys)
        return text

    def url(self, value: Any, what: str, *keys: str) -> str:
        text = self.string(value, what, *keys).strip()
        if not text.startswith(URL_SCHEMES):
            raise self.fail(f"{what} {_shown_url(text)} must start with https://, http://, file://, hf:// or s3://", *keys)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise self.fail(f"{what} {_shown_url(text)} is not a valid URL ({exc})", *keys) from None
        if parts.scheme in ("http", "https") and not parts.hostname:
            raise self.fail(f"{what} {_shown_url(text)} has no host name", *keys)
        if parts.scheme == "s3" and (not parts.netloc or not parts.path.strip("/") or parts.path.endswith("/")):
            raise self.fail(f"{what} {_shown_url(text)} must name an object: s3://BUCKET/KEY", *keys)
        if any(ord(c) < 33 or c == "\x7f" for c in text):
            raise self.fail(f"{what} {_shown_url(text)} contains spaces or control characters; percent-encode them", *keys)
        return text

    def layout(self, value: Any, default: str, *keys: str) -> str:
        if value is None:
            return default
        if value not in LAYOUTS:
            raise self.fail(
                f"`layout` {short(value)} is not one of {', '.join(LAYOUTS)}{hint(str(value), LAYOUTS)}", *keys, "layout"
            )
        return str(value)

    def urls(self, entry: dict[str, Any], what: str, *keys: str) -> tuple[str, ...]:
        if "url" in entry and "urls" in entry:
            raise self.fail(f"{what} has both `url` and `urls`; use one", *keys)
        if "url" in entry:
            return (self.url(entry["url"], "url", *keys, "url"),)
        listed = entry.get("urls")
        if not isinstance(listed, list) or not listed:
            raise self.fail(f"{what}: `urls` must be a non-empty list", *keys, "urls")
        return tuple(self.url(u, "url", *keys, "urls") for u in listed)

    def integrity(self, entry: dict[str, Any], *keys: str) -> Integrity:
        hashes: dict[str, str] = {}
        for algo in ALGORITHMS:
            if algo in entry:
                value = entry[algo]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    raise self.fail(
                        f"`{algo}` was read as the number {short(value)}: YAML turns an all-digit digest into a number; "
                        f"put the {ALGORITHMS[algo]} hex digits in quotes", *keys, algo,
                    )
                if not isinstance(value, str) or not is_hex_digest(algo, value.strip()):
                    raise self.fail(
                        f"`{algo}` must be {ALGORITHMS[algo]} hex digits, got {short(value)}", *keys, algo
                    )
                hashes[algo] = value.strip().lower()
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise self.fail(f"`size` must be a whole number of bytes, got {short(size)}", *keys, "size")
        return Integrity(hashes, size)

    def with_weak_pin(self, integrity: Integrity, urls: Sequence[str], *keys: str) -> Integrity:
        """`integrity` plus the sha256 (prefix) the URLs carry, when the manifest gives no hash."""
        if integrity.hashes:
            return integrity
        found: list[tuple[str, str]] = [p for p in map(sha256_from_url, urls) if p is not None]
        if not found:
            return integrity
        found.sort(key=lambda p: -len(p[0]))
        longest, origin = found[0]
        for prefix, _ in found[1:]:
            if not longest.startswith(prefix):
                raise self.fail(
                    f"the URLs disagree about the file's sha256 ({longest} vs {prefix}, read from their names); "
                    "give `sha256:` explicitly or fix the URLs", *keys,
                )
        return Integrity(integrity.hashes, integrity.size, weak=longest, weak_origin=origin)



class _Parser(_Fields):
    """A manifest file's sections, each checked and turned into the format's types."""

    def parse(self) -> Manifest:
        data = self.mapping(self.data, "the manifest")
        if not data:
            raise self.fail("the manifest is empty; it needs at least `ckptfetch: 1`, `name` and `files`")
        self.known(data, TOP_KEYS, "the manifest")
        name = self.header(data)
        root = data.get("root", "models")
        # A relative path like every target (or "." for the current folder): a manifest must not pick
        # /etc or ../.. as the destination.
        root = "." if root == "." else self.rel_path(root, "`root`", "root")
        layout = self.layout(data.get("layout"), Layout.PLAIN)
        archives = self.archives(data)
        files = self.files(data, archives, layout)
        return Manifest(
            name=name, source=self.source, files=files, archives=archives, variants=self.variants(data, files),
            root=root, layout=layout, description=str(data.get("description", "")),
            homepage=str(data.get("homepage", "")),
        )

    def header(self, data: dict[str, Any]) -> str:
        """Check the format version, name and text fields; returns the name."""
        version = data.get("ckptfetch")
        if version is None:
            raise self.fail("missing `ckptfetch: 1` (the format version)")
        if version != FORMAT_VERSION:
            raise self.fail(f"unsupported format version {short(version)}; this ckptfetch reads version 1", "ckptfetch")
        name = self.string(data.get("name"), "`name`", "name")
        if not NAME_RE.match(name):
            raise self.fail(f"`name` {short(name)} must match [a-z0-9][a-z0-9._-]*", "name")
        stem = manifest_stem(self.source)
        if stem != name:
            raise self.fail(f"`name` {short(name)} must equal the file name's stem {short(stem)}", "name")
        for key in ("description", "homepage"):
            if key in data and not isinstance(data[key], str):
                raise self.fail(f"`{key}` must be a string", key)
        return name

    def archives(self, data: dict[str, Any]) -> dict[str, Archive]:
        archives: dict[str, Archive] = {}
        for aname, raw in self.mapping(data.get("archives"), "`archives`", "archives").items():
            entry = self.mapping(raw, f"archive {short(aname)}", "archives", aname)
            self.known(entry, ARCHIVE_KEYS, f"archive {short(aname)}", "archives", aname)
            fmt = entry.get("format")
            if fmt is not None and fmt not in ARCHIVE_FORMATS:
                raise self.fail(
                    f"archive format {short(fmt)} is not one of {', '.join(ARCHIVE_FORMATS)}{hint(str(fmt), ARCHIVE_FORMATS)}",
                    "archives", aname, "format",
                )
            aurls = self.urls(entry, f"archive {short(aname)}", "archives", aname)
            archives[aname] = Archive(
                aname, aurls, self.with_weak_pin(self.integrity(entry, "archives", aname), aurls, "archives", aname), fmt,
            )
        return archives

    def files(self, data: dict[str, Any], archives: dict[str, Archive], layout: str) -> dict[str, FileEntry]:
        files: dict[str, FileEntry] = {}
        raw_files = self.mapping(data.get("files"), "`files`", "files")
        if not raw_files:
            raise self.fail("`files` is missing or empty", "files")
        members_seen: dict[tuple[str, str], str] = {}
        for fpath, raw in raw_files.items():
            keys = ("files", fpath)
            folder = isinstance(fpath, str) and fpath.endswith("/")
            self.rel_path(fpath[:-1] if folder else fpath, "target path", *keys)
            entry = self.mapping(raw, f"file {short(fpath)}", *keys)
            self.known(entry, FILE_KEYS, f"file {short(fpath)}", *keys)
            file_layout = self.layout(entry.get("layout"), layout, *keys)
            if "include" in entry and not folder:
                raise self.fail(f"`include` only applies to folder entries (a key ending in `/`), not {short(fpath)}", *keys, "include")
            if folder:
                files[fpath] = self.folder(fpath, entry, file_layout, archives)
            else:
                files[fpath] = self.one_file(fpath, entry, file_layout, archives, members_seen)
        _check_path_clashes(files, self)
        return files

    def one_file(self, fpath: str, entry: dict[str, Any], layout: str, archives: dict[str, Archive],
                 members_seen: dict[tuple[str, str], str]) -> FileEntry:
        keys = ("files", fpath)
        sources = [k for k in ("url", "urls", "archive", "manual") if k in entry]
        if "url" in entry and "urls" in entry:
            sources.remove("urls")
        if "manual" in entry and "url" in entry:
            sources.remove("url")  # with `manual`, `url` is the page where a person gets the file
        if len(sources) != 1:
            found = ", ".join(f"`{s}`" for s in sources) or "none"
            raise self.fail(
                f"file {short(fpath)} needs exactly one source (`url`, `urls`, `archive` + `member` or `manual`); found {found}",
                *keys,
            )
        integrity = self.integrity(entry, *keys)
        if "archive" in entry:
            aname = self.string(entry["archive"], "`archive`", *keys, "archive")
            if aname not in archives:
                raise self.fail(
                    f"file {short(fpath)} names archive {short(aname)}, which `archives` does not define{hint(aname, archives)}",
                    *keys, "archive",
                )
            if "member" not in entry:
                raise self.fail(f"file {short(fpath)} has `archive` but no `member`", *keys)
            member = self.rel_path(entry["member"], "member", *keys, "member")
            if (aname, member) in members_seen:
                raise self.fail(
                    f"member {short(member)} of archive {short(aname)} is already taken by {short(members_seen[aname, member])}",
                    *keys, "member",
                )
            members_seen[aname, member] = fpath
            return FileEntry(fpath, integrity, archive=aname, member=member, layout=layout)
        if "member" in entry:
            raise self.fail(f"file {short(fpath)} has `member` but no `archive`", *keys, "member")
        if "manual" in entry:
            text = self.string(entry["manual"], "`manual`", *keys, "manual")
            page = None
            if "url" in entry:
                page = self.url(entry["url"], "url", *keys, "url")
                if not page.startswith(("https://", "http://")):
                    raise self.fail(f"the `url` of manual file {short(fpath)} is a page to visit; it must be http(s)://",
                                    *keys, "url")
            return FileEntry(fpath, integrity, manual=text, manual_url=page, layout=layout)
        furls = self.urls(entry, f"file {short(fpath)}", *keys)
        return FileEntry(fpath, self.with_weak_pin(integrity, furls, *keys), urls=furls, layout=layout)

    def variants(self, data: dict[str, Any], files: dict[str, FileEntry]) -> dict[str, tuple[str, ...]]:
        variants: dict[str, tuple[str, ...]] = {}
        for vname, raw in self.mapping(data.get("variants"), "`variants`", "variants").items():
            patterns = [raw] if isinstance(raw, str) else raw
            if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
                raise self.fail(f"variant {short(vname)} must be a list of paths or glob patterns", "variants", vname)
            for p in patterns:
                # A pattern inside a folder entry (`DIR/x.ckpt` for `DIR/`) is checked once the folder is listed.
                if not any(path_matches(f, p) or (f.endswith("/") and p.startswith(f)) for f in files):
                    raise self.fail(f"variant {short(vname)}: {short(p)} matches no file{hint(p, files)}", "variants", vname)
            variants[vname] = tuple(patterns)
        return variants

    def folder(self, fpath: str, entry: dict[str, Any], layout: str, archives: dict[str, Archive]) -> FileEntry:
        """A folder entry: `DIR/` -> every file of a Hub folder (`url: hf://ORG/REPO/DIR/`) or of a folder of an
        archive (`archive: NAME` + `member: FOLDER/`), optionally filtered by `include` globs."""
        keys = ("files", fpath)
        allowed = ("archive", "member") if "archive" in entry or "member" in entry else ("url",)
        extra = [k for k in entry if k not in (*allowed, "layout", "include")]
        if extra:
            takes = "`archive`, `member`" if "archive" in allowed else "`url`"
            raise self.fail(
                f"folder entry {short(fpath)} takes only {takes}, `include` and `layout`; `{extra[0]}` belongs on single files",
                *keys, extra[0],
            )
        include = entry.get("include", [])
        include = [include] if isinstance(include, str) else include
        if not isinstance(include, list) or not all(isinstance(g, str) and g for g in include):
            raise self.fail(f"`include` of {short(fpath)} must be a list of glob patterns", *keys, "include")
        if "archive" in allowed:
            return self.archive_folder(fpath, entry, layout, archives, tuple(include))
        url = self.url(entry.get("url"), "url", *keys, "url")
        if not (url.startswith("hf://") and url.endswith("/")):
            raise self.fail(
                f"folder entry {short(fpath)} needs an hf:// URL ending in `/` (a folder of a Hugging Face repo) or "
                f"`archive` + `member: FOLDER/`, got {_shown_url(url)}", *keys, "url",
            )
        return FileEntry(fpath, Integrity(), urls=(url,), layout=layout, folder=True, include=tuple(include))

    def archive_folder(self, fpath: str, entry: dict[str, Any], layout: str, archives: dict[str, Archive],
                       include: tuple[str, ...]) -> FileEntry:
        keys = ("files", fpath)
        aname = self.string(entry.get("archive"), "`archive`", *keys, "archive")
        if aname not in archives:
            raise self.fail(
                f"folder entry {short(fpath)} names archive {short(aname)}, which `archives` does not define{hint(aname, archives)}",
                *keys, "archive",
            )
        member = entry.get("member")
        if not isinstance(member, str) or not member.endswith("/"):
            raise self.fail(f"folder entry {short(fpath)} takes a folder of the archive: `member` ending in `/` "
                            f"(e.g. `dinov2-main/`), got {short(member)}", *keys, "member")
        if member != "/":
            self.rel_path(member[:-1], "member", *keys, "member")
        return FileEntry(fpath, Integrity(), archive=aname, member="" if member == "/" else member, layout=layout,
                         folder=True, include=include)


def _check_path_clashes(files: dict[str, FileEntry], parser: _Parser) -> None:
    """A target may not also be a directory of another target."""
    paths = set(files)
    for p in files:
        for parent in PurePosixPath(p).parents:
            if str(parent) in paths:
                raise parser.fail(f"target {short(str(parent))} is a file but also the folder of {short(p)}", "files", p)


def manifest_stem(path: Path) -> str:
    name = path.name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Parse and validate the manifest file at `path`."""
    source = Path(path)
    return _Parser(yamlsafe.read_text(source, MAX_MANIFEST_BYTES, "manifest"), source).parse()


def parse_manifest(text: str, source: str | os.PathLike[str]) -> Manifest:
    """Parse and validate manifest `text` as if read from `source` (which need not exist yet)."""
    return _Parser(text, Path(source)).parse()
