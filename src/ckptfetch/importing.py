"""`ckptfetch import`: a draft manifest from what projects publish (a README's download lines, a hash list).

The commands (`shellscan`) are replayed in order against a current folder:
`cd` and `mkdir` move it, each download (`importcmds`) becomes a file at its
path, `tar`/`unzip` turn a downloaded file into an archive whose members
land under the extraction folder (listed on the command line, or else the
hash list's files under that folder), `mv` renames and `rm` of an extracted
archive is understood. Hash lines pin the files at their paths. The common
first folder of every target becomes `root`.

Whatever cannot be translated is listed with the reason, in the result and as
comments at the top of the draft; nothing is guessed.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .errors import UsageError
from .hashlist import HashLine
from .importcmds import Fetch, Skip, Unpack, meaning
from .manifest import NAME_RE, parse_manifest, path_problem
from .shellscan import Command, Scan, scan
from .yamledit import plain_ok


@dataclass
class Note:
    """Something not translated: the line, its text, why."""

    line: int
    text: str
    reason: str


@dataclass
class Target:
    """A file the commands leave on disk: where (relative to the starting folder) and from what."""

    path: str
    line: int
    heading: str
    url: str = ""
    layout: str = "plain"
    folder: bool = False
    include: tuple[str, ...] = ()
    archive: str | None = None  # the downloaded archive it comes out of (that download's path)
    member: str | None = None


@dataclass
class ImportResult:
    text: str
    files: dict[str, dict[str, Any]]
    archives: dict[str, dict[str, Any]]
    root: str
    untranslated: list[Note]
    unpinned: list[str] = field(default_factory=list)


class _Replay:
    """The commands run in order against a current folder (None once it is unknown)."""

    def __init__(self, found: Scan) -> None:
        self.found = found
        self.cwd: str | None = "."
        self.targets: dict[str, Target] = {}
        self.unpacks: list[tuple[Command, Unpack, str, str | None]] = []  # (command, what, archive, into)
        self.notes = [Note(n, text, why) for n, text, why in found.unreadable]

    def path(self, written: str) -> str | None:
        """`written` relative to the starting folder; None when that cannot be known."""
        if self.cwd is None or written.startswith(("/", "~")):
            return None
        joined = posixpath.normpath(posixpath.join(self.cwd, written))
        return None if joined == ".." or joined.startswith("../") else joined

    def note(self, c: Command, why: str) -> None:
        self.notes.append(Note(c.line, c.text, why))

    def run(self) -> None:
        for pipeline in self.found.pipelines:
            if len(pipeline) == 2:
                self.stream(pipeline)
            elif len(pipeline) > 2:
                self.note(pipeline[0], "a pipeline of more than two commands")
            else:
                self.one(pipeline[0])

    def one(self, c: Command) -> None:
        what = meaning(c.argv)
        tool = posixpath.basename(c.argv[0]) if c.argv else ""
        if isinstance(what, Skip):
            self.note(c, what.reason)
        elif isinstance(what, Unpack):
            self.unpack(c, what)
        elif isinstance(what, list):
            for f in what:
                self.fetch(c, f, c.stdout)
        elif tool == "cd":
            self.cd(c)
        elif tool == "mv":
            self.move(c)
        elif tool == "rm":
            self.remove(c)

    def cd(self, c: Command) -> None:
        to = c.argv[1] if len(c.argv) > 1 else "~"
        self.cwd = self.path(to)
        if self.cwd is None:
            self.note(c, "leaves the project's folder; later paths cannot be placed")

    def fetch(self, c: Command, f: Fetch, stdout: str | None) -> None:
        written = stdout if f.path == "-" and stdout else f.path
        if written == "-":
            self.note(c, "writes to stdout, and nothing reads it")
            return
        at = self.path(written.rstrip("/"))
        if at is None:
            self.note(c, f"writes outside the project's folder ({written})")
            return
        key = at + "/" if f.folder else at
        self.targets[key] = Target(key, c.line, c.heading, f.url, f.layout, f.folder, f.include)

    def stream(self, pipeline: list[Command]) -> None:
        """`curl URL | tar x ...`: the download is an archive extracted as it arrives."""
        first, second = pipeline
        got, unpack = meaning(first.argv), meaning(second.argv)
        if not (isinstance(got, list) and len(got) == 1 and got[0].path == "-" and isinstance(unpack, Unpack)
                and unpack.archive == "-"):
            self.note(first, "a pipeline other than `download | tar x`")
            return
        name = f"<line {first.line}>"
        self.targets[name] = Target(name, first.line, first.heading, got[0].url)
        self.unpacks.append((second, unpack, name, self.path(unpack.into)))

    def unpack(self, c: Command, u: Unpack) -> None:
        archive = self.path(u.archive) if u.archive != "-" else None
        if archive is None or archive not in self.targets:
            self.note(c, f"extracts {u.archive}, which no download line fetched")
            return
        self.unpacks.append((c, u, archive, self.path(u.into)))

    def move(self, c: Command) -> None:
        args = [a for a in c.argv[1:] if not a.startswith("-")]
        src = self.path(args[0]) if len(args) == 2 else None
        dst = self.path(args[1]) if len(args) == 2 else None
        if src is None or dst is None or src not in self.targets:
            self.note(c, "moves a file no download line fetched")
            return
        t = self.targets.pop(src)
        t.path = dst
        self.targets[dst] = t

    def remove(self, c: Command) -> None:
        gone = [self.path(a) for a in c.argv[1:] if not a.startswith("-")]
        archives = {a for _, _, a, _ in self.unpacks}
        if not all(g in archives for g in gone):
            self.note(c, "removes files other than an extracted archive")


def _members(c: Command, u: Unpack, into: str, hashed: dict[str, dict[str, str]],
             taken: set[str]) -> list[tuple[str, str]] | str:
    """(member, target) pairs an extraction yields, or why they cannot be known."""
    under = sorted(p for p in hashed if p.startswith(into + "/") and p not in taken) if into != "." else \
        sorted(p for p in hashed if p not in taken)
    if not u.members:
        if u.junk:
            return "extracts every member with -j; list the members"
        if not under:
            return "extracts every member, and no hash list says which files it yields; list the members"
        return [(posixpath.relpath(p, into), p) for p in under]
    pairs = []
    for m in u.members:
        if not any(ch in m for ch in "*?["):
            pairs.append((m, posixpath.normpath(posixpath.join(into, posixpath.basename(m) if u.junk else m))))
        elif u.junk and not any(ch in posixpath.dirname(m) for ch in "*?["):
            # With -j a member lands by its file name: the hash list's names there say which members matched.
            found = [p for p in under if posixpath.dirname(p) == into and
                     fnmatch.fnmatchcase(posixpath.basename(p), posixpath.basename(m))]
            if not found:
                return f"member pattern {m} matches no file the hash list names"
            pairs += [(posixpath.join(posixpath.dirname(m), posixpath.basename(p)), p) for p in found]
        else:
            return f"member pattern {m}: which members it matches is only known from the archive"
    return pairs


def _extract_all(r: _Replay, hashed: dict[str, dict[str, str]]) -> dict[str, str]:
    """Turn extracted downloads into archives and their members into targets; returns archive path -> name."""
    names: dict[str, str] = {}
    for c, u, archive, into in r.unpacks:
        if into is None:
            r.note(c, f"extracts into {u.into}, outside the project's folder")
            continue
        pairs = _members(c, u, into, hashed, set(r.targets))
        if isinstance(pairs, str):
            r.note(c, pairs)
            continue
        src = r.targets[archive]
        names.setdefault(archive, _archive_name(archive, set(names.values())))
        for member, target in pairs:
            r.targets[target] = Target(target, c.line, src.heading, archive=archive, member=member)
    return names


def _archive_name(path: str, taken: set[str]) -> str:
    base = posixpath.basename(path)
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        base = base[: -len(ext)] if base.endswith(ext) else base
    parent = posixpath.basename(posixpath.dirname(path))
    name = f"{parent}-{base}" if parent else base or "archive"
    n, candidate = 2, name
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _hashes(lines: Iterable[tuple[int, HashLine]], targets: Iterable[str]) -> tuple[dict[str, dict[str, str]], str]:
    """Digests by path; when no path matches a target as written, the one folder prefix that makes them match."""
    hashed: dict[str, dict[str, str]] = {}
    for _, h in lines:
        path = posixpath.normpath(h.path.removeprefix("./"))
        hashed.setdefault(path, {})[h.algo] = h.digest
    known = set(targets)
    if not hashed or known & set(hashed):
        return hashed, ""
    prefixes = {t.split("/", 1)[0] + "/" for t in known if "/" in t}
    best = max(prefixes, key=lambda p: sum(p + h in known for h in hashed), default="")
    if best and any(best + h in known for h in hashed):
        return {best + h: d for h, d in hashed.items()}, best
    return hashed, ""


def _root(keys: list[str]) -> str:
    """The first folder every plain target shares, or "." when they share none."""
    firsts = {k.split("/", 1)[0] for k in keys}
    if keys and len(firsts) == 1 and all("/" in k for k in keys):
        return firsts.pop()
    return "."


def _q(value: str) -> str:
    """`value` as a YAML scalar the safe loader reads back unchanged (JSON quotes are YAML too)."""
    return value if plain_ok(value) and not value.startswith(("'", '"', "-", "?", "!", "&", "*")) else json.dumps(value)


def _entries(r: _Replay, names: dict[str, str], hashed: dict[str, dict[str, str]], root: str,
             ) -> tuple[dict[str, dict[str, Any]], dict[str, Target]]:
    """Manifest `files` fields by key (in the order the commands made them), and each key's target."""
    files: dict[str, dict[str, Any]] = {}
    where: dict[str, Target] = {}
    members = [t for t in r.targets.values() if t.archive is not None]
    ordered: list[Target] = []
    for t in r.targets.values():
        if t.path in names:  # a downloaded archive: its members are the files, in its place
            ordered += [m for m in members if m.archive == t.path]
        elif t.archive is None:
            ordered.append(t)
    for t in ordered:
        key = t.path[len(root) + 1:] if root != "." and t.layout == "plain" else t.path
        problem = path_problem(key.rstrip("/"))
        if problem is not None:
            r.notes.append(Note(t.line, t.path, f"the target {problem}"))
            continue
        if t.archive is not None:
            fields: dict[str, Any] = {"archive": names[t.archive], "member": t.member}
        else:
            fields = {"url": t.url}
            if t.include:
                fields["include"] = list(t.include)
        if t.layout != "plain":
            fields["layout"] = t.layout
        fields.update(hashed.get(t.path, {}))
        files[key], where[key] = fields, t
    return files, where


def _render(name: str, source: str, found: Scan, result: ImportResult, where: dict[str, Target], prefix: str) -> str:
    out = [f"# Drafted by `ckptfetch import` from {source or 'a file'}: its download lines"
           + (" and hash list" if found.hashes else "") + ".",
           "# Check it, then run `ckptfetch lint` on it and `ckptfetch get` with --dry-run."]
    if prefix:
        out.append(f"# The hash list's paths were read as relative to {prefix}.")
    if result.untranslated:
        out += ["#", "# Not translated:"]
        out += [f"#   line {n.line}: {n.text[:150]}  ({n.reason})" for n in result.untranslated]
    out += ["ckptfetch: 1", f"name: {name}"]
    if found.title:
        out.append(f"description: {_q(found.title)}")
    out.append(f"root: {_q(result.root)}")
    if result.archives:
        out += ["", "archives:"]
        for aname, fields in result.archives.items():
            out += [f"  {_q(aname)}:"] + [f"    {k}: {_q(str(v))}" for k, v in fields.items()]
    out += ["", "files:"]
    heading = ""  # files before any heading need no marker
    for key, fields in result.files.items():
        if where[key].heading != heading:
            heading = where[key].heading
            out.append(f"  # {heading}" if heading else "  #")
        out.append(f"  {_q(key)}:")
        for k, v in fields.items():
            if isinstance(v, list):
                out.append(f"    {k}: [{', '.join(json.dumps(x) for x in v)}]")
            else:
                out.append(f"    {k}: {_q(str(v))}")
    return "\n".join(out) + "\n"


def import_text(text: str, *, name: str, base_url: str | None = None, source: str = "") -> ImportResult:
    """Draft a manifest named `name` from `text` (a README, a shell script or a hash list)."""
    if not NAME_RE.match(name):
        raise UsageError(f"--name {name!r} must match [a-z0-9][a-z0-9._-]*")
    found = scan(text)
    r = _Replay(found)
    r.run()
    hashed, prefix = _hashes(found.hashes, list(r.targets))
    names = _extract_all(r, hashed)
    line_of = {posixpath.normpath(h.path.removeprefix("./")): n for n, h in found.hashes}
    for path in hashed:
        if path in r.targets:
            continue
        written = path[len(prefix):] if prefix and path.startswith(prefix) else path
        if base_url:
            url = base_url.rstrip("/") + "/" + quote(written)
            r.targets[path] = Target(path, line_of.get(written, 0), "", url=url)
        else:
            r.notes.append(Note(line_of.get(written, 0), written,
                                "a hash for a file no line downloads (give --base-url if the files sit beside the list)"))
    archives = {aname: {"url": r.targets[path].url, **hashed.get(path, {})} for path, aname in names.items()}
    plain = [t.path for t in r.targets.values() if t.layout == "plain" and t.path not in names]
    root = _root(plain)
    files, where = _entries(r, names, hashed, root)
    if not files:
        first = f"; line {r.notes[0].line}: {r.notes[0].reason}" if r.notes else ""
        raise UsageError(f"found no download line to draft a manifest from ({len(r.notes)} not translated{first})")
    result = ImportResult("", files, archives, root, sorted(r.notes, key=lambda n: n.line),
                          [k for k, f in files.items() if "url" in f and not (set(f) & set(hashed.get(k, {})))
                           and not any(a in f for a in ("md5", "sha1", "sha256", "sha512"))])
    result.text = _render(name, source, found, result, where, prefix)
    parse_manifest(result.text, f"{name}.yaml")  # the draft must load: a bug here is ours, not the input's
    return result


__all__ = ["ImportResult", "Note", "import_text"]
