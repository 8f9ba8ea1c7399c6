"""Cheap checks of the benchmark helpers (the benchmark itself is too slow for the suite)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def benchlib():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("benchlib", REPO / "benchmarks" / "benchlib.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["benchlib"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("benchlib", None)


def test_nginx_conf_is_private_and_local(benchlib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf = benchlib.nginx_conf(tmp_path / "p", tmp_path / "data", 41000, 41001)
    assert "listen 127.0.0.1:41000;" in conf and "listen 127.0.0.1:41001;" in conf
    assert conf.count("limit_rate 20m;") == 1
    assert f"pid {tmp_path}/p/nginx.pid;" in conf and f"access_log {tmp_path}/p/access.log bench;" in conf
    assert "daemon off;" in conf


def test_bytes_sent_counts_one_port_and_uri_after_a_mark(benchlib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "access.log"
    log.write_text("9 206 100 /big.bin\n")
    mark = log.stat().st_size
    with open(log, "a") as f:
        f.write("9 206 1000 /big.bin\n9 206 5 /other\n8 200 77 /big.bin\n9 206 24 /big.bin\n")
    assert benchlib.bytes_sent(log, mark, 9, "/big.bin") == 1024
    assert benchlib.bytes_sent(log, 0, 9, "/big.bin") == 1124


def test_make_file_is_reproducible_and_reused(benchlib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    a = benchlib.make_file(tmp_path / "a.bin", 3 << 20, 7)
    assert a == hashlib.md5((tmp_path / "a.bin").read_bytes()).hexdigest()
    mtime = (tmp_path / "a.bin").stat().st_mtime_ns
    assert benchlib.make_file(tmp_path / "a.bin", 3 << 20, 7) == a
    assert (tmp_path / "a.bin").stat().st_mtime_ns == mtime  # reused, not rewritten
    assert benchlib.make_file(tmp_path / "b.bin", 3 << 20, 7) == a
    assert benchlib.make_file(tmp_path / "a.bin", 3 << 20, 8) != a


def test_measure_reports_time_rss_and_status(benchlib) -> None:  # type: ignore[no-untyped-def]
    if not Path(benchlib.TIME).exists():
        pytest.skip("GNU time is installed by the benchmark, not needed by the suite")
    run = benchlib.measure([sys.executable, "-c", "import sys; b = bytearray(40 << 20); sys.exit(3)"])
    assert run.rc == 3 and run.wall > 0
    assert 40 * 1024 < run.maxrss_kb < 200 * 1024


def test_sizes_and_table(benchlib) -> None:  # type: ignore[no-untyped-def]
    assert benchlib.parse_size("1G") == 1 << 30 and benchlib.parse_size("256m") == 256 << 20
    assert benchlib.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
