"""Guarded YAML loading for every file ckptfetch reads (manifests and lock files).

`yaml.safe_load` rules (no tags that build objects) through libyaml when
PyYAML has it, plus what safe_load lacks: alias bombs and recursive aliases
are refused before any data is built, duplicate keys are errors, odd values
(an integer past Python's digit limit, a `!!timestamp` that is no date) are a
`ManifestError` naming the file and line instead of a crash, and `Lines`
finds the line of any key for later messages.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

import yaml

from .errors import ManifestError

MAX_NODES = 100_000  # YAML nodes after alias expansion: a real manifest has a few hundred

# libyaml's safe loader when PyYAML was built with it: same rules, much faster.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlong = 40


def short(value: Any) -> str:
    """A bounded repr for messages: a 5 MB string or a deep list must not become the error."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int past Python's digit limit
        return f"<{type(value).__name__}>"


def hint(key: str, known: Iterable[str]) -> str:
    """" (did you mean `x`?)" for the closest of `known`, or ""."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f" (did you mean `{close[0]}`?)" if close else ""


class Lines:
    """Line numbers of keys in a composed YAML document."""

    def __init__(self, node: yaml.Node | None, source: str) -> None:
        self.node = node
        self.source = source

    def of(self, *keys: str) -> int | None:
        """The line of the last of `keys` that exists on the path into the document."""
        node = self.node
        line = None
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                return line
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        return line

    def check_duplicates(self) -> None:
        """Refuse a mapping that repeats a key (safe_load would silently keep the last)."""
        # Iterative, and each node once: aliases share nodes, and may even form cycles.
        stack = [self.node] if self.node is not None else []
        done: set[int] = set()
        while stack:
            node = stack.pop()
            if id(node) in done:
                continue
            done.add(id(node))
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode):
                        if k.value in seen:
                            raise ManifestError(f"duplicate key {short(k.value)}", self.source, k.start_mark.line + 1)
                        seen.add(k.value)
                    stack.append(v)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)


def _check_expansion(node: yaml.Node | None, where: str) -> None:
    """Refuse alias bombs ("billion laughs") and recursive aliases before building any data."""
    stack = [node] if node is not None else []
    count = 0
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ManifestError(
                f"the YAML expands to more than {MAX_NODES} values through its aliases (`*name`), "
                "or an alias refers to itself; this file is plain data, write it out", where,
            )
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.append(k)
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def load(text: str, where: str) -> tuple[Any, Lines]:
    """The data of YAML `text` (from file `where`) and its key lines; `ManifestError` for anything odd."""
    # One parse: the node tree gives line numbers, then the same loader builds the data.
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        _check_expansion(node, where)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"not valid YAML: {problem}", where, line) from None
    except RecursionError:  # the pure-Python loader on very deep nesting
        raise ManifestError("not valid YAML: nested too deeply", where) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's safe constructors fail this way on odd values: an integer with more
        # digits than Python converts, a `!!timestamp` on a value that is not a date.
        raise ManifestError(f"a value cannot be read ({type(exc).__name__}: {short(str(exc))})", where) from None
    finally:
        loader.dispose()
    lines = Lines(node, where)
    lines.check_duplicates()
    return data, lines


def read_text(path: Any, max_bytes: int, what: str) -> str:
    """The UTF-8 text of `path`, refusing files over `max_bytes`; `ManifestError` naming the file otherwise."""
    where = str(path)
    try:
        if path.stat().st_size > max_bytes:
            raise ManifestError(f"larger than {max_bytes >> 20} MiB; {what} is a short YAML file", where)
        text: str = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no such {what} file", where) from None
    except UnicodeDecodeError:
        raise ManifestError("not UTF-8 text", where) from None
    except OSError as exc:
        raise ManifestError(f"cannot read: {exc.strerror}", where) from None
    return text


__all__ = ["MAX_NODES", "Lines", "hint", "load", "read_text", "short"]
