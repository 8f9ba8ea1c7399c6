"""A JSON Schema of the manifest format, built from the loader's own tables (keys, algorithms, layouts).

Editors validate manifests with it (`# yaml-language-server: $schema=...`);
`schema/manifest.schema.json` in the repository is `render()`'s output, and
a test keeps the two equal. The loader checks more than a schema can say:
`LOADER_ONLY` lists what, so nobody mistakes schema-valid for loadable.

>>> SCHEMA["properties"]["ckptfetch"]
{'const': 1, 'description': 'format version'}
"""

from __future__ import annotations

import json
from typing import Any

from .hashing import ALGORITHMS
from .manifest import ARCHIVE_FORMATS, FORMAT_VERSION, NAME_RE
from .status import LAYOUTS

# A relative POSIX path as `manifest.path_problem` accepts it: no leading `/`, drive letter, `..`, `.` or empty
# component, backslash, control or bidirectional-override character, nothing under `.ckptfetch/`.
_PATH_BODY = (r"(?!/)(?![A-Za-z]:)(?!\.ckptfetch(/|$))(?!(.*/)?\.\.?(/|$))(?!.*//)"
              "[^\\\\\u0000-\u001f\u007f\u202a-\u202e\u2066-\u2069]+")
REL_PATH = f"^{_PATH_BODY}(?<!/)$"
FOLDER_KEY = f"^{_PATH_BODY}/$"
URL = r"^(https?://[^\s/?#]+|file://|hf://)[^\s\u0000-\u001f\u007f]*$"

LOADER_ONLY = (
    "`name` equals the file name's stem",
    "every `archive` a file names is defined under `archives`",
    "an archive member is taken by one file only",
    "each variant pattern matches some file",
    "no target is also the folder of another target",
    "a URL's port is a valid number; two URLs of one file agree on the sha256 their names carry",
    "no key repeats in a mapping (JSON has no duplicate keys to check)",
)
"""What the loader refuses that this schema cannot express."""


def _text() -> dict[str, Any]:
    return {"type": "string", "pattern": r"\S"}


def _integrity() -> dict[str, Any]:
    props: dict[str, Any] = {algo: {"type": "string", "pattern": f"^[0-9a-fA-F]{{{n}}}$",
                                    "description": f"{algo} of the bytes, {n} hex digits (quote all-digit ones)"}
                             for algo, n in ALGORITHMS.items()}
    props["size"] = {"type": "integer", "minimum": 0, "description": "size in bytes"}
    return props


def _url() -> dict[str, Any]:
    return {"type": "string", "pattern": URL}


def _urls() -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": _url(), "description": "mirrors, tried in order"}


def _only(*present: str, absent: tuple[str, ...]) -> dict[str, Any]:
    return {"required": list(present), "not": {"anyOf": [{"required": [k]} for k in absent]}}


def _file() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "one target file and its one source",
        "properties": {
            "url": _url(), "urls": _urls(),
            "archive": {**_text(), "description": "a name under `archives`"},
            "member": {"type": "string", "pattern": REL_PATH, "description": "the member's path inside the archive"},
            "manual": {**_text(), "description": "how a person gets the file (then `url` is the page to visit)"},
            "layout": {"enum": list(LAYOUTS)},
            **_integrity(),
        },
        "additionalProperties": False,
        "oneOf": [
            _only("url", absent=("urls", "archive", "manual", "member")),
            _only("urls", absent=("url", "archive", "manual", "member")),
            _only("archive", "member", absent=("url", "urls", "manual")),
            {**_only("manual", absent=("urls", "archive", "member")),
             "properties": {"url": {"type": "string", "pattern": "^https?://"}}},
        ],
    }


def _folder() -> dict[str, Any]:
    include = {"oneOf": [{"type": "string", "minLength": 1},
                         {"type": "array", "items": {"type": "string", "minLength": 1}}]}
    return {
        "type": "object",
        "description": "every file under a folder: of a Hugging Face repo (`url`), or of an archive (`archive` + "
                       "`member: FOLDER/`, `/` for all of it)",
        "properties": {
            "url": {"type": "string", "pattern": r"^hf://[^\s]*/$"},
            "archive": {**_text(), "description": "a name under `archives`"},
            "member": {"type": "string", "pattern": f"(^/$)|({FOLDER_KEY})"},
            "include": include,
            "layout": {"enum": list(LAYOUTS)},
        },
        "additionalProperties": False,
        "oneOf": [_only("url", absent=("archive", "member")), _only("archive", "member", absent=("url",))],
    }


def _archive() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"url": _url(), "urls": _urls(), "format": {"enum": list(ARCHIVE_FORMATS)}, **_integrity()},
        "additionalProperties": False,
        "oneOf": [_only("url", absent=("urls",)), _only("urls", absent=("url",))],
    }


def build() -> dict[str, Any]:
    """The schema, as a JSON-ready dict (JSON Schema draft-07, which editors' YAML plugins read)."""
    patterns = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ckptfetch manifest",
        "description": "A ckptfetch manifest (format 1). The loader also checks: " + "; ".join(LOADER_ONLY) + ".",
        "type": "object",
        "required": ["ckptfetch", "name", "files"],
        "additionalProperties": False,
        "properties": {
            "ckptfetch": {"const": FORMAT_VERSION, "description": "format version"},
            "name": {"type": "string", "pattern": NAME_RE.pattern, "description": "equals the file name's stem"},
            "description": {"type": "string"},
            "homepage": {"type": "string"},
            "root": {"type": "string", "pattern": f"(^\\.$)|({REL_PATH})", "description": "default destination"},
            "layout": {"enum": list(LAYOUTS)},
            "variants": {"type": "object", "additionalProperties": patterns,
                         "description": "named subsets: fnmatch patterns over target paths"},
            "archives": {"type": "object", "additionalProperties": _archive()},
            "files": {
                "type": "object", "minProperties": 1,
                "propertyNames": {"pattern": f"({REL_PATH})|({FOLDER_KEY})"},
                "patternProperties": {"/$": _folder(), "[^/]$": _file()},
            },
        },
    }


SCHEMA = build()


def render() -> str:
    """The schema as published: indented JSON with a final newline."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=True) + "\n"


__all__ = ["LOADER_ONLY", "SCHEMA", "build", "render"]
