"""The manifest's JSON Schema: published as generated, valid for every bundled manifest, agreeing with the loader."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from ckptfetch.errors import ManifestError
from ckptfetch.manifest import parse_manifest
from ckptfetch.schema import SCHEMA, render

from .conftest import REPO, invoke

VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
MD5 = "0123456789abcdef0123456789abcdef"


def test_the_published_schema_is_the_generated_one() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert (REPO / "schema" / "manifest.schema.json").read_text() == render(), \
        "run `ckptfetch schema -o schema/manifest.schema.json`"
    assert invoke("schema").stdout == render()


@pytest.mark.parametrize("path", sorted((REPO / "manifests").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_manifest_is_valid(path: Path) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def _doc(**top: object) -> str:
    doc: dict[str, object] = {"ckptfetch": 1, "name": "m", "files": {"a.bin": {"url": "https://h.org/a.bin"}}}
    doc.update(top)
    return yaml.safe_dump(doc)


def _files(**entry: object) -> str:
    return _doc(files={"a.bin": entry})


GOOD = {
    "minimal": _doc(),
    "urls, hashes, size, layout": _files(urls=["https://a.org/x", "http://b.org/x"], md5=MD5, size=3, layout="torch-hub"),
    "archive member": _doc(archives={"z": {"url": "https://h.org/z.zip", "format": "zip"}},
                           files={"d/a.bin": {"archive": "z", "member": "in/a.bin", "sha1": "a" * 40}}),
    "manual with a page": _files(manual="Sign in and download it.", url="https://h.org/page", sha256="b" * 64),
    "folder": _doc(files={"hub/": {"url": "hf://org/repo/dir/", "include": ["*.ckpt"]}}),
    "archive folder": _doc(archives={"src": {"url": "https://h.org/main.zip"}},
                           files={"code/": {"archive": "src", "member": "repo-main/", "include": "*.py"}}),
    "whole archive as a folder": _doc(archives={"src": {"url": "https://h.org/main.zip"}},
                                      files={"all/": {"archive": "src", "member": "/"}}),
    "variants as string and list": _doc(variants={"a": "a.bin", "b": ["a*"]}),
    "root dot, description": _doc(root=".", description="d", homepage="https://h.org", layout="plain"),
    "uppercase digest": _files(url="file:///tmp/a", md5=MD5.upper()),
}

BAD = {
    "no version": yaml.safe_dump({"name": "m", "files": {"a.bin": {"url": "https://h.org/a"}}}),
    "version 2": _doc(ckptfetch=2),
    "bad name": _doc(name="Bad Name"),
    "unknown top key": _doc(filez={}),
    "no files": _doc(files={}),
    "unknown file key": _files(url="https://h.org/a", md55=MD5),
    "two sources": _doc(archives={"z": {"url": "https://h.org/z"}},
                        files={"a.bin": {"url": "https://h.org/a", "archive": "z", "member": "a"}}),
    "url and urls": _files(url="https://h.org/a", urls=["https://h.org/b"]),
    "no source": _files(md5=MD5),
    "member without archive": _files(url="https://h.org/a", member="x"),
    "archive without member": _doc(archives={"z": {"url": "https://h.org/z"}}, files={"a.bin": {"archive": "z"}}),
    "short md5": _files(url="https://h.org/a", md5="abc"),
    "negative size": _files(url="https://h.org/a", size=-1),
    "size as text": _files(url="https://h.org/a", size="12"),
    "ftp url": _files(url="ftp://h.org/a"),
    "url without host": _files(url="https://"),
    "url with a space": _files(url="https://h.org/a b"),
    "absolute target": _doc(files={"/etc/a": {"url": "https://h.org/a"}}),
    "dotdot target": _doc(files={"x/../a": {"url": "https://h.org/a"}}),
    "backslash target": _doc(files={"x\\a": {"url": "https://h.org/a"}}),
    "drive letter": _doc(files={"C:/a": {"url": "https://h.org/a"}}),
    "reserved folder": _doc(files={".ckptfetch/a": {"url": "https://h.org/a"}}),
    "empty component": _doc(files={"a//b": {"url": "https://h.org/a"}}),
    "bidi override": _doc(files={"a\u202eb": {"url": "https://h.org/a"}}),
    "bad layout": _files(url="https://h.org/a", layout="flat"),
    "include on a file": _files(url="https://h.org/a", include=["*"]),
    "folder with a plain url": _doc(files={"d/": {"url": "https://h.org/d/"}}),
    "folder with a hash": _doc(files={"d/": {"url": "hf://o/r/d/", "md5": MD5}}),
    "archive folder with a file member": _doc(archives={"z": {"url": "https://h.org/z"}},
                                              files={"d/": {"archive": "z", "member": "a.bin"}}),
    "archive folder with a url too": _doc(archives={"z": {"url": "https://h.org/z"}},
                                          files={"d/": {"archive": "z", "member": "x/", "url": "hf://o/r/d/"}}),
    "manual page on hf": _files(manual="by hand", url="hf://o/r/a"),
    "bad archive format": _doc(archives={"z": {"url": "https://h.org/z", "format": "rar"}},
                               files={"a.bin": {"archive": "z", "member": "a"}}),
    "empty variant": _doc(variants={"v": []}),
    "root outside": _doc(root="../up"),
}

# What only the loader can check (schema.LOADER_ONLY): valid to the schema, refused by the loader.
LOADER_ONLY = {
    "name is not the file's stem": _doc(name="other"),
    "undefined archive": _doc(files={"a.bin": {"archive": "nope", "member": "a"}}),
    "member taken twice": _doc(archives={"z": {"url": "https://h.org/z"}},
                               files={"a": {"archive": "z", "member": "m"}, "b": {"archive": "z", "member": "m"}}),
    "variant matching nothing": _doc(variants={"v": ["zzz*"]}),
    "file that is a folder of another": _doc(files={"a": {"url": "https://h.org/a"}, "a/b": {"url": "https://h.org/b"}}),
    "bad port": _files(url="https://h.org:99999/a"),
}


def _loader_accepts(text: str) -> bool:
    try:
        parse_manifest(text, "m.yaml")
    except ManifestError:
        return False
    return True


def _schema_accepts(text: str) -> bool:
    return VALIDATOR.is_valid(yaml.safe_load(text))


@pytest.mark.parametrize(("case", "text", "valid"), [(k, v, True) for k, v in GOOD.items()]
                         + [(k, v, False) for k, v in BAD.items()], ids=[*GOOD, *BAD])
def test_schema_and_loader_agree(case: str, text: str, valid: bool) -> None:
    assert _loader_accepts(text) is valid, case
    assert _schema_accepts(text) is valid, case


@pytest.mark.parametrize(("case", "text"), list(LOADER_ONLY.items()), ids=list(LOADER_ONLY))
def test_what_only_the_loader_refuses_is_documented(case: str, text: str) -> None:
    assert _schema_accepts(text) and not _loader_accepts(text), case
