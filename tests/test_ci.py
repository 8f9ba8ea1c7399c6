"""CI: `key`, `verify --format github` and `--junit`, `get --quiet`, plain output, and the README's recipe run."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, blob, cli_env, invoke, md5
from .httpserver import TestServer


def _write(path: Path, files: dict[str, dict[str, Any]], **top: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"ckptfetch": 1, "name": path.stem, **top, "files": files}, sort_keys=False))
    return path


def _key(manifest: Path, *args: str, cwd: Path | None = None) -> str:
    r = invoke("key", str(manifest), *args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# --- key ------------------------------------------------------------------------------------

BASE = {
    "a/one.bin": {"url": "https://example.org/one.bin", "md5": "1" * 31 + "a", "size": 10},
    "a/two.bin": {"url": "https://example.org/two.bin", "sha256": "2" * 63 + "b"},
    "b/three.bin": {"url": "https://example.org/three.bin"},
}


def test_key_is_stable_across_runs_folders_and_cosmetics(tmp_path: Path) -> None:
    one = _write(tmp_path / "x" / "m.yaml", BASE, variants={"a": ["a/*"]})
    other = _write(tmp_path / "elsewhere" / "deeper" / "m.yaml", dict(reversed(BASE.items())), variants={"a": ["a/*"]})
    other.write_text("# a comment changes nothing\n" + other.read_text())
    key = _key(one)
    assert re.fullmatch(r"ckptfetch-m-[0-9a-f]{16}", key)
    assert _key(one) == key == _key(other, cwd=tmp_path) == _key(Path("m.yaml"), cwd=one.parent)
    r = invoke("key", str(one), "--json", env=cli_env(CKPTFETCH_MIRRORS="https://=http://127.0.0.1:9/"))
    doc = json.loads(r.stdout)
    assert doc["key"] == key, "mirrors are where bytes come from, not which bytes"
    assert str(tmp_path) not in r.stdout, "no absolute path goes into the key"


@pytest.mark.parametrize("change", ["pin", "size", "path", "url-of-unpinned", "layout"])
def test_key_changes_with_what_is_installed(tmp_path: Path, change: str) -> None:
    m = _write(tmp_path / "m.yaml", BASE)
    before = _key(m)
    files = json.loads(json.dumps(BASE))
    if change == "pin":
        files["a/one.bin"]["md5"] = "3" * 32
    elif change == "size":
        files["a/one.bin"]["size"] = 11
    elif change == "path":
        files["a/renamed.bin"] = files.pop("a/one.bin")
    elif change == "url-of-unpinned":
        files["b/three.bin"]["url"] = "https://example.org/three-v2.bin"
    else:
        files["a/one.bin"]["layout"] = "torch-hub"
    _write(m, files)
    assert _key(m) != before


def test_key_follows_the_variant_and_the_lock(tmp_path: Path) -> None:
    m = _write(tmp_path / "m.yaml", BASE, variants={"a": ["a/*"], "b": ["b/*"]})
    keys = {_key(m), _key(m, "--variant", "a"), _key(m, "--variant", "b"), _key(m, "--only", "a/one.bin")}
    assert len(keys) == 4
    # Pinning the URL of the file that did not move does not change the key (its md5 already pins it).
    files = json.loads(json.dumps(BASE))
    files["a/one.bin"]["url"] = "https://mirror.example.org/one.bin"
    _write(m, files, variants={"a": ["a/*"], "b": ["b/*"]})
    assert _key(m, "--variant", "a") in keys
    lock = tmp_path / "m.lock.yaml"
    pins = {"a/one.bin": {"sha256": "4" * 64, "size": 10}, "a/two.bin": {"sha256": "2" * 63 + "b", "size": 20},
            "b/three.bin": {"sha256": "5" * 64, "size": 30}}  # agreeing with the manifest, as `lock` writes it
    lock.write_text(yaml.safe_dump({"ckptfetch-lock": 1, "manifest": "m", "files": pins}))
    locked = _key(m, "--variant", "b")
    assert locked not in keys, "the lock's pins are part of the key"
    pins["b/three.bin"]["sha256"] = "9" * 64
    lock.write_text(yaml.safe_dump({"ckptfetch-lock": 1, "manifest": "m", "files": pins}))
    assert _key(m, "--variant", "b") != locked


# --- verify --format github, --junit ---------------------------------------------------------


@pytest.fixture
def broken(server: TestServer, tmp_path: Path) -> tuple[Path, Path]:
    """A manifest in tmp/manifests/, installed into tmp/models, with one file corrupted and one deleted."""
    files = {}
    for n in range(3):
        data = blob(2000 + n, seed=n)
        files[f"d/f{n}.bin"] = {"url": server.add(f"/f{n}.bin", data), "md5": md5(data)}
    m = _write(tmp_path / "manifests" / "demo.yaml", files)
    assert invoke("get", "manifests/demo.yaml", "--dest", "models", cwd=tmp_path).returncode == 0
    (tmp_path / "models" / "d" / "f1.bin").write_bytes(b"corrupt")
    (tmp_path / "models" / "d" / "f2.bin").unlink()
    return m, tmp_path


def test_verify_github_annotations_name_the_manifest_line(broken: tuple[Path, Path]) -> None:
    m, cwd = broken
    lines = m.read_text().splitlines()
    line_of = {key: lines.index(f"  {key}:") + 1 for key in ("d/f1.bin", "d/f2.bin")}
    for args in (["verify", "models"], ["verify", "models", "--manifest", "manifests/demo.yaml"]):
        r = invoke(*args, "--format", "github", cwd=cwd)
        assert r.returncode == 1
        notes = [ln for ln in r.stdout.splitlines() if ln.startswith("::")]
        # The record knows the size; the manifest only the md5: the detail says what each one checked.
        assert len(notes) == 2, args
        assert re.fullmatch(
            rf"::error file=manifests/demo.yaml,line={line_of['d/f1.bin']},title=ckptfetch verify%3A FAILED::"
            r"d/f1.bin: FAILED \((size 7, expected 2001|md5 [0-9a-f]{32}, expected [0-9a-f]{32})\) "
            r"Run `ckptfetch get` to fetch it again, or fix the entry\.", notes[0]), notes[0]
        assert notes[1] == (f"::error file=manifests/demo.yaml,line={line_of['d/f2.bin']},title=ckptfetch verify%3A "
                            "MISSING::d/f2.bin: MISSING Run `ckptfetch get` to fetch it again, or fix the entry.")
        assert "d/f0.bin: OK" in r.stdout  # the md5sum -c lines stay
    assert invoke("verify", "models", "--format", "github", "--json", cwd=cwd).returncode == 2


def test_verify_junit_report(broken: tuple[Path, Path]) -> None:
    m, cwd = broken
    r = invoke("verify", "models", "--junit", "reports/checkpoints.xml", cwd=cwd)
    assert r.returncode == 1
    root = ET.parse(cwd / "reports" / "checkpoints.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert sorted(cases) == ["d/f0.bin", "d/f1.bin", "d/f2.bin"]
    assert cases["d/f0.bin"].find("failure") is None
    failure = cases["d/f1.bin"].find("failure")
    assert failure is not None and failure.get("type") == "FAILED" and "expected 2001" in (failure.get("message") or "")
    assert cases["d/f2.bin"].get("file") == "manifests/demo.yaml" and cases["d/f2.bin"].get("classname") == "ckptfetch.demo"
    assert int(cases["d/f2.bin"].get("line") or 0) == m.read_text().splitlines().index("  d/f2.bin:") + 1


# --- get --quiet and plain output --------------------------------------------------------------


def test_get_quiet_prints_errors_only(server: TestServer, tmp_path: Path) -> None:
    m = _write(tmp_path / "q.yaml", {"ok.bin": {"url": server.add("/ok.bin", b"ok")}})
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "--quiet")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    _write(m, {"ok.bin": {"url": server.url + "/ok.bin"}, "gone.bin": {"url": server.url + "/gone.bin"}})
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), "-q")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: gone.bin") and "HTTP 404" in r.stderr and "incomplete" not in r.stderr


def test_output_off_a_terminal_is_plain(server: TestServer, tmp_path: Path) -> None:
    """No colour codes, no bars, even when TERM says the terminal could show them (a CI log is no terminal)."""
    m = _write(tmp_path / "p.yaml", {"a.bin": {"url": server.add("/a.bin", blob(100_000))},
                                     "gone.bin": {"url": server.url + "/gone.bin"}})
    env = {k: v for k, v in cli_env(TERM="xterm-256color").items() if k != "NO_COLOR"}
    for args in (["get", str(m), "--dest", str(tmp_path / "out")], ["verify", str(tmp_path / "out")],
                 ["show", str(m)], ["list"], ["lint", str(m)]):
        r = invoke(*args, env=env)
        assert "\x1b[" not in r.stdout + r.stderr and "\r" not in r.stderr, args


# --- the README's GitHub Actions recipe, run ---------------------------------------------------


def _recipe() -> list[dict[str, Any]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### GitHub Actions"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    steps: list[dict[str, Any]] = yaml.safe_load(textwrap.dedent(block.group(1)))["steps"]
    return steps


class _Job:
    """One run of the recipe on a fresh machine: its steps' commands in order, with a stand-in for actions/cache."""

    def __init__(self, workspace: Path, caches: dict[str, Path], saved: Path, transcript: list[str]) -> None:
        self.ws, self.caches, self.saved, self.log = workspace, caches, saved, transcript
        self.outputs: dict[str, dict[str, str]] = {}
        self.post: list[tuple[str, str]] = []  # caches to save when the job ends (path, key)
        self.restored = ""
        self.after_restore: Callable[[_Job], None] | None = None  # a check of the test's, between two steps

    def ckptfetch(self, command: str) -> str:
        args = shlex.split(command)
        assert args[0] == "ckptfetch", command
        r = invoke(*args[1:], cwd=self.ws)
        self.log.append(f"$ {command}\n{r.stdout}{r.stderr}[exit {r.returncode}]")
        assert r.returncode == 0, f"{command}\n{r.stdout}{r.stderr}"
        return r.stdout

    def expand(self, value: str) -> str:
        return re.sub(r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)\s*\}\}", lambda m: self.outputs[m[1]][m[2]], value)

    def cache(self, spec: dict[str, str]) -> None:
        path, key = spec["path"], self.expand(spec["key"])
        prefixes = [p for p in str(spec.get("restore-keys", "")).split() if p]
        hit = key if key in self.caches else next((k for k in reversed(self.caches) for p in prefixes
                                                   if k.startswith(p)), None)
        self.restored = "exact" if hit == key else "prefix" if hit else "miss"
        self.log.append(f"[actions/cache] key {key}: {self.restored}" + (f" (restored {hit})" if hit else ""))
        if hit:
            shutil.copytree(self.caches[hit], self.ws / path, symlinks=True)
        if hit != key:
            self.post.append((path, key))

    def run(self, steps: list[dict[str, Any]]) -> None:
        for step in steps:
            uses, command = step.get("uses", ""), step.get("run")
            if uses.startswith("actions/cache"):
                self.cache(step["with"])
                if self.after_restore is not None:
                    self.after_restore(self)
            elif command and command.startswith("pip install"):
                self.log.append(f"$ {command}   [skipped: the package under test is installed]")
            elif command and (m := re.fullmatch(r'echo "(\w+)=\$\((ckptfetch [^)]*)\)" >> "\$GITHUB_OUTPUT"', command)):
                self.outputs.setdefault(step["id"], {})[m[1]] = self.ckptfetch(m[2]).strip()
            elif command:
                self.ckptfetch(command)
        for path, key in self.post:
            self.caches[key] = self.saved / f"{len(self.caches)}-{key}"
            shutil.copytree(self.ws / path, self.caches[key], symlinks=True)
            self.log.append(f"[actions/cache post] saved {path} as {key}")


def test_the_readme_github_actions_recipe(server: TestServer, tmp_path: Path) -> None:
    steps = _recipe()
    manifest = next(re.search(r"ckptfetch get (\S+)", s["run"])[1] for s in steps  # type: ignore[index]
                    if "ckptfetch get" in s.get("run", ""))
    data = {n: blob(50_000 + n, seed=n) for n in range(3)}
    files = {f"weights/w{n}.pth": {"url": server.add(f"/w{n}.pth", d), "md5": md5(d)} for n, d in data.items()}
    files["extra/not-in-ci.pth"] = {"url": server.add("/extra.pth", b"extra"), "md5": md5(b"extra")}
    caches: dict[str, Path] = {}
    transcript: list[str] = []

    def job(n: int, check: Callable[[_Job], None] | None = None) -> _Job:
        ws = tmp_path / f"machine-{n}"  # a fresh checkout on another machine: another absolute path
        _write(ws / manifest, files, variants={"ci": ["weights/*"]})
        transcript.append(f"=== run {n} in {ws.name}")
        j = _Job(ws, caches, tmp_path / "caches", transcript)
        j.after_restore = check
        j.run(steps)
        return j

    def stale_fails_verify(j: _Job) -> None:
        """Not a recipe step: what the stale restore holds, had `get` not run (verify compares record and manifest)."""
        r = invoke("verify", "models", cwd=j.ws)
        j.log.append(f"$ ckptfetch verify models   [a check of the test's, not a recipe step]\n{r.stdout}{r.stderr}"
                     f"[exit {r.returncode}]")
        assert r.returncode == 1 and "weights/w1.pth: FAILED" in r.stdout

    def downloads() -> list[str]:
        return [q.path for q in server.requests if q.method == "GET"]

    first = job(1)
    assert first.restored == "miss" and sorted(downloads()) == ["/w0.pth", "/w1.pth", "/w2.pth"]
    k1 = first.outputs["ckpt"]["key"]
    assert (first.ws / "reports" / "checkpoints.xml").is_file()

    second = job(2)
    assert second.outputs["ckpt"]["key"] == k1 and second.restored == "exact"
    assert len(downloads()) == 3, "an exact cache hit fetches nothing"

    # Upstream re-publishes w1 and the project pins the new bytes: the key moves, the old cache is only a start.
    data[1] = blob(60_000, seed=99)
    server.replace("/w1.pth", data[1])
    files["weights/w1.pth"]["md5"] = md5(data[1])
    third = job(3, stale_fails_verify)
    k2 = third.outputs["ckpt"]["key"]
    assert k2 != k1 and third.restored == "prefix", "the stale cache is restored only through restore-keys"
    assert downloads()[3:] == ["/w1.pth"], "only the re-pinned file crosses the network"
    assert (third.ws / "models" / "weights" / "w1.pth").read_bytes() == data[1]
    assert k2 in caches and k1 in caches

    fourth = job(4)
    assert fourth.outputs["ckpt"]["key"] == k2 and fourth.restored == "exact" and len(downloads()) == 4
    print("\n" + "\n".join(transcript))  # the run as the test sees it (pytest -s shows it)
