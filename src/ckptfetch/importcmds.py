"""What one download or extraction command means: `wget`, `curl`, `gdown`, `hf download`, `tar`, `unzip`.

Each reader takes a command's words and answers a `Fetch` (a URL to a path),
an `Unpack` (an archive into a folder, members if listed) or a `Skip` with the
reason it cannot be translated. Paths stay as written; `importing` resolves
them against the current folder. Options these tools take that change what
lands where (a header, a password, a recursive crawl, a name taken from the
server) make the command untranslatable rather than half-translated.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass
class Fetch:
    url: str
    path: str  # as written (a folder entry's ends in `/`); "-" for stdout
    folder: bool = False
    layout: str = "plain"
    include: tuple[str, ...] = ()


@dataclass
class Unpack:
    archive: str  # as written; "-" for stdin
    into: str
    members: list[str] = field(default_factory=list)
    junk: bool = False  # unzip -j: members land by their file name only
    kind: str = "tar"


@dataclass
class Skip:
    reason: str


Meaning = list[Fetch] | Unpack | Skip | None  # None: understood, nothing to translate (mkdir, echo)


@dataclass
class Options:
    """Words split into options (the last value of each) and positional arguments."""

    values: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    args: list[str] = field(default_factory=list)
    many: dict[str, list[str]] = field(default_factory=dict)  # options that take every word up to the next option


def parse(words: Sequence[str], takes: set[str], many: frozenset[str] | set[str] = frozenset()) -> Options:
    """Options of a command; `takes` lists options with a value (`-O`, `--output`), `many` those with several."""
    o = Options()
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("--") and len(w) > 2:
            name, eq, value = w.partition("=")
            if name in many:
                j = i + 1
                while j < len(words) and not words[j].startswith("-"):
                    j += 1
                o.many.setdefault(name, []).extend(words[i + 1:j])
                i = j
                continue
            if name in takes and not eq:
                value, i = (words[i + 1] if i + 1 < len(words) else ""), i + 1
            o.values[name] = value if name in takes else o.values.get(name, "")
            if name not in takes:
                o.flags.add(name)
        elif w.startswith("-") and len(w) > 1:
            for j, c in enumerate(w[1:], 1):
                if f"-{c}" in takes:
                    rest = w[j + 1:]
                    value, i = (rest, i) if rest else ((words[i + 1] if i + 1 < len(words) else ""), i + 1)
                    o.values[f"-{c}"] = value
                    break
                o.flags.add(f"-{c}")
        else:
            o.args.append(w)
        i += 1
    return o


def url_name(url: str, keep_query: bool) -> str:
    """The file name a tool gives a URL's download: the last path segment (wget keeps the query).

    >>> url_name("https://h/a/model.tar.gz?dl=1", keep_query=True), url_name("https://h/a/b.pth?x=1", False)
    ('model.tar.gz?dl=1', 'b.pth')
    """
    parts = urlsplit(url)
    name = posixpath.basename(unquote(parts.path))
    return f"{name}?{parts.query}" if keep_query and parts.query and name else name


def bare_url(url: str) -> Meaning:
    """A URL alone on a line of a code block, as READMEs list their checkpoints: fetched to its file name.

    Only when its last path segment names a file (`.../model.pth`); a page such as a repository's home is not
    a download, and guessing a name for it would be silent.

    >>> bare_url("https://h.org/r/resolve/main/rtmw3d-l.pth"), bare_url("https://github.com/org/repo")
    ([Fetch(url='https://h.org/r/resolve/main/rtmw3d-l.pth', path='rtmw3d-l.pth', folder=False, layout='plain', include=())], Skip(reason='a bare URL whose path does not name a file'))
    """
    name = url_name(url, keep_query=False)
    if "." not in name.strip("."):
        return Skip("a bare URL whose path does not name a file")
    return [Fetch(url, name)]


def _refuse(o: Options, banned: dict[str, str]) -> Skip | None:
    for opt, why in banned.items():
        if opt in o.flags or opt in o.values:
            return Skip(why)
    return None


def wget(words: Sequence[str]) -> Meaning:
    o = parse(words, {"-O", "--output-document", "-P", "--directory-prefix", "-o", "--output-file", "-a", "-t",
                      "--tries", "-T", "--timeout", "-i", "--input-file", "--header", "--user", "--password",
                      "-U", "--user-agent", "--progress", "-e", "--wait"})
    skip = _refuse(o, {"-i": "reads its URLs from a file", "--input-file": "reads its URLs from a file",
                       "--header": "sends a header (a token?); set it up by hand",
                       "--user": "sends credentials", "--password": "sends credentials",
                       "--content-disposition": "takes the file name from the server",
                       "-r": "downloads recursively", "--recursive": "downloads recursively",
                       "-m": "mirrors a site", "--mirror": "mirrors a site"})
    if skip or not o.args:
        return skip or Skip("no URL")
    out = o.values.get("-O") or o.values.get("--output-document")
    prefix = o.values.get("-P") or o.values.get("--directory-prefix")
    if out is not None and len(o.args) > 1:
        return Skip("several URLs into one -O file")
    return [Fetch(u, out if out is not None else posixpath.join(prefix or "", url_name(u, keep_query=True)))
            for u in o.args]


def curl(words: Sequence[str]) -> Meaning:
    o = parse(words, {"-o", "--output", "-H", "--header", "-u", "--user", "--retry", "-C", "--continue-at", "-A",
                      "--user-agent", "-m", "--max-time", "--connect-timeout", "-e", "--referer", "-d", "--data",
                      "-X", "--request", "-w", "--write-out", "--output-dir", "--retry-delay"})
    skip = _refuse(o, {"-H": "sends a header (a token?); set it up by hand", "--header": "sends a header",
                       "-u": "sends credentials", "--user": "sends credentials", "-d": "posts data",
                       "--data": "posts data", "-J": "takes the file name from the server",
                       "--remote-header-name": "takes the file name from the server"})
    if skip or not o.args:
        return skip or Skip("no URL")
    if (o.values.get("-X") or o.values.get("--request") or "GET").upper() != "GET":
        return Skip("not a GET request")
    out = o.values.get("-o") or o.values.get("--output")
    if out is None and ("-O" in o.flags or "--remote-name" in o.flags):
        out = posixpath.join(o.values.get("--output-dir", ""), url_name(o.args[0], keep_query=False))
    return [Fetch(o.args[0], out if out is not None else "-")]


def gdown(words: Sequence[str]) -> Meaning:
    o = parse(words, {"-O", "--output", "--id", "--format", "--proxy", "--speed"})
    if "--folder" in o.flags:
        return Skip("downloads a whole Drive folder")
    ident = o.values.get("--id") or (o.args[0] if o.args else "")
    if not ident:
        return Skip("no URL or file id")
    url = ident if ident.startswith(("https://", "http://")) else f"https://drive.google.com/uc?id={ident}"
    out = o.values.get("-O") or o.values.get("--output")
    if out is None or out.endswith("/"):
        return Skip("gdown names the file after Drive's name, which the line does not say; give -O FILE")
    return [Fetch(url, out)]


def hf_download(words: Sequence[str]) -> Meaning:
    """`hf download REPO [FILES...]` / `huggingface-cli download ...`."""
    o = parse(words, {"--local-dir", "--revision", "--repo-type", "--token", "--cache-dir", "--max-workers"},
              many={"--include", "--exclude"})
    if not o.args:
        return Skip("no repo")
    if o.many.get("--exclude"):
        return Skip("--exclude has no manifest equivalent; list the files or use include globs")
    repo, files = o.args[0], o.args[1:]
    kind = {"dataset": "datasets/", "space": "spaces/"}.get(o.values.get("--repo-type", "model"), "")
    rev = o.values.get("--revision")
    base = f"hf://{kind}{repo}" + (f"@{rev.replace('/', '%2F')}" if rev else "")
    local = o.values.get("--local-dir")
    layout = "plain" if local is not None else "hf-cache"
    folder = local if local is not None else repo.split("/")[-1]
    if files:
        return [Fetch(f"{base}/{f}", posixpath.join(folder, f), layout=layout) for f in files]
    return [Fetch(f"{base}/", folder.rstrip("/") + "/", folder=True, layout=layout,
                  include=tuple(o.many.get("--include", ())))]


def tar(words: Sequence[str]) -> Meaning:
    words = list(words)
    if words and not words[0].startswith("-") and set(words[0]) <= set("xtcruvzjJf"):
        words[0] = "-" + words[0]  # `tar xvf FILE`: the old bundled form
    o = parse(words, {"-f", "--file", "-C", "--directory", "--strip-components", "-T", "--files-from", "-X",
                      "--exclude", "--exclude-from"})
    if not ({"-x", "--extract", "--get"} & o.flags):
        return Skip("not an extraction")
    if any(k in o.values for k in ("--strip-components", "-T", "--files-from", "-X", "--exclude", "--exclude-from")):
        return Skip("strips or filters members in a way the manifest cannot say; list the members")
    archive = o.values.get("-f") or o.values.get("--file") or "-"
    into = o.values.get("-C") or o.values.get("--directory") or "."
    return Unpack(archive, into, list(o.args), kind="tar")


def unzip(words: Sequence[str]) -> Meaning:
    o = parse(words, {"-d", "-P"}, many={"-x"})
    if "-P" in o.values:
        return Skip("the archive has a password")
    if o.many.get("-x"):
        return Skip("-x excludes members; list the members instead")
    if not o.args:
        return Skip("no archive")
    return Unpack(o.args[0], o.values.get("-d") or ".", o.args[1:], junk="-j" in o.flags, kind="zip")


NOT_DOWNLOADS = {
    "pip": "not a download: installs a Python package", "pip3": "not a download: installs a Python package",
    "conda": "not a download: installs packages", "apt": "not a download: installs packages",
    "apt-get": "not a download: installs packages", "git": "not a checkpoint download: git",
    "python": "runs a program", "python3": "runs a program", "bash": "runs a script", "sh": "runs a script",
    "source": "runs a script", "ls": "lists files", "tree": "lists files", "echo": "prints text",
    "export": "sets a variable", "md5sum": "checks hashes (give its list to import)",
    "sha256sum": "checks hashes (give its list to import)", "ln": "makes a link", "cp": "copies a file",
    "chmod": "changes permissions", "find": "lists files", "du": "measures files",
}

READERS: dict[str, Callable[[Sequence[str]], Meaning]] = {
    "wget": wget, "curl": curl, "gdown": gdown, "tar": tar, "unzip": unzip,
}


def meaning(argv: Sequence[str]) -> Meaning:
    """What `argv` (one simple command) does, as far as a manifest is concerned."""
    words = list(argv)
    while words and words[0] in ("sudo", "time", "command", "nohup"):
        words = words[1:]
    if not words:
        return None
    if len(words) == 1 and words[0].startswith(("https://", "http://")):
        return bare_url(words[0])
    tool = posixpath.basename(words[0])
    if tool in ("hf", "huggingface-cli"):
        if words[1:2] == ["download"]:
            return hf_download(words[2:])
        return Skip(f"not a download: {' '.join([tool, *words[1:2]])}")  # hf upload, hf auth login, ...
    if tool in READERS:
        return READERS[tool](words[1:])
    if tool in ("mkdir", "cd", "rm", "mv"):
        return None  # handled by importing, which tracks folders and files
    return Skip(NOT_DOWNLOADS.get(tool, "not a download command ckptfetch knows"))


__all__ = ["Fetch", "Meaning", "Options", "Skip", "Unpack", "bare_url", "meaning", "parse", "url_name"]
