"""Editing a manifest in place: one entry added or replaced, comments, order and quoting kept.

ruamel.yaml's round-trip mode keeps what a person wrote (comments, key order,
flow lists, quotes). Three guards make an edit safe:

- every string written is quoted whenever PyYAML's safe loader (YAML 1.1,
  what ckptfetch reads with) would not read it back as the same string;
- the new text is parsed by the manifest loader and must give the intended
  entry, and every other entry unchanged;
- every line outside the edited entry and variant must still be there, in
  order: an edit that would reformat the rest of the file is refused.
"""

from __future__ import annotations

import copy
import difflib
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ManifestError
from .hashing import ALGORITHMS
from .manifest import FileEntry, Manifest, parse_manifest

REPLACED = ("url", "urls", "archive", "member", "manual", "size", *ALGORITHMS)
"""An entry's source and pins: what `--replace` rewrites (other keys, such as `layout`, stay)."""


def plain_ok(value: str) -> bool:
    """Whether PyYAML's safe loader reads `value`, written plain, back as the same string.

    >>> plain_ok("https://example.org/a.pth"), plain_ok("0123"), plain_ok("yes"), plain_ok("a: b")
    (True, False, False, False)
    """
    try:
        return yaml.safe_load(value) == value
    except yaml.YAMLError:
        return False


def _scalar(value: Any) -> Any:
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    if isinstance(value, str) and not plain_ok(value):
        return SingleQuotedScalarString(value)
    return value


def _style(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file already writes them (sam-pt's by default)."""
    mapping, offset = 2, 2
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    first = next((ln for ln in lines if ln.startswith(" ") and not ln.lstrip().startswith("- ")), None)
    if first is not None:
        mapping = len(first) - len(first.lstrip())
    for before, ln in zip(lines, lines[1:], strict=False):
        if ln.lstrip().startswith("- ") and before.rstrip().endswith(":"):
            offset = max(0, (len(ln) - len(ln.lstrip())) - (len(before) - len(before.lstrip())))
            break
    return mapping, offset + 2, offset


def _span(text: str, *keys: str) -> range:
    """The lines (0-based) of the value under `keys`, key line included; empty when absent."""
    node = yaml.compose(text)
    start = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return range(0)
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                start, node = k.start_mark.line, v
                break
        else:
            return range(0)
    assert start is not None and node is not None
    end = node.end_mark.line + (1 if node.end_mark.column else 0)
    return range(start, max(end, start + 1))


def _kept_in_order(old: str, new: str, editable: Sequence[range]) -> list[str]:
    """Lines of `old` outside `editable` that `new` lost or changed."""
    a, b = old.splitlines(), new.splitlines()
    lost = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            lost += [a[i] for i in range(i1, i2) if not any(i in r for r in editable)]
    return lost


def _slot_after(node: Any, key: Any = None) -> tuple[Any, Any, int] | None:
    """(container, key or index, comment slot) holding what follows the last line of `node` (or of `node[key]`).

    ruamel.yaml keeps the comment lines after a node with the node's last scalar: appending after that
    scalar would leave them above the new lines instead of below.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if key is not None:
        child = node[key]
        if not (isinstance(child, (CommentedMap, CommentedSeq)) and len(child)):
            return node, key, 2
        node = child
    while isinstance(node, (CommentedMap, CommentedSeq)) and len(node):
        last = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        child = node[last]
        if isinstance(child, (CommentedMap, CommentedSeq)) and len(child):
            node = child
            continue
        return node, last, 2 if isinstance(node, CommentedMap) else 0
    return None


def _carry_comments(src: tuple[Any, Any, int] | None, dst: tuple[Any, Any, int] | None) -> None:
    """Move the comment lines after `src`'s line (not a comment on that line) to after `dst`'s line."""
    if src is None or dst is None:
        return
    container, key, slot = src
    entry = container.ca.items.get(key)
    token = entry[slot] if entry else None
    if token is None or "\n" not in token.value:
        return
    head, tail = token.value.split("\n", 1)
    if not tail.strip("\n ") and not tail.count("\n"):
        return  # nothing after the line itself
    moved = copy.copy(token)
    moved.value = "\n" + tail
    if head.strip():
        token.value = head + "\n"
    else:
        entry[slot] = None
    target, tkey, tslot = dst
    target.ca.items.setdefault(tkey, [None, None, None, None])[tslot] = moved


class ManifestEdit:
    """An edit of one manifest file's text (or a new manifest named after the file)."""

    def __init__(self, path: Path, text: str | None) -> None:
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap

        self.path = path
        self.old = text
        self.yaml = YAML(typ="rt")
        self.yaml.width = 1 << 16  # never fold a long URL
        self.yaml.preserve_quotes = True
        mapping, sequence, offset = _style(text or "")
        self.yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        if text is None:
            self.doc = CommentedMap()
            self.doc["ckptfetch"] = 1
            self.doc["name"] = _scalar(_stem(path))
            self.doc["files"] = CommentedMap()
        else:
            self.doc = self.yaml.load(text)
            if not isinstance(self.doc, dict):
                raise ManifestError("not a manifest (no mapping at the top)", str(path))
        self.editable: list[range] = []
        self.key = ""

    def set_file(self, key: str, fields: Mapping[str, Any], *, replace: bool) -> None:
        """Add `files: KEY` with `fields`, or (with `replace`) update an existing entry's fields in place."""
        from ruamel.yaml.comments import CommentedMap

        files = self.doc.get("files")
        if files is None:
            files = self.doc["files"] = CommentedMap()
        self.key = key
        before = None
        if key in files:
            if not replace:
                raise ManifestError(f"already lists {key!r}; pass --replace to pin it again from the URL",
                                    str(self.path))
            entry = files[key]
            if self.old is not None:
                self.editable.append(_span(self.old, "files", key))
            for stale in [k for k in entry if k in REPLACED and k not in fields]:
                del entry[stale]  # another source or old hashes: the new fields say it all (`layout` stays)
        else:
            before = _slot_after(files)
            entry = files[_scalar(key)] = CommentedMap()
        for k, v in fields.items():
            entry[k] = _scalar(v)
        _carry_comments(before, _slot_after(entry))  # a new entry goes above what followed the last one

    def add_to_variant(self, variant: str, key: str, already: bool) -> None:
        """Make variant `variant` select `key` (creating the variant), unless its patterns `already` do."""
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        if already:
            return
        variants = self.doc.get("variants")
        if variants is None:
            keys = list(self.doc)
            at = keys.index("files")
            before = _slot_after(self.doc, keys[at - 1]) if at else None
            variants = CommentedMap()
            variants[_scalar(variant)] = CommentedSeq([_scalar(key)])
            self.doc.insert(at, "variants", variants)
            _carry_comments(before, _slot_after(variants))
            return
        if self.old is not None:
            self.editable.append(_span(self.old, "variants", variant))
        current = variants.get(variant)
        if isinstance(current, str):
            variants[variant] = current = CommentedSeq([current])
        before = _slot_after(variants)
        if current is None:
            variants[_scalar(variant)] = CommentedSeq([_scalar(key)])
            _carry_comments(before, _slot_after(variants))
        else:
            before = _slot_after(current)
            current.append(_scalar(key))
            _carry_comments(before, _slot_after(current))

    def render(self, want: FileEntry, before: Manifest | None) -> tuple[str, Manifest]:
        """The new text, checked by the loader and against the old text (see the module's guards)."""
        out = io.StringIO()
        self.yaml.dump(self.doc, out)
        text = out.getvalue()
        after = parse_manifest(text, self.path)
        got = after.files.get(want.path)
        if got is None or (got.urls, got.integrity.hashes, got.integrity.size) != (
                want.urls, want.integrity.hashes, want.integrity.size):
            raise ManifestError(f"the edited text would not read back as the entry for {want.path!r}; "
                                "nothing was written", str(self.path))
        if before is not None:
            changed = [k for k in before.files if k != want.path and before.files[k] != after.files.get(k)]
            lost = _kept_in_order(self.old or "", text, self.editable)
            if changed or lost:
                what = f"entry {changed[0]!r}" if changed else f"line {lost[0].strip()!r}"
                raise ManifestError(f"editing would also change {what}; nothing was written. Add the entry by hand:\n"
                                    + entry_text(want.path, text), str(self.path))
        return text, after


def entry_text(key: str, text: str) -> str:
    """The lines of `files: KEY` in `text`, for a message that asks a person to paste them."""
    span = _span(text, "files", key)
    lines = text.splitlines()
    return "\n".join(lines[i] for i in span)


def _stem(path: Path) -> str:
    name = path.name
    return re.sub(r"\.ya?ml$", "", name)


__all__ = ["ManifestEdit", "entry_text", "plain_ok"]
