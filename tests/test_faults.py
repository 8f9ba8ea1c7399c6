"""Fault injection over the real engine and the real local server (README Guarantees 1-3 and 11).

Every fault kind runs across seeded random sizes, offsets and fault counts, on
one connection and on several (segmented). Whatever happens, the outcome is
either a verified file at the target or one clean `DownloadError` whose
message is one line naming the file; the target never holds wrong bytes; a
file that was there before (a neighbour, or an old copy of the target) is
untouched unless a verified replacement took its place.

By default each kind runs `CKPTFETCH_FAULT_SEEDS` seeds (4) per mode; the
`slow` sweep runs `CKPTFETCH_FAULT_SLOW_SEEDS` (60) more: `CKPTFETCH_SLOW=1
python -m pytest tests/test_faults.py`. Figures: tests/faultstats.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import pytest

from ckptfetch.download import Settings, download, engine, segmented
from ckptfetch.download.partial import partial_paths
from ckptfetch.errors import DownloadError, HashMismatch

from . import faultstats
from .conftest import blob, cli_env, md5, run_cli, sha256
from .httpserver import TestServer

SEEDS = int(os.environ.get("CKPTFETCH_FAULT_SEEDS", "4"))
SLOW_SEEDS = int(os.environ.get("CKPTFETCH_FAULT_SLOW_SEEDS", "60"))
PIECE = 128 << 10  # segmented mode: small pieces so a few hundred KiB exercise many of them

VERIFIED, ERROR = "verified", "clean-error"
PERSISTENT = 60  # more faults than every connection's retries together: the fault never goes away


@dataclass
class Expect:
    """What a scenario allows, and what an error must say."""

    outcomes: set[str]
    error: str = ""  # regex an error message must match
    extra_urls: list[str] = field(default_factory=list)
    max_hits: int | None = None  # requests to the faulty path, at most
    min_sleep: float = 0.0  # Retry-After honoured: total backoff at least this


@dataclass
class Ctx:
    rng: random.Random
    server: TestServer
    path: str
    data: bytes
    target: Path
    settings: Settings
    expect_doc: dict[str, object]
    segmented: bool


def _offset(ctx: Ctx) -> int:
    return ctx.rng.randrange(0, max(1, min(len(ctx.data), PIECE if ctx.segmented else len(ctx.data))))


def _maybe_progress_first(ctx: Ctx) -> None:
    """Half the time, a reset mid-body first, so the fault lands on a resumed request."""
    if ctx.rng.random() < 0.5:
        ctx.server.fault(ctx.path, "reset", at=_offset(ctx))


def _good_mirror(ctx: Ctx) -> str:
    url = ctx.server.add(ctx.path.replace("/f.bin", "/mirror.bin"), ctx.data)
    return url


# --- scenarios: set up the server, say what may happen ------------------------------------


def s_reset(ctx: Ctx) -> Expect:
    if ctx.rng.random() < 0.15:  # a server that always dies at byte 0 makes no progress: give up
        for _ in range(PERSISTENT):
            ctx.server.fault(ctx.path, "reset", at=0)
        return Expect({ERROR}, r"giving up .*connection lost|giving up on bytes|connection lost|cannot reach")
    for _ in range(ctx.rng.randint(1, 3)):
        ctx.server.fault(ctx.path, "reset", at=_offset(ctx))
    return Expect({VERIFIED})


def s_short(ctx: Ctx) -> Expect:
    for _ in range(ctx.rng.randint(1, 3)):
        ctx.server.fault(ctx.path, "short", at=_offset(ctx))
    return Expect({VERIFIED})


def _status(ctx: Ctx, status: int) -> Expect:
    _maybe_progress_first(ctx)
    if ctx.rng.random() < 0.2:
        for _ in range(PERSISTENT):
            ctx.server.fault(ctx.path, "status", status=status)
        return Expect({ERROR}, rf"giving up .*HTTP {status}|HTTP {status}")
    roll = ctx.rng.random()
    retry_after, min_sleep = None, 0.0
    if roll < 0.15:
        retry_after, min_sleep = "1", 0.9
    elif roll < 0.25:
        retry_after = formatdate(time.time() + 1, usegmt=True)  # the HTTP-date form
    elif roll < 0.6:
        retry_after = "0"
    for _ in range(ctx.rng.randint(1, 2)):
        ctx.server.fault(ctx.path, "status", status=status, retry_after=retry_after)
    return Expect({VERIFIED}, min_sleep=min_sleep)


def s_5xx(ctx: Ctx) -> Expect:
    return _status(ctx, ctx.rng.choice([500, 502, 503, 504]))


def s_429(ctx: Ctx) -> Expect:
    return _status(ctx, 429)


def _gone(ctx: Ctx, status: int) -> Expect:
    _maybe_progress_first(ctx)
    ctx.server.fault(ctx.path, "status", status=status)
    hint = "not there" if status == 404 else "removed"
    if ctx.rng.random() < 0.3:
        # The next mirror has the file: that is what the user gets, after one request to the dead one.
        return Expect({VERIFIED}, extra_urls=[_good_mirror(ctx)], max_hits=None if ctx.segmented else 2)
    # No retry: the faulty status is answered once; earlier requests were the reset one and (segmented) pieces.
    return Expect({ERROR}, rf"HTTP {status} for http://127\.0\.0\.1:\d+{re.escape(ctx.path)}: .*{hint}",
                  max_hits=None if ctx.segmented else (2 if ctx.server._faults[ctx.path][0].kind == "reset" else 1))


def s_404(ctx: Ctx) -> Expect:
    return _gone(ctx, 404)


def s_410(ctx: Ctx) -> Expect:
    return _gone(ctx, 410)


def s_stall(ctx: Ctx) -> Expect:
    ctx.settings.read_timeout = 0.3
    ctx.server.fault(ctx.path, "stall", at=_offset(ctx), seconds=1.5)
    return Expect({VERIFIED})


def s_ignore_range(ctx: Ctx) -> Expect:
    ctx.server.fault(ctx.path, "reset", at=max(1, _offset(ctx)))
    for _ in range(ctx.rng.randint(1, 2)):
        ctx.server.fault(ctx.path, "ignore_range")
    return Expect({VERIFIED})


def s_change_validator(ctx: Ctx) -> Expect:
    if ctx.rng.random() < 0.5:
        ctx.server.fault(ctx.path, "reset", at=max(1, _offset(ctx)))
        ctx.server.fault(ctx.path, "change_etag")
        return Expect({VERIFIED})
    # A partial left by an earlier run of *other* bytes under the old validator:
    # If-Range must make the server send the whole new file, never a splice.
    old = bytes(b ^ 0x5A for b in ctx.data)
    validator = ctx.server.etag(ctx.path) or ctx.server.last_modified(ctx.path)
    ctx.server.replace(ctx.path, ctx.data)  # validators move on; the content is what the manifest pins
    part, side = partial_paths(ctx.target)
    keep = ctx.rng.randrange(1, max(2, len(old)))
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(old[:keep])
    side.write_text(json.dumps({"url": ctx.server.url + ctx.path, "validator": validator, "total": len(old),
                                "expect": ctx.expect_doc}))
    return Expect({VERIFIED})


def s_416(ctx: Ctx) -> Expect:
    part, side = partial_paths(ctx.target)
    part.parent.mkdir(parents=True, exist_ok=True)
    extra = ctx.rng.choice([b"", b"x", blob(ctx.rng.randint(1, 5000), seed=99)])
    part.write_bytes(ctx.data + extra)  # complete (or overlong): a range past the end is a 416
    side.write_text(json.dumps({"url": ctx.server.url + ctx.path, "validator": ctx.server.etag(ctx.path),
                                "total": None, "expect": ctx.expect_doc}))
    return Expect({VERIFIED})


def s_redirect_loop(ctx: Ctx) -> Expect:
    roll = ctx.rng.random()
    if roll < 0.3:
        # One redirect to itself, then the file: followed, not a loop.
        ctx.server.fault(ctx.path, "redirect", location=ctx.server.url + ctx.path)
        return Expect({VERIFIED})
    n = ctx.rng.randint(1, 4)
    hops = [ctx.path.replace("/f.bin", f"/hop{i}") for i in range(n)]
    for i, hop in enumerate(hops):
        ctx.server.redirect(hop, ctx.server.url + hops[(i + 1) % n], status=ctx.rng.choice([301, 302, 303, 307, 308]))
    ctx.path = hops[0]
    return Expect({ERROR}, r"too many redirects from http://127\.0\.0\.1:\d+/")


def s_html(ctx: Ctx) -> Expect:
    if ctx.rng.random() < 0.3:
        ctx.server.fault(ctx.path, "html")
        return Expect({VERIFIED}, extra_urls=[_good_mirror(ctx)])
    if ctx.segmented:
        # An HTML page answering a piece request is a 200 to a range: the engine falls back to one stream.
        _maybe_progress_first(ctx)
        ctx.server.fault(ctx.path, "html")
        return Expect({VERIFIED, ERROR}, r"HTML page instead of the file")
    ctx.server.fault(ctx.path, "html")
    return Expect({ERROR}, r"answered with an HTML page instead of the file")


def s_wrong_bytes(ctx: Ctx) -> Expect:
    roll = ctx.rng.random()
    if roll < 0.3:
        ctx.server.fault(ctx.path, "wrong_bytes")
        return Expect({VERIFIED}, extra_urls=[_good_mirror(ctx)])
    if roll < 0.6 and not ctx.segmented:
        # The resumed part is wrong: the engine blames the prefix once and starts from scratch.
        # (A reset can also cost every byte of the first response, making the wrong one a fresh download.)
        ctx.server.fault(ctx.path, "reset", at=max(1, _offset(ctx)))
        ctx.server.fault(ctx.path, "wrong_bytes")
        return Expect({VERIFIED, ERROR}, MISMATCH)
    for _ in range(PERSISTENT):
        ctx.server.fault(ctx.path, "wrong_bytes")
    return Expect({ERROR}, MISMATCH)


MISMATCH = r"mismatch for http://127\.0\.0\.1:\d+/\S+: expected [0-9a-f]+, got [0-9a-f]+"


def s_drop(ctx: Ctx) -> Expect:
    for _ in range(ctx.rng.randint(1, 3)):
        ctx.server.fault(ctx.path, "drop")
    return Expect({VERIFIED})


SCENARIOS: dict[str, Callable[[Ctx], Expect]] = {
    "reset": s_reset, "short": s_short, "5xx": s_5xx, "429": s_429, "404": s_404, "410": s_410,
    "stall": s_stall, "ignore_range": s_ignore_range, "change_validator": s_change_validator, "416": s_416,
    "redirect_loop": s_redirect_loop, "html": s_html, "wrong_bytes": s_wrong_bytes, "drop": s_drop,
}


# --- the harness -------------------------------------------------------------------------------


def _snapshot(path: Path) -> tuple[int, int, bytes] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def run_case(kind: str, seed: int, seg: bool, server: TestServer, root: Path, settings: Settings) -> str:
    rng = random.Random(f"{kind}/{seed}/{seg}")
    size = rng.randint(PIECE + 1, 10 * PIECE) if seg else rng.choice([rng.randint(1, 4096), rng.randint(4096, 400_000)])
    data = blob(size, seed=seed)
    mode = "seg" if seg else "one"
    path = f"/{kind}/{seed}/{mode}/f.bin"
    validators = rng.choice([("auto", "auto"), ("auto", None), (None, "auto")])
    server.add(path, data, etag=validators[0], last_modified=validators[1])
    case = root / f"{kind}-{seed}-{mode}"
    target = case / "sub" / "f.bin"
    target.parent.mkdir(parents=True)
    neighbour = case / "sub" / "good.bin"
    neighbour.write_bytes(b"correct before the run")
    before_neighbour = _snapshot(neighbour)
    if rng.random() < 0.3:
        target.write_bytes(b"an old, wrong copy of the target")  # replaced only by verified bytes
    before_target = _snapshot(target)

    hashes = {"sha256": sha256(data)} if rng.random() < 0.5 else {"md5": md5(data), "sha256": sha256(data)}
    size_pin = len(data) if rng.random() < 0.7 else None
    s = Settings(retries=settings.retries, backoff=0.001, backoff_max=0.01, retry_after_max=1.5,
                 connect_timeout=2, read_timeout=1.0, connections=4 if seg else 1, chunk_size=16 << 10)
    slept: list[float] = []

    def sleep(t: float) -> None:
        slept.append(t)
        time.sleep(t)

    s.sleep = sleep
    ctx = Ctx(rng, server, path, data, target, s, {"hashes": hashes, "size": size_pin}, seg)
    expect = SCENARIOS[kind](ctx)
    label = f"sub/f.bin#{kind}{seed}"
    hits_before = server.hits(ctx.path)
    try:
        download([server.url + ctx.path, *expect.extra_urls], target, hashes=hashes, size=size_pin,
                 settings=s, label=label)
        outcome = VERIFIED
    except DownloadError as exc:
        outcome = ERROR
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message, message
        assert message.startswith(label + ":"), f"the error must name the file first: {message}"
        assert re.search(expect.error, message), f"{kind}/{seed}/{mode}: {message!r} !~ {expect.error!r}"
        if isinstance(exc, HashMismatch):
            assert exc.expected in hashes.values() and exc.actual != exc.expected
    # no other exception type escapes: pytest reports it as a failure of this case

    assert outcome in expect.outcomes, f"{kind}/{seed}/{mode}: got {outcome}, allowed {expect.outcomes}"
    if outcome == VERIFIED:
        assert target.read_bytes() == data, f"{kind}/{seed}/{mode}: wrong bytes at the target"
        assert not any(p.exists() for p in partial_paths(target)), "partials left after success"
        assert sum(slept) >= expect.min_sleep, f"Retry-After not honoured: slept {sum(slept):.2f}s"
    else:
        assert _snapshot(target) == before_target, f"{kind}/{seed}/{mode}: the target was touched by a failed run"
    assert _snapshot(neighbour) == before_neighbour, "a file that was correct before was touched"
    if expect.max_hits is not None:
        assert server.hits(ctx.path) - hits_before <= expect.max_hits, f"{kind}: retried a non-transient status"
    # Nothing but the target, the neighbour and (after a failure) the resumable partial.
    allowed = {"f.bin", "good.bin", "f.bin.ckptfetch-partial", "f.bin.ckptfetch-partial.json"}
    assert {p.name for p in target.parent.iterdir()} <= allowed
    assert {p.name for p in case.iterdir()} == {"sub"}
    faultstats.record(kind, outcome)
    return outcome


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PROBE", PIECE)
    monkeypatch.setattr(segmented, "MIN_PIECE", PIECE)
    monkeypatch.setattr(segmented, "MAX_PIECE", PIECE)


def _sweep(kind: str, seeds: range, seg: bool, settings: Settings, root: Path) -> None:
    with TestServer() as server:
        for seed in seeds:
            run_case(kind, seed, seg, server, root, settings)
            server.clear_faults()


@pytest.mark.parametrize("seg", [False, True], ids=["one-connection", "segmented"])
@pytest.mark.parametrize("kind", sorted(SCENARIOS))
def test_fault(kind: str, seg: bool, settings: Settings, tmp_path: Path, small_pieces: None) -> None:
    _sweep(kind, range(SEEDS), seg, settings, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seg", [False, True], ids=["one-connection", "segmented"])
@pytest.mark.parametrize("kind", sorted(SCENARIOS))
def test_fault_sweep_many_seeds(kind: str, seg: bool, settings: Settings, tmp_path: Path, small_pieces: None) -> None:
    _sweep(kind, range(1000, 1000 + SLOW_SEEDS), seg, settings, tmp_path)


# --- the same through the public CLI: one message, exit 1, good files untouched ---------------------


CLI_FAULTS: dict[str, tuple[dict[str, object], str]] = {
    "404": ({"kind": "status", "status": 404}, r"HTTP 404 for http://127\.0\.0\.1:\d+/bad\.bin: the file is not there"),
    "410": ({"kind": "status", "status": 410}, r"HTTP 410 for .*/bad\.bin: the file was removed"),
    "html": ({"kind": "html"}, r"bad\.bin: .*/bad\.bin answered with an HTML page instead of the file"),
    "wrong_bytes": ({"kind": "wrong_bytes"}, r"bad\.bin: md5 mismatch for .*/bad\.bin: expected [0-9a-f]{32}, got [0-9a-f]{32}"),
    "503-forever": ({"kind": "status", "status": 503}, r"bad\.bin: giving up on .*/bad\.bin after \d+ failed attempts: HTTP 503"),
}


@pytest.mark.parametrize("name", sorted(CLI_FAULTS))
def test_cli_fault_is_one_clear_message(name: str, server: TestServer, tmp_path: Path) -> None:
    params, pattern = CLI_FAULTS[name]
    good, bad = blob(50_000, seed=1), blob(70_000, seed=2)
    server.add("/good.bin", good)
    server.add("/bad.bin", bad)
    for _ in range(10):
        server.fault("/bad.bin", **params)  # type: ignore[arg-type]
    m = tmp_path / "faulty.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "faulty", "files": {
        "good.bin": {"url": server.url + "/good.bin", "md5": md5(good)},
        "bad.bin": {"url": server.url + "/bad.bin", "md5": md5(bad)},
    }}))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "good.bin").write_bytes(good)
    before = _snapshot(dest / "good.bin")
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress", env=cli_env(CKPTFETCH_RETRIES="2"))
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (dest / "bad.bin").exists()
    assert _snapshot(dest / "good.bin") == before and server.hits("/good.bin") == 0
    faultstats.record(f"cli-{name}", ERROR)


# --- faults with one right answer ------------------------------------------------------------------


def test_retry_after_beyond_the_cap_gives_up_at_once(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    server.add("/f.bin", blob(1000))
    server.fault("/f.bin", "status", status=429, retry_after="3600")
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"f\.bin: .*answered HTTP 429 and asks to come back in 3600 s, longer than"):
        download([server.url + "/f.bin"], tmp_path / "f.bin", settings=settings, label="f.bin")
    assert time.monotonic() - t0 < 1 and server.hits("/f.bin") == 1
    faultstats.record("retry-after-too-long", ERROR)


def test_a_gzip_bomb_over_http_stops_at_the_pinned_size(server: TestServer, settings: Settings, tmp_path: Path) -> None:
    """A server that gzips anyway (we ask for identity) cannot make us write past the manifest's size."""
    import gzip

    bomb = gzip.compress(b"\0" * (20 << 20))
    server.add("/f.bin", bomb, headers={"Content-Encoding": "gzip"})
    settings.connections = 1  # a plain GET: no range probe whose Content-Range would give the size away
    target = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=r"sent more than the 1000 bytes the manifest expects"):
        download([server.url + "/f.bin"], target, size=1000, hashes={"sha256": "0" * 64}, settings=settings, label="f.bin")
    assert not target.exists()
    part = partial_paths(target)[0]
    assert not part.exists() or part.stat().st_size == 0
    faultstats.record("http-gzip-bomb", ERROR)


def test_manifest_root_must_be_relative(tmp_path: Path) -> None:
    for root in ("/etc", "../..", "a/../../b", "C:/Windows"):
        m = tmp_path / "rooted.yaml"
        m.write_text(json.dumps({"ckptfetch": 1, "name": "rooted", "root": root,
                                 "files": {"passwd": {"url": "http://127.0.0.1:9/x", "md5": "0" * 32}}}))
        r = run_cli("get", str(m), cwd=tmp_path)
        assert r.returncode == 2 and "`root`" in r.stderr, r.stderr
