"""Reading the shell commands and hash lines out of a README, a shell script or a hash list.

A Markdown file is read only inside its code blocks: shell blocks (``bash``,
``sh``, ``shell``, ``console``, ``zsh`` or no language) for commands and hash
lines, other blocks for hash lines only (a ``py`` block holding a `tree`
drawing is not a command). A file without code blocks is read whole. Lines
are joined at a trailing backslash, split at `&&`, `||` and `;`, and into
pipelines at `|`; `NAME=value` assignments are substituted into later
`$NAME`/`${NAME}`. What cannot be read that way (an unknown variable, a
command substitution, unbalanced quotes) is reported, never guessed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

from .hashlist import HashLine, parse_line

SHELL_LANGS = ("", "bash", "sh", "shell", "console", "zsh", "shell-session", "terminal")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
SEPARATORS = ("&&", "||", ";", "&")


@dataclass
class Command:
    """One simple command: its words, where it was, and the output redirect (`> FILE`) if any."""

    line: int
    text: str
    argv: list[str]
    stdout: str | None = None
    heading: str = ""  # the Markdown heading the code block sits under


@dataclass
class Scan:
    """Everything read: commands (each a pipeline: a list of one or more), hash lines, what could not be read."""

    pipelines: list[list[Command]] = field(default_factory=list)
    hashes: list[tuple[int, HashLine]] = field(default_factory=list)
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    title: str = ""


def strip_comment(text: str) -> str:
    """`text` without a shell comment: a `#` that starts a word, outside quotes.

    >>> strip_comment("wget https://h/a.pth#x  # the weights")
    'wget https://h/a.pth#x  '
    """
    quote = None
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


def _blocks(text: str) -> Iterator[tuple[int, list[str], bool, str]]:
    """(first line number, lines, is shell, heading) for each code block, or the whole file when it has none."""
    lines = text.splitlines()
    if not any(_FENCE.match(ln) for ln in lines):
        yield 1, lines, True, ""
        return
    heading, inside, lang, start = "", None, "", 0
    body: list[str] = []
    for n, ln in enumerate(lines, 1):
        fence = _FENCE.match(ln)
        if inside is None:
            if fence:
                inside, lang, start, body = fence.group(1), fence.group(2).lower(), n + 1, []
            elif (h := _HEADING.match(ln)) is not None:
                heading = h.group(1)
        elif fence and fence.group(1).startswith(inside) and not fence.group(2):
            yield start, body, lang in SHELL_LANGS, heading
            inside = None
        else:
            body.append(ln)


def _logical(start: int, lines: list[str]) -> Iterator[tuple[int, str]]:
    """Lines joined at a trailing backslash, with the number of their first line."""
    pending, first = "", start
    for n, ln in enumerate(lines, start):
        if not pending:
            first = n
        if ln.rstrip().endswith("\\"):
            pending += ln.rstrip()[:-1] + " "
            continue
        yield first, pending + ln
        pending = ""
    if pending:
        yield first, pending


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _split(words: list[str], line: int, text: str, heading: str) -> list[list[Command]]:
    """Words into pipelines of commands, each with its `> FILE` redirect."""
    pipelines: list[list[Command]] = [[]]
    argv: list[str] = []
    out: str | None = None
    redirect = ""  # "out": the next word is where stdout goes; "other": where another stream goes

    def close() -> None:
        nonlocal argv, out
        if argv:
            pipelines[-1].append(Command(line, text, argv, out, heading))
        argv, out = [], None

    for w in words:
        if redirect:
            out = w if redirect == "out" else out
            redirect = ""
        elif w in (">", ">>", "<"):
            # `2>` names a stream, not an argument; `<` an input: neither is where the download goes.
            stream = argv[-1] if argv and argv[-1].isdigit() and f"{argv[-1]}{w}" in text else None
            other = w == "<" or stream not in (None, "1")
            if stream is not None:
                argv.pop()
            redirect = "other" if other else "out"
        elif w in SEPARATORS:
            close()
            pipelines.append([])
        elif w == "|":
            close()
        elif w.startswith((">", "<")) or w in ("|&", ">&", "&>"):
            continue  # 2>&1 and the like: where errors go does not matter here
        else:
            argv.append(w)
    close()
    return [p for p in pipelines if p]


def scan(text: str) -> Scan:
    """Every command and hash line of `text` (see the module's docstring for the rules)."""
    found = Scan()
    variables: dict[str, str] = {}
    title = next((m.group(1) for ln in text.splitlines() if (m := re.match(r"^#\s+(.+)$", ln))), "")
    found.title = title
    for start, lines, shell, heading in _blocks(text):
        for n, raw in _logical(start, lines):
            line = raw.strip()
            if line.startswith("$ "):
                line = line[2:]
            hashed = parse_line(line)
            if hashed is not None:
                found.hashes.append((n, hashed))
                continue
            line = strip_comment(line).strip()
            if not shell or not line:
                continue
            _command(found, variables, n, line, heading)
    return found


def _command(found: Scan, variables: dict[str, str], n: int, line: str, heading: str) -> None:
    assign = _ASSIGN.match(line)
    if assign is not None:
        variables[assign.group(1)] = assign.group(2).strip("'\"")
        return
    if "$(" in line or "`" in line:
        found.unreadable.append((n, line, "uses a command substitution"))
        return
    unknown = [m.group(1) or m.group(2) for m in _VAR.finditer(line) if (m.group(1) or m.group(2)) not in variables]
    if unknown:
        found.unreadable.append((n, line, f"uses ${unknown[0]}, which the file does not set"))
        return
    expanded = _VAR.sub(lambda m: variables[m.group(1) or m.group(2)], line)
    try:
        words = _tokens(expanded)
    except ValueError as exc:
        found.unreadable.append((n, line, f"cannot be split into words ({exc})"))
        return
    found.pipelines.extend(_split(words, n, line, heading))


__all__ = ["Command", "Scan", "scan", "strip_comment"]
