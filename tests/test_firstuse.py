"""Libraries that fetch on first use: `ckptfetch.path`, package manifests, `FetchResult.paths` and errors."""

from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import ckptfetch

from .conftest import REPO, blob, cli_env, invoke, md5
from .httpserver import TestServer


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No user config or project settings leak in; the cwd is an empty folder; CKPTFETCH_* unset."""
    for k in [k for k in list(__import__("os").environ) if k.startswith("CKPTFETCH_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CKPTFETCH_BACKOFF", "0.01")
    monkeypatch.setenv("CKPTFETCH_RETRIES", "2")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work


def _package(root: Path, name: str, manifest: str) -> None:
    (root / name / "manifests").mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    (root / name / "manifests" / "models.yaml").write_text(manifest)


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for packages made by the test (forgotten afterwards)."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]
    importlib.invalidate_caches()


def _manifest(files: dict[str, dict[str, object]], name: str = "models") -> str:
    return yaml.safe_dump({"ckptfetch": 1, "name": name, "files": files})


# --- the README's examples -----------------------------------------------------------------


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(title)
    return text[start:text.index("\n## ", start)]


def test_readme_examples_run(isolated: Path, on_path: Path, server: TestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    section = _readme_section("### Fetching on first use")
    manifest = re.search(r"```yaml\n# mypkg/manifests/models.yaml\n(.*?)```", section, re.S)
    assert manifest is not None
    _package(on_path, "mypkg", manifest.group(1))
    (isolated / "manifests").mkdir()
    (isolated / "manifests" / "models.yaml").write_text(manifest.group(1))
    zeros = bytes(1 << 20)  # the README pins 1 MiB of zero bytes
    for name in ("detector-v1.pth", "pose-v1.pth"):
        server.add(f"/example.org/releases/{name}", zeros)
    monkeypatch.setenv("CKPTFETCH_MIRRORS", f"https://={server.url}/")
    blocks = re.findall(r"```pycon\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    globs: dict[str, object] = {}
    for n, block in enumerate(blocks):
        test = parser.get_doctest(block, globs, f"README first use #{n}", "README.md", 0)
        runner.run(test, clear_globs=False)
        globs = test.globs  # the next block goes on from this one, as in one session
        if n == 0:
            assert server.hits("/example.org/releases/pose-v1.pth") == 0, "path() fetches that file only"
            assert (isolated.parent / "cache" / "ckptfetch" / "models" / "detector.pth").is_file()
    assert runner.summarize(verbose=False).failed == 0
    # Once for path(); ./models then links it from the machine's store (README "The store").
    assert server.hits("/example.org/releases/detector-v1.pth") == 1


# --- path() -----------------------------------------------------------------------------------


def test_path_fetches_only_that_file(isolated: Path, server: TestServer) -> None:
    a, b = blob(3000, seed=1), blob(4000, seed=2)
    m = isolated / "models.yaml"
    m.write_text(_manifest({
        "nets/a.bin": {"url": server.add("/a.bin", a), "md5": md5(a)},
        "nets/b.bin": {"url": server.add("/b.bin", b), "md5": md5(b)},
    }) + "variants:\n  only-b: [nets/b.bin]\n")
    got = ckptfetch.path(str(m), "nets/a.bin", dest=isolated / "out")
    assert got == isolated / "out" / "nets" / "a.bin" and got.read_bytes() == a
    assert [q.path for q in server.requests if q.method == "GET"] == ["/a.bin"]
    assert ckptfetch.path(m, "*/a.bin", dest=isolated / "out") == got  # a glob naming one file; no new request
    assert server.hits("/a.bin") == 1
    with pytest.raises(ckptfetch.UsageError, match="matches 2 files"):
        ckptfetch.path(m, "nets/*", dest=isolated / "out")
    with pytest.raises(ckptfetch.UsageError, match="no file 'nets/a.bin' of variant 'only-b'"):
        ckptfetch.path(m, "nets/a.bin", dest=isolated / "out", variant="only-b")
    assert ckptfetch.path(m, "*.bin", variant="only-b", dest=isolated / "out").read_bytes() == b
    # The default destination of a manifest given by path is its root, as for `get`.
    assert ckptfetch.path(m, "nets/a.bin") == isolated / "models" / "nets" / "a.bin"


def test_path_raises_the_clis_errors(isolated: Path, server: TestServer) -> None:
    data = blob(2000)
    m = isolated / "models.yaml"
    m.write_text(_manifest({
        "bad.bin": {"url": server.add("/bad.bin", data), "md5": "0" * 31 + "1"},
        "hand.pt": {"manual": "Ask the authors for it.", "url": "https://example.org/ask", "md5": md5(b"x")},
        "gone.bin": {"url": server.url + "/gone.bin"},
    }))
    with pytest.raises(ckptfetch.HashMismatch) as mismatch:
        ckptfetch.path(m, "bad.bin", dest=isolated / "out")
    cli = invoke("get", str(m), "--only", "bad.bin", "--dest", str(isolated / "cli"), env=cli_env())
    assert str(mismatch.value).replace(str(isolated / "out"), "") in cli.stderr.replace(str(isolated / "cli"), "")
    with pytest.raises(ckptfetch.ManualFileNeeded, match="Ask the authors for it.; get it from https://example.org/ask"):
        ckptfetch.path(m, "hand.pt", dest=isolated / "out")
    with pytest.raises(ckptfetch.DownloadError, match="HTTP 404"):
        ckptfetch.path(m, "gone.bin", dest=isolated / "out")
    with pytest.raises(ckptfetch.Error):  # the short name of the base class
        ckptfetch.path(m, "gone.bin", dest=isolated / "out")


def test_manifest_inside_a_package_directory_and_zip(isolated: Path, on_path: Path, server: TestServer) -> None:
    data = blob(1500, seed=5)
    text = _manifest({"w.pth": {"url": server.add("/w.pth", data), "md5": md5(data)}})
    _package(on_path, "dirpkg", text)
    with zipfile.ZipFile(on_path / "zipped.zip", "w") as z:
        z.writestr("zippkg/__init__.py", "")
        z.writestr("zippkg/manifests/models.yaml", text)
    sys.path.insert(0, str(on_path / "zipped.zip"))
    try:
        for pkg in ("dirpkg", "zippkg"):
            got = ckptfetch.path(f"{pkg}:manifests/models.yaml", "w.pth", dest=isolated / pkg)
            assert got.read_bytes() == data
    finally:
        sys.path.remove(str(on_path / "zipped.zip"))
    with pytest.raises(ckptfetch.ManifestError, match="no Python package 'nopkg'"):
        ckptfetch.path("nopkg:manifests/models.yaml", "w.pth")
    with pytest.raises(ckptfetch.ManifestError, match="has no file manifests/other.yaml"):
        ckptfetch.path("dirpkg:manifests/other.yaml", "w.pth")


def test_many_threads_one_download(isolated: Path, server: TestServer) -> None:
    data = blob(1 << 20, seed=8)
    server.add("/big.bin", data)
    server.rate = 2 << 20  # half a second: every thread asks while the first is downloading
    m = isolated / "models.yaml"
    m.write_text(_manifest({"big.bin": {"url": server.url + "/big.bin", "md5": md5(data)}}))
    got: list[Path] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            got.append(ckptfetch.path(m, "big.bin", dest=isolated / "out"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(got) == 8 and len(set(got)) == 1
    assert server.hits("/big.bin") == 1
    assert got[0].read_bytes() == data


def test_many_processes_one_download(isolated: Path, server: TestServer) -> None:
    data = blob(1 << 20, seed=9)
    server.add("/big.bin", data)
    server.rate = 2 << 20
    m = isolated / "models.yaml"
    m.write_text(_manifest({"big.bin": {"url": server.url + "/big.bin", "md5": md5(data)}}))
    code = "import ckptfetch, sys; print(ckptfetch.path(sys.argv[1], 'big.bin', dest=sys.argv[2]))"
    env = cli_env(XDG_CONFIG_HOME=str(isolated / "no-config"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(m), str(isolated / "out")], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(isolated / "out" / "big.bin")}
    assert server.hits("/big.bin") == 1


def test_a_file_already_in_place_costs_no_http_library(isolated: Path, server: TestServer) -> None:
    """Once fetched, `ckptfetch.path()` (each time a library loads its model) and a `get` with nothing to fetch
    answer without importing requests, the heaviest import of a run (~0.1 s of a ~0.3 s start-up)."""
    data = blob(5000, seed=4)
    m = isolated / "models.yaml"
    m.write_text(_manifest({"net.bin": {"url": server.add("/net.bin", data), "md5": md5(data)}}))
    out = isolated / "out"
    assert ckptfetch.path(m, "net.bin", dest=out).read_bytes() == data
    env = cli_env(XDG_CONFIG_HOME=str(isolated / "no-config"))
    loaded = "print(sorted(n for n in sys.modules if n.split('.')[0] in ('requests', 'urllib3')))"
    by_path = f"import ckptfetch, sys; ckptfetch.path(sys.argv[1], 'net.bin', dest=sys.argv[2]); {loaded}"
    by_cli = ("import atexit, sys; from ckptfetch.cli import main; "
              f"atexit.register(lambda: {loaded}); main(['get', sys.argv[1], '--dest', sys.argv[2]])")
    for code in (by_path, by_cli):
        r = subprocess.run([sys.executable, "-c", code, str(m), str(out)], env=env, text=True, capture_output=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
    assert server.hits("/net.bin") == 1
    # The same process still downloads when a file is missing: the session is made on first use.
    (out / "net.bin").unlink()
    r = subprocess.run([sys.executable, "-c", by_path, str(m), str(out)], env=env, text=True, capture_output=True,
                       timeout=60)
    assert r.returncode == 0 and "requests" in r.stdout, r.stderr
    assert (out / "net.bin").read_bytes() == data and server.hits("/net.bin") == 2


# --- FetchResult.paths, raise_for_status, raise_on_error ---------------------------------------


def test_fetch_result_paths_and_errors(isolated: Path, server: TestServer) -> None:
    ok = blob(100)
    m = isolated / "models.yaml"
    m.write_text(_manifest({
        "ok.bin": {"url": server.add("/ok.bin", ok)},
        "one.bin": {"url": server.url + "/one.bin"},
        "two.bin": {"url": server.url + "/two.bin"},
    }))
    result = ckptfetch.fetch(m, isolated / "out", only=["ok.bin", "one.bin"])
    assert result.paths == {"ok.bin": isolated / "out" / "ok.bin"}
    with pytest.raises(ckptfetch.DownloadError) as one:
        result.raise_for_status()
    assert str(one.value) == next(f.error for f in result.files if f.path == "one.bin")
    with pytest.raises(ckptfetch.FetchFailed) as both:
        ckptfetch.fetch(m, isolated / "out", raise_on_error=True)
    assert sorted(both.value.failures) == ["one.bin", "two.bin"] and "2 files failed" in str(both.value)
    ckptfetch.fetch(m, isolated / "out", only=["ok.bin"]).raise_for_status()  # nothing failed: no error
