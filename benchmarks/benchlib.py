"""Helpers for the benchmark driver (run.py): servers, timing, data, reporting.

Kept free of ckptfetch imports so the driver measures the installed CLI as a
user runs it, and so these helpers can be checked cheaply on their own.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME = "/usr/bin/time"  # GNU time, Debian package `time`
MiB = 1 << 20

# --- tools --------------------------------------------------------------------------

_APT_UPDATED = False


def ensure_debian(binary: str, package: str) -> str:
    """Path of `binary`, installing the Debian `package` when it is missing."""
    global _APT_UPDATED
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _APT_UPDATED:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        _APT_UPDATED = True
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not found:
        raise RuntimeError(f"{package} installed but {binary} not found")
    return found


def compile_ckptfetch() -> None:
    """Write ckptfetch's bytecode, as `pip install .` does.

    An editable install (`pip install -e .`) under PYTHONDONTWRITEBYTECODE=1
    (set on some machines) compiles every module from source at each start:
    about 0.2 s that a user's installed copy never pays.
    """
    import importlib.util

    spec = importlib.util.find_spec("ckptfetch")
    if spec is not None and spec.submodule_search_locations:
        for where in spec.submodule_search_locations:
            subprocess.run([sys.executable, "-m", "compileall", "-q", where], check=False)


def ensure_pip(module: str, package: str | None = None) -> None:
    """Install `package` from pip into this interpreter when `module` is missing."""
    try:
        __import__(module)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package or module], check=True)


# --- ports and servers -------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """`n` distinct ports the kernel says are free right now (bind to 0, then release)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


LOG_FORMAT = "$server_port $status $body_bytes_sent $request_uri"


def nginx_conf(prefix: Path, root: Path, plain: int, throttled: int, rate: str = "20m") -> str:
    """A private nginx config: a plain server and one throttled per connection, both on 127.0.0.1."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the data under /work
    temps = "\n".join(f"  {k}_temp_path {prefix}/tmp_{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 2048; }}
http {{
  log_format bench '{LOG_FORMAT}';
  access_log {prefix}/access.log bench;
{temps}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  keepalive_timeout 60s;
  server {{ listen 127.0.0.1:{plain}; root {root}; }}
  server {{ listen 127.0.0.1:{throttled}; root {root}; limit_rate {rate}; }}
}}
"""


class Nginx:
    """Our own nginx (plain + throttled server) under `prefix`; stop() ends it."""

    def __init__(self, binary: str, prefix: Path, root: Path) -> None:
        self.binary = binary
        self.prefix = prefix
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.plain = self.throttled = 0

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            self.plain, self.throttled = free_ports(2)
            conf = self.prefix / "nginx.conf"
            conf.write_text(nginx_conf(self.prefix, self.root, self.plain, self.throttled))
            err = open(self.prefix / "stderr.log", "wb")
            self.proc = subprocess.Popen([self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")],
                                         stdout=err, stderr=err, start_new_session=True)
            try:
                wait_port(self.plain, 5)
                wait_port(self.throttled, 5)
                return
            except RuntimeError:
                self.stop()  # most likely a port was taken between probing and binding: try others
        raise RuntimeError(f"nginx did not start; see {self.prefix}/error.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_size(self) -> int:
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0


def bytes_sent(log: Path, since: int, port: int, uri: str) -> int:
    """Body bytes nginx sent for `uri` on `port`, from offset `since` of its access log."""
    total = 0
    with open(log, "rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[0] == str(port) and parts[3] == uri and parts[2].isdigit():
                total += int(parts[2])
    return total


class DelayProxy:
    """benchmarks/delayproxy.py in its own process: 50 ms before each response's first byte."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "delayproxy.py"), str(upstream), str(delay)],
                                     stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the delaying proxy did not start")
        self.port = int(line)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- data ------------------------------------------------------------------------------------


def make_file(path: Path, size: int, seed: int) -> str:
    """Write `size` pseudo-random bytes to `path` (reused when already there); returns its md5."""
    stamp = path.with_name(path.name + ".md5")
    if path.is_file() and path.stat().st_size == size and stamp.is_file():
        text = stamp.read_text().split()
        if len(text) == 2 and text[1] == f"{size}:{seed}":
            return text[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5()
    import random  # a seeded PRNG: reproducible, and enough to defeat compression and dedup

    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            chunk = rng.randbytes(n)
            f.write(chunk)
            md5.update(chunk)
            left -= n
    digest = md5.hexdigest()
    stamp.write_text(f"{digest} {size}:{seed}\n")
    return digest


def write_manifest(path: Path, files: dict[str, tuple[str, str]]) -> Path:
    """A ckptfetch manifest named after `path`'s stem; `files` maps target -> (url, md5)."""
    lines = ["ckptfetch: 1", f"name: {path.stem}", "root: out", "files:"]
    for target, (url, md5) in files.items():
        lines += [f"  {target}:", f"    url: {url}", f"    md5: {md5}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds
    maxrss_kb: int  # peak RSS of the process and the children it waited for
    rc: int
    cpu: float = 0.0  # user + system seconds of the process and its children


def measure(cmd: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None,
            log: Path | None = None) -> Run:
    """Run `cmd`, returning wall time, peak RSS and exit status.

    The peak RSS comes from GNU time (`%M`, from wait4): measuring it with our
    own wait4 would count the copy of this (large) Python process that exists
    between fork and exec. GNU time is a small C program, so its fork adds ~1 MB.
    """
    out = open(log, "ab") if log else subprocess.DEVNULL
    fd, rss_file = tempfile.mkstemp(prefix="rss-", suffix=".txt")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([TIME, "-q", "-f", "%M %U %S", "-o", rss_file, *cmd], cwd=cwd, env=env, stdout=out, stderr=out)
        wall = time.perf_counter() - t0
        text = Path(rss_file).read_text().split()
    finally:
        os.unlink(rss_file)
        if log:
            out.close()  # type: ignore[union-attr]
    try:
        rss, cpu = int(text[-3]), float(text[-2]) + float(text[-1])
    except (IndexError, ValueError):
        rss, cpu = 0, 0.0
    return Run(wall, rss, proc.returncode, cpu)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False when not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def fmt_s(x: float) -> str:
    if x != x:  # nan
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MiB"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


_SIZE = re.compile(r"^(\d+)([KMG]?)$")


def parse_size(text: str) -> int:
    """'1G' / '256M' / '4096' -> bytes."""
    m = _SIZE.match(text.strip().upper())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": MiB, "G": 1 << 30}[m.group(2)]
