"""`verify` for CI: GitHub workflow annotations and JUnit XML, each failure tied to its manifest line.

Each verified file is traced back to the manifest that lists it (the record
names each manifest's file; `--manifest` names them directly) and to the line
of its key there (a file listed from a folder entry: the folder's line), so
`::error file=manifests/x.yaml,line=12::...` lands on the entry to fix.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import yamlsafe
from .concrete import load
from .errors import CkptfetchError
from .manifest import MAX_MANIFEST_BYTES
from .record import read_record
from .results import VerifyItem, VerifyResult
from .status import Check


@dataclass(frozen=True)
class Origin:
    """Where a verified file is listed: the manifest (as a path to show), its name, the line of its key."""

    manifest: str
    name: str
    line: int | None


def shown_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the current folder when it is inside it (what GitHub matches against the checkout)."""
    absolute = os.path.abspath(path)
    here = os.getcwd()
    if absolute == here or absolute.startswith(here + os.sep):
        return Path(os.path.relpath(absolute, here)).as_posix()
    return str(path)


def _line(source: str, key: str, parent: str | None, cache: dict[str, yamlsafe.Lines | None]) -> int | None:
    if source not in cache:
        try:
            _, cache[source] = yamlsafe.load(yamlsafe.read_text(Path(source), MAX_MANIFEST_BYTES, "manifest"), source)
        except CkptfetchError:
            cache[source] = None  # moved or broken since: the annotation names the file without a line
    lines = cache[source]
    if lines is None:
        return None
    return lines.of("files", key) if lines.of("files", key) is not None else lines.of("files", parent or key)


def origins(result: VerifyResult, manifests: Sequence[str] = ()) -> dict[str, Origin]:
    """The manifest and line behind each item of `result` (from `manifests` if given, else the record)."""
    listed: dict[str, tuple[str, str, str | None]] = {}  # path -> (source, name, parent key)
    if manifests:
        for ref in manifests:
            m = load(ref)
            for key in m.files:
                listed[key] = (str(m.source), m.name, None)
            folders = [k for k in m.files if k.endswith("/")]
            for item in result.items:
                parent = next((f for f in folders if item.path.startswith(f)), None)
                if parent and item.path not in listed:
                    listed[item.path] = (str(m.source), m.name, parent)
    else:
        for name, info in read_record(result.dest)["manifests"].items():
            for key, pins in info.get("files", {}).items():
                listed[key] = (str(info.get("source", "")), name, pins.get("parent"))
    cache: dict[str, yamlsafe.Lines | None] = {}
    out = {}
    for item in result.items:
        if item.path in listed:
            source, name, parent = listed[item.path]
            out[item.path] = Origin(shown_path(source), name, _line(source, item.path, parent, cache))
    return out


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _problem(item: VerifyItem) -> str:
    detail = f" ({item.detail})" if item.detail else ""
    return f"{item.path}: {item.status}{detail}"


def github_annotations(result: VerifyResult, found: dict[str, Origin]) -> list[str]:
    """One `::error` workflow command per file that is not OK, on its manifest's line."""
    out = []
    for item in result.items:
        if item.status == Check.OK:
            continue
        o = found.get(item.path)
        if o is not None:
            where = f"file={_escape(o.manifest, True)}" + (f",line={o.line}" if o.line else "")
            fix = " Run `ckptfetch get` to fetch it again, or fix the entry." if item.status != Check.UNLISTED else ""
        else:
            where = f"file={_escape(shown_path(result.dest / item.path), True)}"
            fix = ""
        title = _escape(f"ckptfetch verify: {item.status}", True)
        out.append(f"::error {where},title={title}::{_escape(_problem(item) + fix)}")
    return out


def junit_xml(result: VerifyResult, found: dict[str, Origin]) -> str:
    """A JUnit XML report: one test case per file, failing unless it is OK."""
    bad = [i for i in result.items if i.status != Check.OK]
    suite = ET.Element("testsuite", name=f"ckptfetch verify {shown_path(result.dest)}", tests=str(len(result.items)),
                       failures=str(len(bad)), errors="0", skipped="0")
    for item in result.items:
        o = found.get(item.path)
        case = ET.SubElement(suite, "testcase", classname=f"ckptfetch.{o.name if o else 'unlisted'}", name=item.path)
        if o is not None:
            case.set("file", o.manifest)
            if o.line:
                case.set("line", str(o.line))
        if item.status != Check.OK:
            failure = ET.SubElement(case, "failure", message=_problem(item), type=str(item.status))
            failure.text = _problem(item)
    root = ET.Element("testsuites", name="ckptfetch verify", tests=str(len(result.items)), failures=str(len(bad)))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike[str], text: str) -> None:
    """Write the report atomically (a CI step that reads it never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


__all__ = ["Origin", "github_annotations", "junit_xml", "origins", "shown_path", "write_junit"]
