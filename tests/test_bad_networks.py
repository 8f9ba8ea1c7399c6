"""The engine on bad networks (README "Guarantees"): a trickling connection is dropped
for another, one cap on connections per host for a whole run, HTML bodies
refused whatever their Content-Type, and engine settings from the environment
checked (a bad value is a usage error naming the variable).

Kills and what a resume sends again are in test_crash.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import ckptfetch
from ckptfetch.download import Settings, download, engine, segmented
from ckptfetch.download.partial import partial_paths
from ckptfetch.errors import DownloadError

from .conftest import blob, cli_env, md5, run_cli, sha256
from .httpserver import TestServer


class Notes:
    """A reporter that keeps the engine's notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, label: str, total: int | None, initial: int = 0) -> None: ...
    def advance(self, label: str, n: int) -> None: ...
    def rewind(self, label: str, n: int) -> None: ...
    def finish(self, label: str, ok: bool) -> None: ...

    def note(self, label: str, message: str) -> None:
        self.notes.append(message)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PROBE", 128 << 10)
    monkeypatch.setattr(segmented, "MIN_PIECE", 128 << 10)
    monkeypatch.setattr(segmented, "MAX_PIECE", 128 << 10)


# --- what arrived is on disk, and the sidecar says so ------------------------------------------------


@pytest.mark.parametrize("connections", [1, 4], ids=["one-stream", "segmented"])
def test_what_arrived_is_written_while_the_server_pauses(connections: int, server: TestServer, settings: Settings,
                                                         tmp_path: Path, small_pieces: None) -> None:
    """A kill -9 loses only what is still in flight: nothing waits in memory for a full chunk."""
    data = blob(1 << 20, seed=9)
    server.add("/f.bin", data)
    at = 100_000  # inside the first response (the 128 KiB probe when segmented)
    server.fault("/f.bin", "stall", at=at, seconds=4)
    settings.connections = connections
    settings.read_timeout = 10
    target = tmp_path / "f.bin"
    part, side = partial_paths(target)

    def kept() -> int:
        if connections == 1:
            return part.stat().st_size if part.exists() else 0
        try:
            return int(json.loads(side.read_text())["pieces"][0][2])  # the first piece: the stalled response
        except (OSError, ValueError, KeyError):
            return 0

    done = threading.Thread(target=download, args=([server.url + "/f.bin"], target),
                            kwargs={"hashes": {"md5": md5(data)}, "settings": settings})
    done.start()
    deadline = time.monotonic() + 3  # well within the stall
    while kept() < at and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kept() == at, "bytes that arrived before the pause were not on disk (and in the sidecar) during it"
    done.join()
    assert target.read_bytes() == data


# --- a minimum speed ------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 4], ids=["one-stream", "segmented"])
def test_a_trickling_source_is_dropped_for_the_next(connections: int, settings: Settings, tmp_path: Path,
                                                    small_pieces: None) -> None:
    data = blob(1 << 20, seed=5)
    notes = Notes()
    settings.connections = connections
    settings.speed_limit = 100_000  # bytes/s
    settings.speed_time = 0.3
    with TestServer() as slow, TestServer() as fast:
        slow.add("/f.bin", data)
        fast.add("/f.bin", data)
        slow.rate = 20_000  # bytes/s per response: 50 s for the file, and never 100 kB/s
        started = time.monotonic()
        download([slow.url + "/f.bin", fast.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)},
                 settings=settings, reporter=notes)
        took = time.monotonic() - started
        assert (tmp_path / "f.bin").read_bytes() == data
        assert took < 15, f"a trickling source held the download for {took:.1f} s"
        assert slow.hits("/f.bin") > settings.retries  # every attempt at the slow one was dropped, then given up
        assert fast.bytes_sent("/f.bin") == len(data)
    assert any("slower than 100000 bytes/s for 0.3 s" in n for n in notes.notes), notes.notes


def test_a_trickle_that_never_stops_is_no_progress(settings: Settings, tmp_path: Path) -> None:
    """Bytes keep arriving, so the partial grows each time, but too slowly: the attempts still run out."""
    settings.connections = 1
    settings.speed_limit = 100_000
    settings.speed_time = 0.3
    data = blob(1 << 20, seed=6)
    with TestServer() as slow:
        slow.add("/f.bin", data)
        slow.rate = 20_000
        with pytest.raises(DownloadError, match="slower than 100000 bytes/s"):
            download([slow.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings)
        assert slow.hits("/f.bin") == settings.retries + 1


def test_a_stalled_piece_goes_on_over_a_new_connection(server: TestServer, settings: Settings, tmp_path: Path,
                                                       small_pieces: None) -> None:
    data = blob(2 << 20, seed=7)
    server.add("/f.bin", data)
    server.fault("/f.bin", "stall", at=1000, seconds=20)  # the probe stops after 1000 bytes for 20 s
    settings.connections = 4
    settings.read_timeout = 30  # longer than the stall: only the minimum speed can end it
    settings.speed_limit = 50_000
    settings.speed_time = 0.5
    started = time.monotonic()
    download([server.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings)
    assert time.monotonic() - started < 10
    assert (tmp_path / "f.bin").read_bytes() == data


def test_the_minimum_speed_can_be_turned_off(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    data = blob(300_000, seed=8)
    server.add("/f.bin", data)
    server.rate = 400_000  # under the limit below, which is off
    settings.connections = 1
    settings.speed_limit = 0
    settings.speed_time = 0.2
    download([server.url + "/f.bin"], tmp_path / "f.bin", hashes={"md5": md5(data)}, settings=settings)
    assert server.hits("/f.bin") == 1


# --- one cap on connections per host ------------------------------------------------------------


def test_one_cap_on_connections_per_host_across_files_and_pieces(server: TestServer, settings: Settings,
                                                                  tmp_path: Path, small_pieces: None) -> None:
    files = {}
    for i in range(4):
        data = blob(2 << 20, seed=20 + i)
        server.add(f"/f{i}.bin", data)
        files[f"f{i}.bin"] = {"url": f"{server.url}/f{i}.bin", "md5": md5(data)}
    m = tmp_path / "many.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "many", "files": files}))
    server.rate = 2 << 20  # per connection: slow enough that pieces and files overlap
    settings.per_host = 5
    result = ckptfetch.fetch(str(m), tmp_path / "out", jobs=4, connections=8, settings=settings)
    assert result.ok
    assert 2 < server.peak_connections <= 5, server.peak_connections
    ranged = [r for r in server.requests if r.headers.get("range", "").startswith("bytes=") and
              not r.headers["range"].startswith("bytes=0-")]
    assert ranged, "no file was fetched in pieces"


# --- HTML where a file was expected -----------------------------------------------------------------


PAGES = [
    b"<!DOCTYPE html><html><body>Please sign in</body></html>",
    b"\xef\xbb\xbf  \n\t<html lang=en><head><title>Quota exceeded</title></head></html>",
    b"\r\n<!doctype HTML>\n<title>403</title>",
]


@pytest.mark.parametrize("page", PAGES, ids=["doctype", "bom-and-whitespace", "lowercase-doctype"])
def test_an_html_body_is_refused_whatever_its_content_type(page: bytes, server: TestServer, settings: Settings,
                                                          tmp_path: Path) -> None:
    server.add("/model.bin", page, content_type="application/octet-stream")
    target = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match="HTML page"):
        download([server.url + "/model.bin"], target, settings=settings)  # unpinned
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_html_target_or_a_pinned_file_may_start_like_html(server: TestServer, settings: Settings,
                                                            tmp_path: Path) -> None:
    page = PAGES[0]
    server.add("/index.html", page, content_type="application/octet-stream")
    download([server.url + "/index.html"], tmp_path / "index.html", settings=settings)
    assert (tmp_path / "index.html").read_bytes() == page
    download([server.url + "/index.html"], tmp_path / "page.bin", hashes={"sha256": sha256(page)}, settings=settings)
    assert (tmp_path / "page.bin").read_bytes() == page


def test_text_that_mentions_html_later_is_not_refused(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    body = b'{"format": "<html> templates"}\n'
    server.add("/config.json", body, content_type="application/octet-stream")
    download([server.url + "/config.json"], tmp_path / "config.json", settings=settings)
    assert (tmp_path / "config.json").read_bytes() == body


# --- settings from the environment ------------------------------------------------------------------------


BAD_ENV = [
    ("CKPTFETCH_RETRIES", "abc", "a whole number"),
    ("CKPTFETCH_RETRIES", "-1", "a whole number"),
    ("CKPTFETCH_CONNECTIONS", "0", "a whole number"),
    ("CKPTFETCH_CONNECTIONS", "2.5", "a whole number"),
    ("CKPTFETCH_TIMEOUT", "soon", "seconds"),
    ("CKPTFETCH_TIMEOUT", "0", "seconds"),
    ("CKPTFETCH_TIMEOUT", "nan", "seconds"),
    ("CKPTFETCH_BACKOFF", "-0.5", "seconds"),
    ("CKPTFETCH_SPEED_LIMIT", "fast", "bytes per second"),
    ("CKPTFETCH_SPEED_TIME", "-3", "seconds"),
]


@pytest.mark.parametrize(("var", "value", "takes"), BAD_ENV, ids=[f"{v}={x}" for v, x, _ in BAD_ENV])
def test_a_bad_environment_value_is_a_usage_error(var: str, value: str, takes: str, server: TestServer,
                                                   tmp_path: Path) -> None:
    server.add("/f.bin", b"x" * 100)
    m = tmp_path / "one.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "one", "files": {"f.bin": {"url": server.url + "/f.bin"}}}))
    r = run_cli("get", str(m), "--dest", str(tmp_path / "out"), "--no-progress", env=cli_env(**{var: value}))
    assert r.returncode == 2, r.stderr
    assert var in r.stderr and repr(value) in r.stderr and takes in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not server.requests, "nothing is fetched with a bad setting"


def test_good_environment_values_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("CKPTFETCH_RETRIES", "0"), ("CKPTFETCH_CONNECTIONS", "3"), ("CKPTFETCH_TIMEOUT", "7.5"),
                       ("CKPTFETCH_BACKOFF", "0"), ("CKPTFETCH_SPEED_LIMIT", "2048"), ("CKPTFETCH_SPEED_TIME", "9"),
                       ("CKPTFETCH_MIRRORS", "")):
        monkeypatch.setenv(var, value)
    s = Settings.from_env()
    assert (s.retries, s.connections, s.read_timeout, s.connect_timeout, s.backoff, s.speed_limit, s.speed_time) == (
        0, 3, 7.5, 7.5, 0.0, 2048, 9.0)
    monkeypatch.setenv("CKPTFETCH_RETRIES", "")  # set but empty: the default, as if unset
    assert Settings.from_env().retries == Settings().retries
