"""What a new user hits on the way: selectors, messages that say what to do, plain output where asked."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ckptfetch.compat import boot_id, pid_namespace, start_time

from .conftest import blob, cli_env, invoke, md5, sha256
from .httpserver import TestServer


def _manifest(tmp_path: Path, files: dict[str, dict[str, object]], name: str = "user") -> Path:
    m = tmp_path / f"{name}.yaml"
    m.write_text(yaml.safe_dump({"ckptfetch": 1, "name": name, "files": files}))
    return m


def _tree(server: TestServer, tmp_path: Path) -> Path:
    files: dict[str, dict[str, object]] = {}
    for n, path in enumerate(["sam_ckpts/sam_vit_b.pth", "sam_ckpts/sam_vit_h.pth", "raft_ckpts/raft-things.pth",
                              "tapir_ckpts/open_source_ckpt/tapir.npy"]):
        data = blob(100 + n, seed=n)
        files[path] = {"url": server.add(f"/{n}", data), "md5": md5(data)}
    return _manifest(tmp_path, files)


@pytest.mark.parametrize(("args", "got"), [
    (["--only", "sam_ckpts"], ["sam_ckpts/sam_vit_b.pth", "sam_ckpts/sam_vit_h.pth"]),   # a folder without its /
    (["--only", "tapir_ckpts/open_source_ckpt/"], ["tapir_ckpts/open_source_ckpt/tapir.npy"]),
    (["--only", "sam_vit_h.pth"], ["sam_ckpts/sam_vit_h.pth"]),                           # a bare file name
    (["--only", "*.pth", "--exclude", "sam_vit_b.pth"], ["raft_ckpts/raft-things.pth", "sam_ckpts/sam_vit_h.pth"]),
    (["--exclude", "sam_ckpts", "--exclude", "tapir_ckpts/*"], ["raft_ckpts/raft-things.pth"]),
])
def test_only_and_exclude(server: TestServer, tmp_path: Path, args: list[str], got: list[str]) -> None:
    m = _tree(server, tmp_path)
    dest = tmp_path / "out"
    r = invoke("get", str(m), "--dest", str(dest), *args)
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()
                  and ".ckptfetch" not in p.parts) == got
    r = invoke("verify", str(dest))
    assert r.returncode == 0, "files left out on purpose are not MISSING"


def test_lock_advice_names_the_manifest_as_given(tmp_path: Path) -> None:
    m = _manifest(tmp_path, {"a.bin": {"url": "https://example.org/a.bin", "size": 3}}, name="given")
    (tmp_path / "given.lock.yaml").write_text(
        "ckptfetch-lock: 1\nmanifest: given\nfiles:\n  a.bin:\n    sha256: " + "a" * 64 + "\n    size: 4\n")
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"))
    assert r.returncode == 2
    assert f"run `ckptfetch lock {m}` again" in r.stderr, "a path stays a path"


def test_show_reads_sizes_from_the_lock_and_keeps_public_link_keys(tmp_path: Path) -> None:
    url = "https://www.dropbox.com/scl/fi/abc123/models.zip?rlkey=publickey42&dl=0"
    m = _manifest(tmp_path, {"w.bin": {"url": url}, "t.bin": {"url": "https://h.example/t.bin?token=s3cr3t"}},
                  name="shown")
    (tmp_path / "shown.lock.yaml").write_text(
        "ckptfetch-lock: 1\nmanifest: shown\nfiles:\n"
        f"  w.bin:\n    sha256: {'b' * 64}\n    size: {3 << 30}\n  t.bin:\n    sha256: {'c' * 64}\n    size: 1024\n")
    r = invoke("show", str(m))
    assert r.returncode == 0, r.stderr
    assert "size: 3.0 GiB (3221225472 bytes)" in r.stdout and "size: 1.0 KiB (1024 bytes)" in r.stdout
    assert "rlkey=publickey42" in r.stdout, "a share link's rlkey is public: shown as it is"
    assert "s3cr3t" not in r.stdout and "token=***" in r.stdout
    r = invoke("list", env={**cli_env(), "CKPTFETCH_MANIFESTS": str(tmp_path)})
    assert "shown  2 files, 3.0 GiB" in r.stdout


def test_hub_errors_say_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    m = _manifest(tmp_path, {"weights/": {"url": "hf://org/repo/weights/"}})
    env = cli_env(HF_ENDPOINT=dead, HF_HOME=str(tmp_path / "hf"))
    r = invoke("get", str(m), "--dest", str(tmp_path / "out"), env=env)
    assert r.returncode == 1
    assert "weights/: cannot ask the Hub" in r.stderr, "the folder is named by the manifest's key"
    assert "check the network, or use --mirror / --offline" in r.stderr.lower()


def test_usage_errors_honour_json(tmp_path: Path) -> None:
    r = invoke("get", "sam-pt", "--json", "--jobs", "0")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and "--jobs" in doc["error"]


def _on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as stdout and stderr; (exit code, everything it wrote)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", *args], stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, env={**env, "COLUMNS": "120", "TERM": "xterm"})
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=10), out


def test_on_a_terminal_no_empty_bar_and_no_color_means_no_bold(server: TestServer, tmp_path: Path) -> None:
    data = blob(2000)
    m = _manifest(tmp_path, {"a.bin": {"url": server.add("/a.bin", data), "sha256": sha256(data)}})
    dest = tmp_path / "out"
    env = {k: v for k, v in cli_env().items() if k != "NO_COLOR"}
    code, first = _on_a_terminal(["get", str(m), "--dest", str(dest)], env)
    assert code == 0 and b"\x1b[1m" in first, "on a terminal the plan has its styles"
    code, again = _on_a_terminal(["get", str(m), "--dest", str(dest)], env)
    assert code == 0 and b"total" not in again and b"it/s" not in again, "nothing to fetch: no empty progress bar"
    code, plain = _on_a_terminal(["get", str(m), "--dest", str(dest)], {**env, "NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain, "NO_COLOR: no colour and no bold"


def test_an_interrupt_says_whether_partial_files_were_kept(server: TestServer, tmp_path: Path) -> None:
    """Waiting on another process's lock, nothing is half-done: the message must not claim kept partials."""
    data = blob(1000)
    m = _manifest(tmp_path, {"f.bin": {"url": server.add("/f.bin", data)}})
    dest = tmp_path / "out"
    locks = dest / ".ckptfetch" / "locks"
    locks.mkdir(parents=True)
    import hashlib

    holder = {"host": socket.gethostname(), "boot": boot_id(), "pidns": pid_namespace(), "pid": os.getpid(),
              "start": start_time(os.getpid()), "token": "t"}
    (locks / (hashlib.sha1(b"file:f.bin").hexdigest()[:20] + ".lock")).write_text(json.dumps(holder))
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "nothing was left half-done" in err and "partial files were kept" not in err
