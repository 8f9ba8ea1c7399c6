"""Tests for the HTTP test server fixture in tests/httpserver.py."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

try:
    from httpserver import Fault, TestServer
except ImportError:  # pragma: no cover - tests/ turned into a package
    from tests.httpserver import Fault, TestServer  # type: ignore[no-redef,import-not-found,unused-ignore]

DATA = bytes(range(256)) * 400  # 102_400 bytes, spans two 64 KiB chunks
SIZE = len(DATA)


@pytest.fixture
def srv() -> Iterator[TestServer]:
    """A running server with DATA registered at /f.bin."""
    with TestServer() as server:
        server.add("/f.bin", DATA)
        yield server


def raw_get(
    server: TestServer,
    path: str,
    extra: str = "",
    method: str = "GET",
    timeout: float = 2.0,
) -> tuple[bytes, bytes, BaseException | None]:
    """Send one request over a raw socket and read until EOF or error."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    req = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
    sock.sendall(req.encode())
    buf = b""
    err: BaseException | None = None
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as exc:
        err = exc
    finally:
        sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return head, body, err


def header(head: bytes, name: str) -> str | None:
    """Extract a header value from a raw response head."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# -- basic serving ---------------------------------------------------------------


def test_full_get(srv: TestServer) -> None:
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "application/octet-stream"
    etag = r.headers["ETag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert hashlib.sha1(DATA).hexdigest()[:20] in etag
    assert r.headers["Last-Modified"].endswith("GMT")
    assert srv.etag("/f.bin") == etag
    assert srv.last_modified("/f.bin") == r.headers["Last-Modified"]


def test_add_returns_url_and_404(srv: TestServer) -> None:
    url = srv.add("/a/b.bin", b"hello")
    assert url == srv.url + "/a/b.bin"
    assert not srv.url.endswith("/")
    assert requests.get(url, timeout=5).content == b"hello"
    r = requests.get(srv.url + "/missing", timeout=5)
    assert r.status_code == 404
    assert r.text


def test_head(srv: TestServer) -> None:
    r = requests.head(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["ETag"] == srv.etag("/f.bin")
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.content == b""
    head, body, _ = raw_get(srv, "/f.bin", method="HEAD")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b""
    assert srv.bytes_sent("/f.bin") == 0


def test_optional_headers(srv: TestServer) -> None:
    url = srv.add(
        "/n.txt",
        b"abc",
        etag=None,
        last_modified=None,
        content_type="text/plain",
        headers={"X-Custom": "1", "Content-Disposition": "attachment"},
    )
    r = requests.get(url, timeout=5)
    assert "ETag" not in r.headers
    assert "Last-Modified" not in r.headers
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Custom"] == "1"
    assert r.headers["Content-Disposition"] == "attachment"
    lit = srv.add("/lit", b"abc", etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    r = requests.get(lit, timeout=5)
    assert r.headers["ETag"] == '"v1"'
    assert r.headers["Last-Modified"] == "Mon, 01 Jan 2024 00:00:00 GMT"


# -- ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=70000-", 70000, SIZE - 1),
        ("bytes=-100", SIZE - 100, SIZE - 1),
        ("bytes=5-999999999", 5, SIZE - 1),
        ("bytes=-999999999", 0, SIZE - 1),
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=0-0", 0, 0),
    ],
)
def test_range_forms(srv: TestServer, spec: str, start: int, end: int) -> None:
    r = requests.get(srv.url + "/f.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 206
    assert r.content == DATA[start : end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert srv.bytes_sent("/f.bin") == end - start + 1


@pytest.mark.parametrize("spec", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_range_unsatisfiable(srv: TestServer, spec: str) -> None:
    r = requests.get(srv.url + "/f.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"])
def test_range_ignored_forms(srv: TestServer, spec: str) -> None:
    r = requests.get(srv.url + "/f.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 200
    assert r.content == DATA


def test_if_range(srv: TestServer) -> None:
    url = srv.url + "/f.bin"
    etag = srv.etag("/f.bin")
    lm = srv.last_modified("/f.bin")
    assert etag is not None
    assert lm is not None

    def get(if_range: str) -> requests.Response:
        hdrs = {"Range": "bytes=100-", "If-Range": if_range}
        return requests.get(url, headers=hdrs, timeout=5)

    r = get(etag)
    assert r.status_code == 206
    assert r.content == DATA[100:]
    r = get(lm)
    assert r.status_code == 206
    assert r.content == DATA[100:]
    for bad in ('"nope"', "W/" + etag, "Mon, 01 Jan 2024 00:00:00 GMT"):
        r = get(bad)
        assert r.status_code == 200, bad
        assert r.content == DATA
        assert "Content-Range" not in r.headers


def test_ranges_disabled(srv: TestServer) -> None:
    url = srv.add("/nr.bin", DATA, ranges=False)
    r = requests.get(url, headers={"Range": "bytes=10-20"}, timeout=5)
    assert r.status_code == 200
    assert r.content == DATA
    assert "Accept-Ranges" not in r.headers
    assert "Content-Range" not in r.headers


# -- faults ----------------------------------------------------------------------


def test_fault_reset(srv: TestServer) -> None:
    srv.fault("/f.bin", "reset", at=1000)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        requests.get(srv.url + "/f.bin", timeout=5)
    assert srv.bytes_sent("/f.bin") == 1000

    srv.fault("/f.bin", "reset", at=10)
    head, body, err = raw_get(srv, "/f.bin")
    assert head == b"" or header(head, "Content-Length") == str(SIZE)
    assert len(body) <= 10
    assert isinstance(err, ConnectionResetError)
    # the fault is consumed: the next request is served normally
    assert requests.get(srv.url + "/f.bin", timeout=5).content == DATA


def test_fault_reset_relative_to_range(srv: TestServer) -> None:
    srv.fault("/f.bin", "reset", at=50)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        requests.get(srv.url + "/f.bin", headers={"Range": "bytes=1000-"}, timeout=5)
    assert srv.bytes_sent("/f.bin") == 50


def test_fault_short(srv: TestServer) -> None:
    srv.fault("/f.bin", "short", at=500)
    head, body, err = raw_get(srv, "/f.bin")
    assert err is None
    assert header(head, "Content-Length") == str(SIZE)
    assert body == DATA[:500]
    srv.fault("/f.bin", "short", at=500)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(srv.url + "/f.bin", timeout=5)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 404, 410, 408])
def test_fault_status(srv: TestServer, status: int) -> None:
    srv.fault("/f.bin", "status", status=status, retry_after="2")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == status
    assert r.headers["Retry-After"] == "2"
    assert r.content
    assert r.content != DATA
    assert requests.get(srv.url + "/f.bin", timeout=5).status_code == 200


def test_fault_status_defaults(srv: TestServer) -> None:
    srv.fault("/f.bin", "status")
    srv.fault("/f.bin", "status", status=503, body=b"busy")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 500
    assert "Retry-After" not in r.headers
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 503
    assert r.content == b"busy"


def test_fault_stall_times_out(srv: TestServer) -> None:
    srv.fault("/f.bin", "stall", at=100, seconds=1.0)
    t0 = time.monotonic()
    with pytest.raises(requests.ConnectionError):  # read timeout during body
        requests.get(srv.url + "/f.bin", timeout=0.2)
    assert time.monotonic() - t0 < 0.9


def test_fault_stall_then_completes(srv: TestServer) -> None:
    srv.fault("/f.bin", "stall", at=100, seconds=0.2)
    t0 = time.monotonic()
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert time.monotonic() - t0 >= 0.2
    assert r.content == DATA


def test_stop_interrupts_stall() -> None:
    server = TestServer().start()
    server.add("/s", DATA)
    server.fault("/s", "stall", at=10, seconds=30)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    sock.sendall(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 1.0
    sock.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/s", timeout=1)


def test_fault_ignore_range(srv: TestServer) -> None:
    srv.fault("/f.bin", "ignore_range")
    r = requests.get(srv.url + "/f.bin", headers={"Range": "bytes=10-"}, timeout=5)
    assert r.status_code == 200
    assert r.content == DATA
    r = requests.get(srv.url + "/f.bin", headers={"Range": "bytes=10-"}, timeout=5)
    assert r.status_code == 206


def test_fault_change_etag(srv: TestServer) -> None:
    old_etag, old_lm = srv.etag("/f.bin"), srv.last_modified("/f.bin")
    assert old_etag is not None
    srv.fault("/f.bin", "change_etag")
    hdrs = {"Range": "bytes=10-", "If-Range": old_etag}
    r = requests.get(srv.url + "/f.bin", headers=hdrs, timeout=5)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["ETag"] != old_etag
    assert r.headers["Last-Modified"] != old_lm
    # permanent: later requests keep the new validator
    r2 = requests.get(srv.url + "/f.bin", headers=hdrs, timeout=5)
    assert r2.status_code == 200
    assert r2.headers["ETag"] == r.headers["ETag"] == srv.etag("/f.bin")
    hdrs["If-Range"] = r.headers["ETag"]
    assert requests.get(srv.url + "/f.bin", headers=hdrs, timeout=5).status_code == 206


def test_fault_wrong_bytes(srv: TestServer) -> None:
    srv.fault("/f.bin", "wrong_bytes")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 200
    assert len(r.content) == SIZE
    assert r.content != DATA
    srv.fault("/f.bin", "wrong_bytes")
    r = requests.get(srv.url + "/f.bin", headers={"Range": "bytes=1000-1999"}, timeout=5)
    assert r.status_code == 206
    assert len(r.content) == 1000
    assert r.content != DATA[1000:2000]
    assert requests.get(srv.url + "/f.bin", timeout=5).content == DATA


def test_fault_html(srv: TestServer) -> None:
    srv.fault("/f.bin", "html")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in r.content
    assert b"Quota exceeded" in r.content


def test_fault_redirect(srv: TestServer) -> None:
    srv.add("/other", b"other")
    srv.fault("/f.bin", "redirect", location="/other")
    r = requests.get(srv.url + "/f.bin", timeout=5, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/other"
    srv.fault("/f.bin", "redirect", status=307, location=srv.url + "/other")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.content == b"other"
    assert r.history[0].status_code == 307


def test_fault_drop(srv: TestServer) -> None:
    srv.fault("/f.bin", "drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/f.bin", timeout=5)
    head, body, _ = raw_get(srv, "/f.bin")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == DATA
    assert srv.bytes_sent("/f.bin") == SIZE


def test_fault_on_unknown_path_and_unknown_kind(srv: TestServer) -> None:
    srv.fault("/nothing", "status", status=503)
    assert requests.get(srv.url + "/nothing", timeout=5).status_code == 503
    assert requests.get(srv.url + "/nothing", timeout=5).status_code == 404
    with pytest.raises(ValueError, match="unknown fault kind"):
        srv.fault("/f.bin", "explode")
    assert Fault("stall").seconds == 5.0


def test_faults_fifo_and_clear(srv: TestServer) -> None:
    srv.fault("/f.bin", "status", status=500)
    srv.fault("/f.bin", "status", status=503)
    srv.fault("/f.bin", "html")
    codes = [requests.get(srv.url + "/f.bin", timeout=5).status_code for _ in range(2)]
    assert codes == [500, 503]
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert b"Quota" in r.content
    assert requests.get(srv.url + "/f.bin", timeout=5).content == DATA

    srv.fault("/f.bin", "status", status=500)
    srv.clear_faults("/f.bin")
    assert requests.get(srv.url + "/f.bin", timeout=5).status_code == 200
    srv.fault("/f.bin", "status", status=500)
    srv.clear_faults()
    assert requests.get(srv.url + "/f.bin", timeout=5).status_code == 200


# -- bookkeeping -----------------------------------------------------------------


def test_hits_bytes_sent_and_log(srv: TestServer) -> None:
    url = srv.url + "/f.bin"
    requests.get(url, timeout=5)
    requests.head(url, timeout=5)
    requests.get(url, headers={"Range": "bytes=0-99"}, timeout=5)
    requests.get(srv.url + "/missing", timeout=5)
    assert srv.hits("/f.bin") == 2, "GETs: downloads"
    assert srv.hits("/f.bin", method=None) == 3
    assert srv.hits("/missing") == 1
    assert srv.bytes_sent("/f.bin") == SIZE + 100
    assert srv.bytes_sent() == SIZE + 100 + len(b"not found\n")
    methods = [r.method for r in srv.requests if r.path == "/f.bin"]
    assert methods == ["GET", "HEAD", "GET"]
    assert srv.requests[2].headers["range"] == "bytes=0-99"
    assert srv.requests[2].headers["RANGE"] == "bytes=0-99"
    assert "Range" in srv.requests[2].headers
    assert srv.requests[2].headers.get("If-Range") is None
    srv.clear_log()
    assert srv.hits("/f.bin") == 0
    assert srv.bytes_sent() == 0


def test_query_string_lookup(srv: TestServer) -> None:
    srv.add("/q", b"plain")
    url = srv.add("/q?x=1", b"exact")
    assert url == srv.url + "/q?x=1"
    assert requests.get(srv.url + "/q?x=1", timeout=5).content == b"exact"
    assert requests.get(srv.url + "/q?x=2", timeout=5).content == b"plain"
    assert requests.get(srv.url + "/q", timeout=5).content == b"plain"
    assert requests.get(srv.url + "/f.bin?token=abc", timeout=5).content == DATA
    assert srv.hits("/q?x=1") == 1
    assert srv.hits("/q") == 3
    assert srv.bytes_sent("/q?x=1") == 5
    assert srv.requests[-1].path == "/f.bin?token=abc"


def test_replace_changes_validators(srv: TestServer) -> None:
    old = srv.etag("/f.bin")
    old_lm = srv.last_modified("/f.bin")
    assert old is not None
    srv.replace("/f.bin", b"new content")
    r = requests.get(srv.url + "/f.bin", timeout=5)
    assert r.content == b"new content"
    assert r.headers["ETag"] != old
    assert r.headers["Last-Modified"] != old_lm
    hdrs = {"Range": "bytes=4-", "If-Range": old}
    r = requests.get(srv.url + "/f.bin", headers=hdrs, timeout=5)
    assert r.status_code == 200
    assert r.content == b"new content"
    # replacing with identical bytes still yields a new validator
    cur = srv.etag("/f.bin")
    srv.replace("/f.bin", b"new content")
    assert srv.etag("/f.bin") != cur


def test_redirect(srv: TestServer) -> None:
    srv.redirect("/r", "/f.bin", status=301)
    r = requests.get(srv.url + "/r", timeout=5, allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == "/f.bin"
    r = requests.get(srv.url + "/r", timeout=5)
    assert r.content == DATA
    assert r.url == srv.url + "/f.bin"
    srv.redirect("/r2", srv.url + "/r")
    r = requests.get(srv.url + "/r2", timeout=5)
    assert r.content == DATA
    assert len(r.history) == 2


def test_keep_alive_reuse(srv: TestServer) -> None:
    with requests.Session() as s:
        r1 = s.get(srv.url + "/f.bin", timeout=5)
        r2 = s.get(srv.url + "/f.bin", headers={"Range": "bytes=0-9"}, timeout=5)
        r3 = s.head(srv.url + "/f.bin", timeout=5)
        srv.fault("/f.bin", "status", status=503)
        r4 = s.get(srv.url + "/f.bin", timeout=5)
        r5 = s.get(srv.url + "/f.bin", timeout=5)
    assert r1.content == DATA
    assert r2.content == DATA[:10]
    assert r3.status_code == 200
    assert r4.status_code == 503
    assert r5.content == DATA
    ports = {r.client[1] for r in srv.requests}
    assert len(ports) == 1, "all requests should share one connection"


def test_delay_and_rate(srv: TestServer) -> None:
    srv.delay = 0.2
    t0 = time.monotonic()
    assert requests.get(srv.url + "/f.bin", headers={"Range": "bytes=0-9"}, timeout=5).ok
    assert time.monotonic() - t0 >= 0.2
    srv.delay = 0
    srv.rate = 50_000
    t0 = time.monotonic()
    r = requests.get(srv.url + "/f.bin", headers={"Range": "bytes=0-9999"}, timeout=5)
    elapsed = time.monotonic() - t0
    assert r.content == DATA[:10000]
    assert 0.15 <= elapsed < 1.0
    srv.rate = None


def test_client_disconnect_mid_body_is_silent(srv: TestServer, capfd: pytest.CaptureFixture[str]) -> None:
    big = srv.add("/big", b"z" * (8 * 1024 * 1024))
    r = requests.get(big, stream=True, timeout=5)
    next(r.iter_content(1024))
    r.close()
    assert requests.get(srv.url + "/f.bin", timeout=5).content == DATA
    srv.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    assert "Traceback" not in out
