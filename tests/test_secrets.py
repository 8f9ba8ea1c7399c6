"""Secrets (README Guarantee 10).

Credentials (`user:pass@`, token query parameters, Authorization and other
caller headers) never appear in stdout, stderr, `--json` or `--debug`
output, and are never sent to another host after a redirect (a second local
server on another port records every request header). An https URL
redirected to http is refused, checked against a real local TLS server whose
self-signed certificate is made by the `openssl` command for this session.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfetch.download import Settings, download
from ckptfetch.errors import DownloadError

from . import faultstats
from .conftest import blob, cli_env, md5, run_cli
from .httpserver import TestServer

SECRETS = ("hunter2", "s3cretTOKEN", "SIGsecret", "AKIAsecret", "mirrorPW", "BearerSECRET", "cookieSECRET", "apiKEYsecret")


def secret_url(server: TestServer, path: str) -> str:
    return (server.url.replace("http://", "http://alice:hunter2@").replace("https://", "https://alice:hunter2@")
            + f"{path}?token=s3cretTOKEN&X-Amz-Signature=SIGsecret&X-Amz-Credential=AKIAsecret&v=1")


def assert_no_secret(*texts: str) -> None:
    faultstats.count("outputs checked for secrets")
    faultstats.count("secret leaks found", 0)  # shown as 0 unless one is found below
    for text in texts:
        for s in SECRETS:
            if s in text:
                faultstats.count("secret leaks found")
                raise AssertionError(f"secret {s!r} leaked: {text[:2000]}")


def assert_no_secret_sent(server: TestServer) -> None:
    for r in server.requests:
        assert "authorization" not in r.headers and "cookie" not in r.headers and "x-api-key" not in r.headers, r.headers
        assert_no_secret(r.path, json.dumps(dict(r.headers)))


# --- a real TLS server ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None and shutil.which("apt-get") is not None:
        # The ground rules: what a test needs from Debian, the test installs.
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "openssl"], capture_output=True, timeout=300)
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is missing and could not be installed, so no certificate can be made")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def https_server(tls_files: tuple[Path, Path]) -> TestServer:
    srv = TestServer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    srv._httpd.socket = ctx.wrap_socket(srv._httpd.socket, server_side=True)
    srv.url = srv.url.replace("http://", "https://")
    return srv.start()


@pytest.fixture
def tls(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestServer]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files[0]))
    srv = https_server(tls_files)
    try:
        yield srv
    finally:
        srv.stop()


def test_the_tls_server_is_real(tls: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(5000)
    url = tls.add("/f.bin", data)
    assert url.startswith("https://")
    download([url], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_https_redirected_to_http_is_refused(tls: TestServer, server: TestServer, settings: Settings, tmp_path: Path) -> None:
    server.add("/f.bin", blob(5000))
    tls.redirect("/f.bin", server.url + "/f.bin")
    with pytest.raises(DownloadError, match=r"refused a redirect from https to http .*never downgrades"):
        download([tls.url + "/f.bin"], tmp_path / "f.bin", settings=settings, headers={"Authorization": "BearerSECRET"})
    assert server.requests == [], "the http URL must not even be asked"
    assert not (tmp_path / "f.bin").exists()


def test_cli_refuses_https_to_http(tls: TestServer, server: TestServer, tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    data = blob(5000)
    server.add("/f.bin", data)
    tls.redirect("/f.bin", server.url + "/f.bin")
    m = tmp_path / "down.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "down", "files": {
        "f.bin": {"url": secret_url(tls, "/f.bin"), "md5": md5(data)}}}))
    for pre, extra in (([], []), ([], ["--json"]), (["--debug"], [])):
        r = run_cli(*pre, "get", str(m), "--dest", str(tmp_path / "out"), *extra,
                    env=cli_env(REQUESTS_CA_BUNDLE=str(tls_files[0])))
        assert r.returncode == 1, r.stderr
        assert "refused a redirect from https to http" in r.stderr
        assert_no_secret(r.stdout, r.stderr)
    assert server.requests == []
    assert not (tmp_path / "out/f.bin").exists()


def test_https_to_another_https_host_drops_credentials(tls_files: tuple[Path, Path], settings: Settings, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files[0]))
    a, b = https_server(tls_files), https_server(tls_files)
    try:
        data = blob(5000)
        b.add("/real.bin", data)
        a.redirect("/f.bin", b.url.replace("127.0.0.1", "localhost") + "/real.bin")
        download([a.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings,
                 headers={"Authorization": "BearerSECRET", "X-Api-Key": "apiKEYsecret", "Cookie": "c=cookieSECRET"})
        assert (tmp_path / "f.bin").read_bytes() == data
        assert a.requests[0].headers["authorization"] == "BearerSECRET", "the first host does get its token"
        assert b.requests, "the redirect was followed"
        assert_no_secret_sent(b)
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])
def test_credentials_are_not_sent_to_another_port_or_host(target: str, settings: Settings, tmp_path: Path) -> None:
    """Headers given by the caller and `user:pass@` from the URL stay with the first origin."""
    data = blob(20000)
    with TestServer() as a, TestServer() as b:
        b.add("/real.bin", data)
        a.redirect("/f.bin", b.url.replace("127.0.0.1", target) + "/real.bin")
        download([secret_url(a, "/f.bin")], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings,
                 headers={"Authorization": "BearerSECRET", "X-Api-Key": "apiKEYsecret", "Cookie": "c=cookieSECRET"})
        assert (tmp_path / "f.bin").read_bytes() == data
        assert a.requests[0].headers.get("x-api-key") == "apiKEYsecret"
        assert b.requests
        assert_no_secret_sent(b)


def test_cli_basic_auth_from_the_url_stays_with_its_host(tmp_path: Path) -> None:
    data = blob(20000)
    with TestServer() as a, TestServer() as b:
        b.add("/real.bin", data)
        a.redirect("/f.bin", b.url + "/real.bin")
        m = tmp_path / "auth.yaml"
        m.write_text(json.dumps({"ckptfetch": 1, "name": "auth", "files": {
            "f.bin": {"url": secret_url(a, "/f.bin"), "md5": md5(data)}}}))
        r = run_cli("--debug", "get", str(m), "--dest", str(tmp_path / "out"))
        assert r.returncode == 0, r.stderr
        assert a.requests[0].headers["authorization"].startswith("Basic "), "the URL's credentials reach their host"
        assert_no_secret_sent(b)
        assert_no_secret(r.stdout, r.stderr)


# --- nothing printed, whatever happens ----------------------------------------------------------


FAULTS = {
    "ok": [],
    "404": [{"kind": "status", "status": 404}],
    "401": [{"kind": "status", "status": 401}],
    "html": [{"kind": "html"}],
    "wrong-bytes": [{"kind": "wrong_bytes"}] * 3,
    "503-forever": [{"kind": "status", "status": 503}] * 20,
    "reset-then-ok": [{"kind": "reset", "at": 1000}],
    "redirect-loop": [{"kind": "redirect", "location": "/f.bin?token=s3cretTOKEN"}] * 20,
}


def leaky_manifest(server: TestServer, tmp_path: Path, data: bytes) -> Path:
    server.add("/f.bin", data)
    server.add("/a.zip", b"not really a zip")
    m = tmp_path / "leaky.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "leaky",
                             "archives": {"arch": {"url": secret_url(server, "/a.zip")}},
                             "files": {"f.bin": {"url": secret_url(server, "/f.bin"), "md5": md5(data)},
                                       "g.bin": {"urls": [secret_url(server, "/gone.bin"), secret_url(server, "/f.bin")],
                                                 "md5": md5(data)},
                                       "h.bin": {"archive": "arch", "member": "h.bin"}}}))
    return m


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_no_secret_in_any_output(fault: str, server: TestServer, tmp_path: Path) -> None:
    m = leaky_manifest(server, tmp_path, blob(30000))
    env = cli_env(CKPTFETCH_RETRIES="1")
    for n, (pre, post) in enumerate((([], []), ([], ["--json"]), (["--debug"], []))):
        server.clear_faults()
        for params in FAULTS[fault]:
            server.fault("/f.bin", **params)  # type: ignore[arg-type]
        r = run_cli(*pre, "get", str(m), "--dest", str(tmp_path / f"o{n}"), *post, env=env, cwd=tmp_path)
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr or pre
        assert_no_secret(r.stdout, r.stderr)
        if post:
            json.loads(r.stdout)


def test_no_secret_in_show_list_plan_verify_or_mirrors(server: TestServer, tmp_path: Path) -> None:
    m = leaky_manifest(server, tmp_path, blob(30000))
    mirror = f"http://alice:hunter2@127.0.0.1:{server.port}/=http://bob:mirrorPW@127.0.0.1:{server.port}/"
    for args in (["show", str(m)], ["show", str(m), "--json"], ["list", "--json"],
                 ["get", str(m), "--dest", str(tmp_path / "o"), "--dry-run"],
                 ["get", str(m), "--dest", str(tmp_path / "o"), "--mirror", mirror, "--json"],
                 ["verify", str(tmp_path / "o"), "--manifest", str(m)], ["verify", str(tmp_path / "o"), "--json"]):
        r = run_cli(*args, env=cli_env(CKPTFETCH_RETRIES="1", CKPTFETCH_MANIFESTS=str(tmp_path)), cwd=tmp_path)
        assert r.returncode in (0, 1), (args, r.stderr)
        assert_no_secret(r.stdout, r.stderr)


def test_no_secret_in_manifest_errors(tmp_path: Path) -> None:
    for bad in ("http://alice:hunter2@[::1/x?token=s3cretTOKEN", "ftp://alice:hunter2@host/x",
                "alice:hunter2@host/x", "http://alice:hunter2@/x?token=s3cretTOKEN",
                "http://alice:hunter2@host/a b?token=s3cretTOKEN"):
        m = tmp_path / "bad.yaml"
        m.write_text(json.dumps({"ckptfetch": 1, "name": "bad", "files": {"f.bin": {"url": bad}}}))
        for args in (["get", str(m)], ["--debug", "get", str(m)], ["get", str(m), "--json"], ["show", str(m)]):
            r = run_cli(*args, cwd=tmp_path)
            assert r.returncode == 2, (bad, r.stderr)
            assert_no_secret(r.stdout, r.stderr)


def test_a_token_with_a_newline_is_not_echoed(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    """requests refuses such a header with a message that quotes it; ours does not."""
    server.add("/f.bin", blob(100))
    with pytest.raises(DownloadError) as info:
        download([server.url + "/f.bin"], tmp_path / "f.bin", settings=settings,
                 headers={"Authorization": "Bearer BearerSECRET\n"})
    assert_no_secret(str(info.value))


def test_an_untrusted_certificate_is_not_retried(tls_files: tuple[Path, Path], settings: Settings, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    srv = https_server(tls_files)
    try:
        srv.add("/f.bin", blob(100))
        settings.backoff = 1.0
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"TLS certificate of 127\.0\.0\.1 could not be verified.*REQUESTS_CA_BUNDLE") as info:
            download([secret_url(srv, "/f.bin")], tmp_path / "f.bin", settings=settings, label="f.bin")
        assert_no_secret(str(info.value))
        assert time.monotonic() - t0 < 1, "a certificate error is not retried"
    finally:
        srv.stop()


def test_no_secret_at_rest_in_dir_after_a_failed_run(server: TestServer, tmp_path: Path) -> None:
    """The partial's sidecar (kept for the resume) stores a digest of a URL with credentials, not the URL."""
    data = blob(3 << 20)
    server.add("/f.bin", data)
    server.fault("/f.bin", "short", at=(3 << 20) // 2)
    server.fault("/f.bin", "status", status=404)
    m = tmp_path / "rest.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "rest", "files": {"f.bin": {"url": secret_url(server, "/f.bin"), "md5": md5(data)}}}))
    dest = tmp_path / "out"
    r = run_cli("get", str(m), "--dest", str(dest), env=cli_env(CKPTFETCH_CONNECTIONS="1"))
    assert r.returncode == 1
    assert (dest / "f.bin.ckptfetch-partial").stat().st_size > 0
    for p in dest.rglob("*"):
        if p.is_file():
            assert_no_secret(p.read_bytes().decode("latin-1"))
    r = run_cli("get", str(m), "--dest", str(dest), env=cli_env(CKPTFETCH_CONNECTIONS="1"))
    assert r.returncode == 0, r.stderr
    assert server.requests[-1].headers.get("range", "").startswith("bytes=") and not server.requests[-1].headers["range"].startswith("bytes=0-")
    assert (dest / "f.bin").read_bytes() == data
