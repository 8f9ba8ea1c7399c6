"""Look-alike HTTPS hosts (drive.google.com, www.dropbox.com, github.com...) behind a local proxy.

Sources recognise real host names, so tests keep the real URLs and route them
the way a corporate network would: `HTTPS_PROXY` points at a small CONNECT
proxy on 127.0.0.1 that tunnels each host name to its own `TestServer`
speaking TLS with a certificate from a throw-away CA (`REQUESTS_CA_BUNDLE`).
Nothing in ckptfetch knows it is being tested. The CA and certificate are made
with the `openssl` command line tool.

    with FakeHosts(tmp_path, ["drive.google.com"]) as hosts:
        hosts["drive.google.com"].add("/uc?export=download&id=X", data)
        run_cli("get", ..., env=cli_env(**hosts.env))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import TracebackType

from .httpserver import TestServer


def _ensure_openssl() -> None:
    """The test setup installs the openssl tool (Debian's package) on a machine that lacks it."""
    if shutil.which("openssl"):
        return
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "openssl"]):
        subprocess.run(cmd, check=False, capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not shutil.which("openssl"):
        raise RuntimeError("the tests need the openssl command; install it (apt-get install openssl)")


def make_certificates(folder: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for `hosts`, signed by a fresh CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "host.key", "host.csr", "host.pem"))

    _ensure_openssl()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=ckptfetch test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=fake hosts")
    ext = folder / "host.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\n"
    )
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class _Proxy:
    """A CONNECT-only forward proxy that tunnels each known host name to a local port."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.connects: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            host, _, port = target.rpartition(":")
            self.connects.append(host)
            if method != "CONNECT" or port != "443" or host not in self.routes:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            upstream = stack.enter_context(socket.create_connection(("127.0.0.1", self.routes[host])))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pump = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            pump.start()
            _pipe(conn, upstream)
            pump.join(timeout=5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class FakeHosts:
    """One TLS `TestServer` per host name, reachable through a local CONNECT proxy."""

    def __init__(self, folder: Path, hosts: list[str]) -> None:
        self.ca, cert, key = make_certificates(folder, hosts)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.servers: dict[str, TestServer] = {}
        for host in hosts:
            srv = TestServer()
            # Serve TLS on the test server's socket; TestServer itself stays plain HTTP code.
            srv._httpd.socket = context.wrap_socket(srv._httpd.socket, server_side=True)
            self.servers[host] = srv.start()
        self.proxy = _Proxy({h: s.port for h, s in self.servers.items()})

    @property
    def env(self) -> dict[str, str]:
        """Environment for a ckptfetch process: every https:// URL goes through the proxy."""
        proxy = f"http://127.0.0.1:{self.proxy.port}"
        return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": "",
                "REQUESTS_CA_BUNDLE": str(self.ca)}

    def __getitem__(self, host: str) -> TestServer:
        return self.servers[host]

    def __enter__(self) -> FakeHosts:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.proxy.close()
        for srv in self.servers.values():
            srv.stop()
