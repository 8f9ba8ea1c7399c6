"""Fuzzed manifests (README Guarantee 13): only ManifestError / exit 2, never a traceback.

Profiles (HYPOTHESIS_PROFILE): `ci` (default, 200 examples per test), `thorough`
(10,000 examples: `HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_manifest_fuzz.py`)
and `dev` (20, for iterating). Generation is structure-aware: a valid manifest
is built, then mutated (wrong types, odd keys, huge numbers, Unicode, YAML tags
that a safe loader must refuse, anchors and aliases up to "billion laughs",
duplicate keys, hostile paths), plus raw text and raw bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptfetch.cli import main
from ckptfetch.errors import ManifestError
from ckptfetch.manifest import Manifest, load_manifest
from ckptfetch.targets import path_problem

from . import faultstats

_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                                       HealthCheck.filter_too_much]}
settings.register_profile("ci", max_examples=200, **_common)
settings.register_profile("thorough", max_examples=10_000, **_common)
settings.register_profile("dev", max_examples=20, **_common)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
CLI_EXAMPLES = {"ci": 40, "thorough": 2000, "dev": 5}.get(PROFILE, 40)
TIME_LIMIT = 5.0  # seconds for one manifest, whatever it holds (alias bombs included)

# --- generation ------------------------------------------------------------------------------

HEX = "0123456789abcdef"
names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True)
segments = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True).filter(lambda s: s not in (".", ".."))
rel_paths = st.lists(segments, min_size=1, max_size=3).map("/".join)
urls = st.builds(lambda host, path: f"https://{host}.example/{path}", names, rel_paths)
hostile_paths = st.sampled_from([
    "../x", "/abs/x", "a/../../b", "C:/x", "a\\b", "a//b", "./a", "a/./b", "", " ", ".ckptfetch/x", "a\x00b",
    "a\nb", "\u202ecod.pth", "a/", "..", ".", "caf\u00e9/\u6a21\u578b.pth", "x" * 5000,
])
weird_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50), st.binary(max_size=20),
    hostile_paths, st.just(-1), st.just(2**64),
)
weird_values = st.recursive(weird_scalars, lambda kids: st.lists(kids, max_size=4)
                            | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    files: dict[str, Any] = {}
    archives: dict[str, Any] = {}
    for path in draw(st.lists(rel_paths, min_size=1, max_size=5, unique=True)):
        if any(p.startswith(path + "/") or path.startswith(p + "/") for p in files):
            continue
        kind = draw(st.sampled_from(["url", "urls", "archive", "manual"]))
        entry: dict[str, Any] = {}
        if kind == "url":
            entry["url"] = draw(urls)
        elif kind == "urls":
            entry["urls"] = draw(st.lists(urls, min_size=1, max_size=3))
        elif kind == "archive":
            aname = draw(names)
            archives.setdefault(aname, {"url": draw(urls)})
            entry["archive"] = aname
            entry["member"] = draw(rel_paths) + f"/{len(files)}"
        else:
            entry["manual"] = draw(st.text(min_size=1, max_size=30).filter(str.strip))
        for algo, n in (("md5", 32), ("sha1", 40), ("sha256", 64)):
            if draw(st.booleans()):
                entry[algo] = draw(st.text(HEX, min_size=n, max_size=n))
        if draw(st.booleans()):
            entry["size"] = draw(st.integers(min_value=0, max_value=2**40))
        files[path] = entry
    doc: dict[str, Any] = {"ckptfetch": 1, "name": "fuzz", "files": files}
    if archives:
        doc["archives"] = archives
    if draw(st.booleans()):
        doc["variants"] = {"minimal": [next(iter(files))], "all": ["*"]}
    for key in ("description", "homepage"):
        if draw(st.booleans()):
            doc[key] = draw(st.text(min_size=1, max_size=20).filter(str.strip))
    if draw(st.booleans()):
        doc["root"] = draw(rel_paths)
    return doc


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@st.composite
def mutated_manifests(draw: st.DrawFn) -> str:
    """A valid manifest, mutated structurally, dumped, then (maybe) mutated as text."""
    doc: Any = draw(valid_manifests())
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "add-key", "del-key", "rename-key", "hostile-path"]))
        target = draw(st.sampled_from(_paths(doc)))
        node: Any = doc
        for key in target:
            node = node[key]
        if op == "set":
            doc = _set(doc, target, draw(weird_values))
        elif op == "add-key" and isinstance(node, dict):
            node[draw(st.one_of(st.text(max_size=12), st.sampled_from(["md55", "urll", "members", "sha384", "ckptfetch"])))] = draw(weird_values)
        elif op == "del-key" and isinstance(node, dict) and node:
            del node[draw(st.sampled_from(sorted(node, key=str)))]
        elif op == "rename-key" and isinstance(node, dict) and node:
            old = draw(st.sampled_from(sorted(node, key=str)))
            node[draw(st.one_of(st.text(max_size=12), weird_scalars.filter(lambda v: isinstance(v, (int, str, bool)) or v is None)))] = node.pop(old)
        elif op == "hostile-path" and isinstance(doc, dict) and isinstance(doc.get("files"), dict) and doc["files"]:
            old = draw(st.sampled_from(sorted(doc["files"], key=str)))
            doc["files"][draw(hostile_paths)] = doc["files"].pop(old)
    try:
        text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)
    except yaml.YAMLError:
        text = repr(doc)
    for _ in range(draw(st.integers(0, 2))):
        text = draw(text_mutation(text))
    return text


TAGS = ["!!python/object:os.system", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
        "!!python/module:os", "!!binary aGVsbG8=", "!!timestamp 2001-12-14", "!!set {a, b}", "!!omap [a: 1]",
        "!!str", "!!int 12", "!custom thing", "!!float .nan", "!<tag:yaml.org,2002:python/tuple> [1]"]


def laughs(depth: int, width: int) -> str:
    lines = ["lol0: &l0 [lol, lol, lol]"]
    for i in range(1, depth):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines)


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines() or [""]
    i = draw(st.integers(0, len(lines)))
    op = draw(st.sampled_from(["tag", "laughs", "recursive", "dup", "delete", "insert", "truncate", "indent"]))
    if op == "tag":
        line = lines[min(i, len(lines) - 1)]
        if ":" in line:
            k, _, _ = line.partition(":")
            lines[min(i, len(lines) - 1)] = f"{k}: {draw(st.sampled_from(TAGS))}"
        else:
            lines.insert(i, f"x: {draw(st.sampled_from(TAGS))}")
    elif op == "laughs":
        bomb = laughs(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
        lines = bomb.splitlines() + lines
        if draw(st.booleans()):
            lines.append(f"description: *l{draw(st.integers(0, 1))}")
    elif op == "recursive":
        lines.append(draw(st.sampled_from(["variants: &v {a: *v}", "variants:\n  v: &w [*w]", "root: &r [*r, *r]"])))
    elif op == "dup":
        lines.insert(i, lines[min(i, len(lines) - 1)])
    elif op == "delete" and lines:
        del lines[min(i, len(lines) - 1)]
    elif op == "insert":
        lines.insert(i, draw(st.text(max_size=40)))
    elif op == "truncate":
        return "\n".join(lines)[: draw(st.integers(0, len(text)))]
    elif op == "indent":
        j = min(i, len(lines) - 1)
        lines[j] = draw(st.sampled_from(["", " ", "\t", "   "])) + lines[j]
    return "\n".join(lines)


# --- the properties -------------------------------------------------------------------------------


def check_load(text: str | bytes) -> str:
    """Load `text` as fuzz.yaml: a Manifest or a ManifestError, quickly; anything else fails the test."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.yaml"
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
        t0 = time.monotonic()
        try:
            m = load_manifest(p)
            outcome = "valid"
        except ManifestError as exc:
            message = str(exc)
            assert message.startswith(str(p)), message
            assert len(message) < 2000, f"an error message of {len(message)} characters"
            outcome = "manifest-error"
            m = None
        elapsed = time.monotonic() - t0
        assert elapsed < TIME_LIMIT, f"took {elapsed:.1f}s"
    if isinstance(m, Manifest):
        for e in m.files.values():
            assert path_problem(e.path) is None
            assert e.member is None or path_problem(e.member) is None
            assert all(u.startswith(("https://", "http://", "file://")) for u in e.urls)
    faultstats.count(f"fuzzed manifests ({outcome})")
    return outcome


@given(mutated_manifests())
def test_structured_mutations_only_raise_manifest_errors(text: str) -> None:
    check_load(text)


@given(valid_manifests())
def test_valid_manifests_load(doc: dict[str, Any]) -> None:
    assert check_load(yaml.safe_dump(doc, allow_unicode=True)) == "valid"


@given(st.text(max_size=400))
def test_raw_text_only_raises_manifest_errors(text: str) -> None:
    check_load(text)


@given(st.binary(max_size=400))
def test_raw_bytes_only_raise_manifest_errors(data: bytes) -> None:
    check_load(data)


def test_billion_laughs_is_refused_quickly() -> None:
    t0 = time.monotonic()
    text = laughs(10, 10) + "\nckptfetch: 1\nname: fuzz\nfiles:\n  a: {url: 'https://x.example/a'}\ndescription: *l9\n"
    assert check_load(text) == "manifest-error"
    assert time.monotonic() - t0 < 2


def test_python_tags_are_refused_not_run(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    for tag in (f"!!python/object/apply:os.system ['touch {canary}']", "!!python/name:os.system",
                f"!!python/object/new:subprocess.check_output [['touch', '{canary}']]"):
        assert check_load(f"ckptfetch: 1\nname: fuzz\ndescription: {tag}\nfiles:\n  a: {{url: 'https://x.example/a'}}\n") == "manifest-error"
    assert not canary.exists()


@settings(max_examples=CLI_EXAMPLES)
@given(mutated_manifests())
def test_cli_exits_2_with_one_message_never_a_traceback(text: str) -> None:
    """The same inputs through the CLI's error boundary (`get --dry-run`: no network)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["get", str(p), "--dry-run", "--no-progress", "--dest", str(Path(d) / "dest")])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
        stderr = err.getvalue()
        assert "Traceback" not in stderr and "internal error" not in stderr, stderr
        assert code in (0, 2), (code, stderr)
        if code == 2:
            assert stderr.count("error:") == 1, stderr
        assert not (Path(d) / "dest").exists(), "a dry run wrote something"
    faultstats.count(f"fuzzed manifests through the CLI (exit {code})")


def test_a_huge_manifest_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    p = tmp_path / "fuzz.yaml"
    with open(p, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of NULs
    t0 = time.monotonic()
    try:
        load_manifest(p)
    except ManifestError as exc:
        assert "larger than 16 MiB" in str(exc)
    else:
        raise AssertionError("a 1 GiB manifest was accepted")
    assert time.monotonic() - t0 < 1
