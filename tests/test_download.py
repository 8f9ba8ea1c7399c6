"""The download engine against a real local server (README Guarantees 1-6 and 10).

Each test names the guarantee it protects; none mocks `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from ckptfetch import hashing
from ckptfetch.download import Request, Settings, download
from ckptfetch.download.partial import partial_paths
from ckptfetch.download.session import make_session
from ckptfetch.errors import DownloadError, HashMismatch, Interrupted

from .conftest import blob, md5, sha256
from .httpserver import TestServer

SIZE = 3 * (1 << 20) + 12345


def fetch(server: TestServer, path: str, target: Path, settings: Settings, data: bytes, **kw: object) -> dict[str, str]:
    return download([server.url + path], target, hashes={"md5": md5(data), "sha256": sha256(data)}, size=len(data),
                    settings=settings, **kw)  # type: ignore[arg-type]


def test_plain_download_verifies_and_renames(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    target = tmp_path / "sub" / "f.bin"
    digests = fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data
    assert digests == {"md5": md5(data), "sha256": sha256(data)}
    part, side = partial_paths(target)
    assert not part.exists() and not side.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_user_agent_and_identity_encoding(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(1000)
    server.add("/f.bin", data)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    headers = server.requests[-1].headers
    assert headers["user-agent"].startswith("ckptfetch/")
    assert headers["accept-encoding"] == "identity"


# --- §4.1 nothing at the target until it verifies ---------------------------------


def test_wrong_bytes_never_reach_the_target(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    for _ in range(3):
        server.fault("/f.bin", "wrong_bytes")
    target = tmp_path / "f.bin"
    with pytest.raises(HashMismatch) as info:
        fetch(server, "/f.bin", target, settings, data)
    assert not target.exists()
    assert not any(tmp_path.iterdir()), "the partial of a mismatching download is discarded"
    text = str(info.value)
    assert sha256(data) in text and server.url + "/f.bin" in text and "expected" in text and "got" in text


def test_html_page_is_an_error_and_never_written(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(5000)
    server.add("/f.bin", data)
    server.fault("/f.bin", "html")
    target = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="HTML page"):
        download([server.url + "/f.bin"], target, settings=settings)  # even unpinned
    assert not target.exists()


def test_existing_good_file_is_kept_when_replacement_is_bad(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    old = b"previous content"
    target = tmp_path / "f.bin"
    target.write_bytes(old)
    data = blob(4000)
    server.add("/f.bin", data)
    for _ in range(3):
        server.fault("/f.bin", "wrong_bytes")
    with pytest.raises(HashMismatch):
        fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == old


def test_size_mismatch_is_refused(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    server.add("/f.bin", blob(1000))
    with pytest.raises(DownloadError, match="expects 999"):
        download([server.url + "/f.bin"], tmp_path / "f.bin", size=999, settings=settings)
    assert not (tmp_path / "f.bin").exists()


# --- §4.2 resume ------------------------------------------------------------------------


def test_reset_mid_body_resumes_with_range_and_if_range(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    big = 8 << 20  # an RST drops what the client has not read yet: cut late in a larger file
    data = blob(big)
    server.add("/f.bin", data)
    server.fault("/f.bin", "reset", at=big - (1 << 20))
    target = tmp_path / "f.bin"
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data
    gets = [r for r in server.requests if r.method == "GET"]
    assert len(gets) == 2
    start = int(gets[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert start > 0
    assert gets[1].headers["if-range"] == server.etag("/f.bin")
    # Only the missing tail crossed the network again.
    assert server.bytes_sent("/f.bin") == (big - (1 << 20)) + (big - start)


def test_short_body_resumes(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "short", at=1000)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def _settled_bytes_sent(server: TestServer, path: str) -> int:
    """The server's byte count once its handler threads are done (a 404 body may be counted after the client read it)."""

    last = -1
    while (now := server.bytes_sent(path)) != last:
        last = now
        time.sleep(0.05)
    return now


def test_resume_across_runs_reuses_the_partial(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    target = tmp_path / "f.bin"
    server.fault("/f.bin", "short", at=SIZE // 2)
    server.fault("/f.bin", "status", status=404)  # the run ends here, as if killed
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server, "/f.bin", target, settings, data)
    part, side = partial_paths(target)
    assert part.exists() and json.loads(side.read_text())["validator"] == server.etag("/f.bin")
    assert not target.exists()
    kept = part.stat().st_size
    assert kept > 0
    sent_before = _settled_bytes_sent(server, "/f.bin")
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data
    assert server.bytes_sent("/f.bin") - sent_before == SIZE - kept


def test_ignored_range_restarts_cleanly(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "reset", at=SIZE // 2)
    server.fault("/f.bin", "ignore_range")
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_server_without_ranges_restarts(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data, ranges=False)
    server.fault("/f.bin", "reset", at=SIZE // 2)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_changed_validator_restarts_with_the_new_content(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    old, new = blob(SIZE, 1), blob(SIZE, 2)
    server.add("/f.bin", old)
    server.fault("/f.bin", "short", at=SIZE // 2)
    server.fault("/f.bin", "status", status=404)
    target = tmp_path / "f.bin"
    with pytest.raises(DownloadError):
        download([server.url + "/f.bin"], target, settings=settings)  # unpinned: the validator is all we have
    server.replace("/f.bin", new)
    download([server.url + "/f.bin"], target, settings=settings)
    assert target.read_bytes() == new, "a changed ETag must not splice old and new bytes"
    last = [r for r in server.requests if r.method == "GET"][-1]
    assert "if-range" in last.headers


def test_416_on_complete_partial(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(10000)
    server.add("/f.bin", data)
    target = tmp_path / "f.bin"
    part, side = partial_paths(target)
    part.write_bytes(data + b"extra")  # longer than the file: the server answers 416
    side.write_text(json.dumps({"url": server.url + "/f.bin", "validator": server.etag("/f.bin"), "total": None,
                                "expect": {"hashes": {"md5": md5(data), "sha256": sha256(data)}, "size": len(data)}}))
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data


def test_complete_partial_is_checked_without_a_request(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(10000)
    server.add("/f.bin", data)
    target = tmp_path / "f.bin"
    part, side = partial_paths(target)
    part.write_bytes(data)
    side.write_text(json.dumps({"url": server.url + "/f.bin", "validator": server.etag("/f.bin"), "total": len(data),
                                "expect": {"hashes": {"md5": md5(data), "sha256": sha256(data)}, "size": len(data)}}))
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data
    assert server.hits("/f.bin") == 0


def test_corrupt_prefix_is_redownloaded_from_scratch(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    target = tmp_path / "f.bin"
    part, side = partial_paths(target)
    part.write_bytes(b"\0" * 5000)  # a prefix that does not match the file
    side.write_text(json.dumps({"url": server.url + "/f.bin", "validator": server.etag("/f.bin"), "total": SIZE,
                                "expect": {"hashes": {"md5": md5(data), "sha256": sha256(data)}, "size": SIZE}}))
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data


# --- §4.3 retries ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(server: TestServer, settings: Settings, tmp_path: Path, status: int) -> None:
    data = blob(2000)
    server.add("/f.bin", data)
    server.fault("/f.bin", "status", status=status)
    server.fault("/f.bin", "status", status=status)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert server.hits("/f.bin") == 3


def test_retry_after_is_honoured(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(2000)
    server.add("/f.bin", data)
    server.fault("/f.bin", "status", status=503, retry_after="1")
    slept: list[float] = []
    real = settings.sleep

    def sleep(s: float) -> None:
        slept.append(s)
        real(s)

    settings.sleep = sleep
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert 0.9 < sum(slept) < 1.6


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_4xx_are_not_retried(server: TestServer, settings: Settings, tmp_path: Path, status: int) -> None:
    server.add("/f.bin", blob(100))
    server.fault("/f.bin", "status", status=status)
    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        download([server.url + "/f.bin"], tmp_path / "f.bin", settings=settings)
    assert server.hits("/f.bin") == 1


def test_gives_up_after_retries_with_a_clear_message(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    server.add("/f.bin", blob(100))
    for _ in range(20):
        server.fault("/f.bin", "status", status=503)
    with pytest.raises(DownloadError, match="giving up .* HTTP 503"):
        download([server.url + "/f.bin"], tmp_path / "f.bin", settings=settings)
    assert server.hits("/f.bin") == settings.retries + 1


def test_stalled_read_times_out_and_resumes(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "stall", at=100000, seconds=3)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert server.requests[-1].headers.get("range") == "bytes=100000-" or server.hits("/f.bin") == 2


def test_endless_range_ignoring_resets_give_up(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data, ranges=False)
    for _ in range(40):
        server.fault("/f.bin", "short", at=SIZE // 2)
    with pytest.raises(DownloadError, match="giving up"):
        fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert server.hits("/f.bin") < 40


def test_dropped_connection_is_retried(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(2000)
    server.add("/f.bin", data)
    server.fault("/f.bin", "drop")
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_dead_host_fails_cleanly(settings: Settings, tmp_path: Path) -> None:
    with TestServer() as srv:
        dead = srv.url
    settings.retries = 1
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1"):
        download([dead + "/f.bin"], tmp_path / "f.bin", settings=settings)


# --- mirrors ----------------------------------------------------------------------------


def test_next_url_is_tried_when_one_fails(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(3000)
    server.add("/good.bin", data)
    target = tmp_path / "f.bin"
    download([server.url + "/missing.bin", server.url + "/good.bin"], target, hashes={"md5": md5(data)}, settings=settings)
    assert target.read_bytes() == data


# --- §4.5 hashing while streaming -------------------------------------------------------


def test_no_second_pass_over_the_file(server: TestServer, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.fault("/f.bin", "short", at=SIZE // 2)
    fed: list[int | None] = []
    original = hashing.MultiHasher.feed_file

    def spy(self: hashing.MultiHasher, f: object, limit: int | None = None) -> None:
        fed.append(limit)
        original(self, f, limit)  # type: ignore[arg-type]

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("hash_file must not run during a download")

    monkeypatch.setattr(hashing.MultiHasher, "feed_file", spy)
    monkeypatch.setattr(hashing, "hash_file", forbidden)
    fetch(server, "/f.bin", tmp_path / "f.bin", settings, data)
    # One resume: its existing prefix is read exactly once, never the whole file.
    assert len(fed) == 1 and fed[0] is not None and 0 < fed[0] < SIZE


# --- §4.6 connections are reused ---------------------------------------------------------


def test_one_session_reuses_connections(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    from ckptfetch.download import make_session

    session = make_session(4)
    for i in range(6):
        server.add(f"/f{i}.bin", blob(5000, i))
    for i in range(6):
        download([f"{server.url}/f{i}.bin"], tmp_path / f"f{i}.bin", session=session, settings=settings)
    ports = {r.client[1] for r in server.requests}
    assert len(ports) == 1


# --- §4.10 redirects and secrets ------------------------------------------------------------


def test_redirect_is_followed(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(3000)
    server.add("/real.bin", data)
    server.redirect("/f.bin", server.url + "/real.bin")
    download([server.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_authorization_is_not_sent_to_another_host(settings: Settings, tmp_path: Path) -> None:
    data = blob(3000)
    with TestServer() as a, TestServer() as b:
        b.add("/real.bin", data)
        a.redirect("/f.bin", b.url.replace("127.0.0.1", "localhost") + "/real.bin")
        download([a.url + "/f.bin"], tmp_path / "f.bin", settings=settings, headers={"Authorization": "Bearer SECRET"})
        assert a.requests[0].headers["authorization"] == "Bearer SECRET"
        assert all("authorization" not in r.headers for r in b.requests)


def test_redirect_loop_fails(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    server.redirect("/a", server.url + "/b")
    server.redirect("/b", server.url + "/a")
    with pytest.raises(DownloadError, match="too many redirects"):
        download([server.url + "/a"], tmp_path / "f.bin", settings=settings)


def test_credentials_in_url_are_not_printed(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    url = server.url.replace("http://", "http://user:hunter2@") + "/missing?token=s3cret"
    with pytest.raises(DownloadError) as info:
        download([url], tmp_path / "f.bin", settings=settings)
    assert "hunter2" not in str(info.value) and "s3cret" not in str(info.value)


# --- cancellation --------------------------------------------------------------------------


def test_cancel_keeps_the_partial(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(SIZE)
    server.add("/f.bin", data)
    server.rate = 2 << 20
    target = tmp_path / "f.bin"
    threading.Timer(0.4, settings.cancel.set).start()
    with pytest.raises(Interrupted):
        fetch(server, "/f.bin", target, settings, data)
    part, side = partial_paths(target)
    assert part.exists() and side.exists() and not target.exists()
    server.rate = None
    settings.cancel.clear()
    fetch(server, "/f.bin", target, settings, data)
    assert target.read_bytes() == data


def test_file_urls(settings: Settings, tmp_path: Path) -> None:
    data = blob(5000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    target = tmp_path / "out" / "f.bin"
    download([src.as_uri()], target, hashes={"md5": md5(data)}, settings=settings)
    assert target.read_bytes() == data


def test_interstitial_page_is_handed_to_the_source_and_resume_keeps_the_partial(
    server: TestServer, settings: Settings, tmp_path: Path
) -> None:
    """A source's `on_html` turns a confirmation page into the next URL; the sidecar stays keyed on the first URL."""
    from ckptfetch.download import Request

    big = 8 << 20  # an RST drops what the client has not read yet: cut late in a larger file
    data = blob(big, seed=7)
    server.add("/confirm", b"<html><form action='/real?token=1'></form></html>", content_type="text/html")
    server.add("/real", data)
    server.fault("/real", "reset", at=big - (1 << 20))
    pages: list[str] = []

    def on_html(page: str, url: str) -> str:
        pages.append(page)
        return "/real?token=1"

    settings.connections = 1
    target = tmp_path / "f.bin"
    digests = download([Request(server.url + "/confirm", on_html=on_html)], target, hashes={"md5": md5(data)},
                       settings=settings)
    assert target.read_bytes() == data and digests["md5"] == md5(data)
    assert pages and "<form" in pages[0]
    # After the reset the job resumed on the real URL rather than starting over.
    gets = [r for r in server.requests if r.path.startswith("/real")]
    assert len(gets) == 2
    start = int(gets[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert start > 0
    assert server.bytes_sent("/real") == (big - (1 << 20)) + (big - start)


def test_interstitial_page_error_from_the_source_is_reported(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    from ckptfetch.download import Request

    server.add("/quota", b"<html>Quota exceeded</html>", content_type="text/html")

    def on_html(page: str, url: str) -> str:
        raise DownloadError("f.bin: the download quota for this file is exceeded; try again in 24 hours")

    with pytest.raises(DownloadError, match="quota"):
        download([Request(server.url + "/quota", on_html=on_html)], tmp_path / "f.bin", settings=settings)
    assert not (tmp_path / "f.bin").exists()


def _leave_partial(server: TestServer, settings: Settings, target: Path, path: str, cut: int) -> None:
    """A first run that dies mid-body and keeps its partial (validator: the server's ETag now)."""
    server.fault(path, "reset", at=cut)
    server.fault(path, "status", status=404)  # the retry after the reset finds the file gone: the run ends
    with pytest.raises(DownloadError):
        download([server.url + path], target, settings=settings)
    assert partial_paths(target)[0].stat().st_size > 0


def test_a_source_that_knows_the_new_etag_restarts_a_partial_of_the_old_version(
    server: TestServer, settings: Settings, tmp_path: Path
) -> None:
    """An unpinned file replaced upstream, on a server that ignores If-Range: never a mix of two versions."""
    old, new = blob(8 << 20, seed=1), blob(8 << 20, seed=2)
    server.add("/f.bin", old)
    target = tmp_path / "f.bin"
    _leave_partial(server, settings, target, "/f.bin", cut=7 << 20)
    server.replace("/f.bin", new)
    server.fault("/f.bin", "ignore_if_range")
    server.clear_log()
    download([Request(server.url + "/f.bin", validator=server.etag("/f.bin"))], target, settings=settings)
    assert target.read_bytes() == new
    assert "if-range" not in server.requests[0].headers  # the old partial was not even offered


def test_a_resumed_range_of_another_version_restarts(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    """The source's validator went stale between its HEAD and our GET: the 206's ETag gives it away."""
    old, new = blob(8 << 20, seed=3), blob(8 << 20, seed=4)
    server.add("/f.bin", old)
    target = tmp_path / "f.bin"
    _leave_partial(server, settings, target, "/f.bin", cut=7 << 20)
    stale = server.etag("/f.bin")
    server.replace("/f.bin", new)
    server.fault("/f.bin", "ignore_if_range")
    download([Request(server.url + "/f.bin", validator=stale)], target, settings=settings)
    assert target.read_bytes() == new


def test_a_request_key_keeps_the_partial_when_the_url_changes(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    """Presigned URLs differ at every run; the partial is resumed under the request's stable key."""
    data = blob(8 << 20, seed=5)
    server.add("/f.bin?sig=1", data)
    server.add("/f.bin?sig=2", data, etag=server.etag("/f.bin?sig=1"))
    target = tmp_path / "f.bin"
    server.fault("/f.bin?sig=1", "reset", at=7 << 20)
    server.fault("/f.bin?sig=1", "status", status=403)  # the signature expired: this run ends
    with pytest.raises(DownloadError):
        download([Request(server.url + "/f.bin?sig=1", key="s3://bucket/f.bin")], target, settings=settings)
    server.clear_log()
    download([Request(server.url + "/f.bin?sig=2", key="s3://bucket/f.bin")], target, settings=settings)
    assert target.read_bytes() == data
    assert server.requests[0].headers["range"] != "bytes=0-"
    assert int(server.requests[0].headers["range"].removeprefix("bytes=").split("-")[0]) > 0


def test_the_session_reads_proxies_once_per_origin_and_agrees_with_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's session caches requests' environment settings per scheme and host: the same answers, read once."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,127.0.0.1")
    urls = ["https://hub.example/a", "https://internal.example/b", "http://127.0.0.1:8080/c", "http://hub.example/d",
            "https://hub.example:8443/e", "https://hub.example/other/path"]
    ours, plain = make_session(), requests.Session()
    for url in urls:
        for proxies in ({}, {"https": "http://other.example:1"}):
            assert ours.merge_environment_settings(url, proxies, None, None, None) == \
                plain.merge_environment_settings(url, proxies, None, None, None), url
    first = ours.merge_environment_settings(urls[0], {}, None, None, None)
    assert first["proxies"]["https"] == "http://proxy.example:3128"
    assert ours.merge_environment_settings(urls[1], {}, None, None, None)["proxies"] == {}, "NO_PROXY holds"
    first["proxies"]["https"] = "changed by the caller"
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.example:1")  # a run's environment is read once
    assert ours.merge_environment_settings(urls[0], {}, None, None, None)["proxies"]["https"] == "http://proxy.example:3128"
