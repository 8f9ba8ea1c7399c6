"""The public CLI: exit codes, messages, Ctrl-C, several processes at once."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import yaml

from ckptfetch.cli import cli

from .conftest import REPO, blob, cli_env, invoke, md5, run_cli
from .httpserver import TestServer


def manifest(tmp_path: Path, files: dict[str, dict[str, object]], name: str = "demo") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"ckptfetch": 1, "name": name, "files": files}))
    return p


def test_version_and_help() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and "0.1.0" in r.stdout
    for cmd in ("", "list", "show", "get", "verify"):
        r = run_cli(*([cmd] if cmd else []), "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout, cmd


def test_every_command_and_option_has_help() -> None:
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        assert command.help, name
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option":
                assert param.help, f"{name} {param.name}"


@pytest.mark.parametrize("name", sorted(cli.commands))  # type: ignore[attr-defined]
def test_every_command_help_shows_examples(name: str) -> None:
    """`ckptfetch CMD --help` ends with examples of that very command, shown as written (not re-wrapped)."""
    r = invoke(name, "--help")
    assert r.returncode == 0
    examples = r.stdout.split("Examples:", 1)
    assert len(examples) == 2, f"{name} --help has no Examples"
    shown = [ln.strip() for ln in examples[1].splitlines() if ln.strip().startswith("ckptfetch ")]
    assert shown and all(ln.startswith(f"ckptfetch {name}") or "$(ckptfetch" in ln for ln in shown), shown


def test_every_subcommand_of_a_group_shows_examples() -> None:
    for group in (c for c in cli.commands.values() if isinstance(c, click.Group)):  # type: ignore[attr-defined]
        for sub in group.commands:
            r = invoke(group.name or "", sub, "--help")
            assert r.returncode == 0 and "Examples:" in r.stdout, f"{group.name} {sub} --help has no Examples"


def test_list_and_show_bundled_sam_pt() -> None:
    r = invoke("list")
    assert r.returncode == 0 and "sam-pt" in r.stdout and "25 files" in r.stdout
    r = invoke("show", "sam-pt")
    assert r.returncode == 0
    seed = REPO.parent / "shared" / "seeds" / "001_a54cfd18e2fa8c26.txt"
    text = seed.read_text() if seed.exists() else (REPO / "manifests" / "sam-pt.yaml").read_text()
    import re

    for digest, path in re.findall(r"^([0-9a-f]{32})  models/(\S+)$", text, re.MULTILINE):
        assert path in r.stdout and f"md5: {digest}" in r.stdout
    doc = json.loads(invoke("show", "sam-pt", "--json").stdout)
    assert len(doc["files"]) == 25


def test_bundled_manifests_are_found_from_anywhere(tmp_path: Path) -> None:
    r = invoke("get", "sam-pt", "--minimal", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and "2 to fetch" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["get", "no-such-manifest"], 2, "no manifest named"),
        (["get", "sam-pt", "--variant", "minimall"], 2, "did you mean `minimal`"),
        (["get", "sam-pt", "--jobs", "0"], 2, ""),
        (["get"], 2, "Missing argument"),
        (["frobnicate"], 2, "No such command"),
        (["get", "sam-pt", "--mirror", "nonsense"], 2, "FROM=TO"),
        (["verify", "nowhere"], 2, "does not exist"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    r = invoke(*args, cwd=tmp_path)
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_manifest_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("ckptfetch: 1\nname: bad\nfiles:\n  a.bin:\n    url: https://example.org/a\n    md55: abc\n")
    r = invoke("get", str(p))
    assert r.returncode == 2
    assert f"{p}:6:" in r.stderr and "did you mean `md5`" in r.stderr
    assert "Traceback" not in r.stderr


def test_dead_url_exits_1_with_a_clear_message(server: TestServer, tmp_path: Path) -> None:
    good = blob(1000)
    server.add("/good.bin", good)
    m = manifest(tmp_path, {
        "good.bin": {"url": server.url + "/good.bin", "md5": md5(good)},
        "gone.bin": {"url": server.url + "/gone.bin"},
    })
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "HTTP 404" in r.stderr and server.url + "/gone.bin" in r.stderr
    assert (tmp_path / "out/good.bin").read_bytes() == good
    assert not (tmp_path / "out/gone.bin").exists()
    assert "Traceback" not in r.stderr


def test_hash_mismatch_exits_1_naming_digests(server: TestServer, tmp_path: Path) -> None:
    data = blob(1000)
    server.add("/f.bin", data)
    m = manifest(tmp_path, {"f.bin": {"url": server.url + "/f.bin", "md5": "0" * 32}})
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "0" * 32 in r.stderr and md5(data) in r.stderr and "/f.bin" in r.stderr
    assert not (tmp_path / "out/f.bin").exists()


def test_manual_entry(tmp_path: Path) -> None:
    m = manifest(tmp_path, {"hand.pt": {"manual": "Download it from the project page.", "md5": md5(b"ok")}})
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 1 and "Download it from the project page." in r.stderr
    dest.mkdir(exist_ok=True)
    (dest / "hand.pt").write_bytes(b"ok")
    assert invoke("get", str(m), "--dest", str(dest)).returncode == 0
    assert invoke("verify", str(dest)).returncode == 0


def _settled_bytes(server: TestServer, path: str) -> int:
    """bytes_sent once the server has noticed a dead client and stopped writing."""
    last = -1
    while (now := server.bytes_sent(path)) != last:
        last = now
        time.sleep(0.3)
    return now


def _wait_for_partial(dest: Path, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in dest.rglob("*.ckptfetch-partial") if p.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no partial file appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_the_next_run_resumes(server: TestServer, tmp_path: Path, sig: signal.Signals) -> None:
    size = 6 << 20
    data = blob(size)
    server.add("/big.bin", data)
    server.rate = 2 << 20  # 3 s for the file: a loaded machine must not finish it before the signal
    m = manifest(tmp_path, {"big.bin": {"url": server.url + "/big.bin", "md5": md5(data)}})
    dest = tmp_path / "out"
    # A shell that started the test run in the background leaves SIGINT ignored, and a child inherits that
    # (Python then never raises KeyboardInterrupt): give the child the default, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_partial(dest)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (dest / "big.bin").exists()
    kept = (dest / "big.bin.ckptfetch-partial").stat().st_size
    assert kept > 0
    server.rate = None
    sent = _settled_bytes(server, "/big.bin")
    r = run_cli("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert (dest / "big.bin").read_bytes() == data
    assert server.bytes_sent("/big.bin") - sent == size - kept


def test_kill_9_then_resume(server: TestServer, tmp_path: Path) -> None:
    size = 6 << 20
    data = blob(size)
    server.add("/big.bin", data)
    server.rate = 2 << 20  # 3 s for the file: a loaded machine must not finish it before the signal
    m = manifest(tmp_path, {"big.bin": {"url": server.url + "/big.bin", "md5": md5(data)}})
    dest = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_partial(dest)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    kept = (dest / "big.bin.ckptfetch-partial").stat().st_size
    server.rate = None
    sent = _settled_bytes(server, "/big.bin")
    r = run_cli("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert (dest / "big.bin").read_bytes() == data
    assert server.bytes_sent("/big.bin") - sent <= size - kept


def test_many_processes_at_once_fetch_each_file_once(server: TestServer, tmp_path: Path) -> None:
    files = {}
    for i in range(6):
        data = blob(300_000 + i, seed=i)
        server.add(f"/f{i}.bin", data)
        files[f"d{i % 2}/f{i}.bin"] = {"url": f"{server.url}/f{i}.bin", "md5": md5(data)}
    server.delay = 0.2
    server.rate = 2 << 20
    m = manifest(tmp_path, files)
    dest = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--jobs", "3"],
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for i in range(6):
        assert server.hits(f"/f{i}.bin") == 1, f"f{i}.bin crossed the network {server.hits(f'/f{i}.bin')} times"
    assert run_cli("verify", str(dest)).returncode == 0
    assert not list(dest.rglob("*.ckptfetch-partial*"))


def test_no_progress_output_off_a_terminal(server: TestServer, tmp_path: Path) -> None:
    data = blob(100_000)
    server.add("/f.bin", data)
    m = manifest(tmp_path, {"f.bin": {"url": server.url + "/f.bin", "md5": md5(data)}})
    r = run_cli("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 0
    assert "\r" not in r.stderr and "it/s" not in r.stderr and "B/s" not in r.stderr


def test_mirrors_from_the_environment(server: TestServer, tmp_path: Path) -> None:
    data = blob(5000)
    server.add("/example.invalid/f.bin", data)
    m = manifest(tmp_path, {"f.bin": {"url": "https://example.invalid/f.bin", "md5": md5(data)}})
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), env=cli_env(CKPTFETCH_MIRRORS=f"https://={server.url}/"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/f.bin").read_bytes() == data


def test_verify_after_a_partly_failed_get_reports_what_is_missing(server: TestServer, tmp_path: Path) -> None:
    """CI runs `verify DIR` after `get`: files the get could not fetch must fail it, not vanish from it."""
    good = blob(5000, seed=1)
    server.add("/good.bin", good)
    m = manifest(tmp_path, {
        "a/good.bin": {"url": server.url + "/good.bin", "md5": md5(good)},
        "a/gone.bin": {"url": server.url + "/gone.bin", "md5": "0" * 31 + "a"},
        "a/by-hand.bin": {"manual": "ask the authors"},
    })
    dest = tmp_path / "out"
    got = invoke("get", str(m), "--dest", str(dest))
    assert got.returncode == 1
    assert "HTTP 404" in got.stderr and "must be fetched by hand" in got.stderr
    r = invoke("verify", str(dest))
    assert r.returncode == 1
    assert sorted(r.stdout.splitlines()) == ["a/by-hand.bin: MISSING", "a/gone.bin: MISSING", "a/good.bin: OK"], \
        got.stdout + got.stderr
    assert "3 files in" in r.stderr


def test_manual_entry_with_a_page_url(server: TestServer, tmp_path: Path) -> None:
    page = "https://example.org/share/[weights]?e=I7KvRb"
    m = manifest(tmp_path, {
        "hand.pt": {"manual": "Sign in, download unimed.pt and save it as hand.pt.", "url": page, "md5": md5(b"ok")},
        "auto.bin": {"url": server.add("/auto.bin", b"auto")},
    })
    dest = tmp_path / "out"
    r = invoke("show", str(m), "--dest", str(dest))
    assert r.returncode == 0 and f"page: {page}" in r.stdout and f"source: manual ({page})" in r.stdout
    shown = {f["path"]: f for f in json.loads(invoke("show", str(m), "--json").stdout)["files"]}
    assert shown["hand.pt"]["manual_url"] == page and shown["auto.bin"]["manual_url"] is None

    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 1
    assert "manual: hand.pt is missing and must be fetched by hand: Sign in, download unimed.pt" in r.stderr
    assert f"get it from {page}" in r.stderr and f"put it at {dest / 'hand.pt'}" in r.stderr
    assert (dest / "auto.bin").read_bytes() == b"auto"
    assert [q.path for q in server.requests if q.method == "GET"] == ["/auto.bin"], "the page is shown, never fetched"
    doc = json.loads(invoke("get", str(m), "--dest", str(dest), "--json").stdout)
    assert sorted((f["path"], f["status"], f["manual_url"]) for f in doc["files"]) == [
        ("auto.bin", "present", None), ("hand.pt", "manual", page)]

    (dest / "hand.pt").write_bytes(b"wrong")
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 1 and "hand.pt does not match the manifest and must be fetched by hand" in r.stderr
    assert (dest / "hand.pt").read_bytes() == b"wrong", "a manual file is never replaced or removed"
    r = invoke("verify", str(dest), "--manifest", str(m))
    assert r.returncode == 1 and "hand.pt: FAILED" in r.stdout

    (dest / "hand.pt").write_bytes(b"ok")
    r = invoke("get", str(m), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    r = invoke("verify", str(dest))
    assert r.returncode == 0 and "hand.pt: OK" in r.stdout


def test_manual_url_must_be_a_web_page(tmp_path: Path) -> None:
    m = manifest(tmp_path, {"hand.pt": {"manual": "By hand.", "url": "hf://org/repo/x.pt"}})
    r = invoke("show", str(m))
    assert r.returncode == 2 and "page to visit" in r.stderr


def test_debug_is_accepted_after_the_subcommand_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ckptfetch: 1\nname: bad\nfiles:\n  a.bin:\n    url: https://example.org/a\n    md6: x\n")
    for args in (["--debug", "get", str(bad)], ["get", str(bad), "--debug"]):
        r = invoke(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "did you mean `md5`" in r.stderr and "No such option" not in r.stderr
        assert "Traceback" in r.stderr  # --debug shows where a manifest error was raised


def test_a_failed_file_never_removes_the_folder_another_file_is_being_written_to(server: TestServer,
                                                                                tmp_path: Path) -> None:
    """A failed file's empty folders are removed after the run, not while other files may be written there."""
    goods = {f"d{n:02d}/good.bin": blob(3000 + n, seed=n) for n in range(32)}  # one good and one 404 per folder
    files: dict[str, dict[str, str]] = {}
    for n, (key, data) in enumerate(goods.items()):
        server.add(f"/f{n}.bin", data)
        files[f"d{n:02d}/gone.bin"] = {"url": f"{server.url}/gone{n}.bin", "md5": "0" * 31 + "a"}
        files[key] = {"url": f"{server.url}/f{n}.bin", "md5": md5(data)}
    files["lone/gone.bin"] = {"url": server.url + "/lone.bin", "md5": "0" * 31 + "a"}
    m = manifest(tmp_path, files)
    dest = tmp_path / "out"
    for _ in range(3):
        got = invoke("get", str(m), "--dest", str(dest), "--no-cache")
        assert got.returncode == 1 and "No such file or directory" not in got.stderr, got.stderr
        assert all((dest / key).read_bytes() == data for key, data in goods.items())
        assert not (dest / "lone").exists(), "the failed file's own folder, left empty, is gone after the run"
        shutil.rmtree(dest)


def test_empty_folders_are_left_while_another_process_holds_a_lock(tmp_path: Path) -> None:
    from ckptfetch.run import prune_empty_dirs

    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / ".ckptfetch/locks").mkdir(parents=True)
    (tmp_path / ".ckptfetch/locks/0123.lock").write_text("{}")
    prune_empty_dirs(tmp_path, ["a/b/x.bin"])
    assert (tmp_path / "a/b").is_dir(), "another process may be about to write there"
    (tmp_path / ".ckptfetch/locks/0123.lock").unlink()
    prune_empty_dirs(tmp_path, ["a/b/x.bin"])
    assert not (tmp_path / "a").exists()
