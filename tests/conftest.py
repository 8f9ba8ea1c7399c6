"""Shared fixtures: a real local HTTP server, fast engine settings, the CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ckptfetch.download import Settings

from .httpserver import TestServer

if TYPE_CHECKING:
    from .s3server import SeaweedS3

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets a store of its own (CKPTFETCH_CACHE), never the user's: `cli_env()` passes it on."""
    store = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("CKPTFETCH_CACHE", str(store))
    return store


@pytest.fixture
def store_dir(_private_store: Path) -> Path:
    """This test's store (what CKPTFETCH_CACHE points at)."""
    return _private_store


@pytest.fixture
def server() -> Iterator[TestServer]:
    with TestServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3-compatible store (SeaweedFS) on 127.0.0.1 for the whole session (tests/s3server.py)."""
    from .s3server import SeaweedS3, Unavailable, ensure_boto3

    try:
        ensure_boto3()
        store = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
        store.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def settings() -> Settings:
    """Engine settings with tiny backoffs and short timeouts."""
    return Settings(retries=4, backoff=0.01, backoff_max=0.05, retry_after_max=1.5, connect_timeout=2, read_timeout=1.0)


def blob(n: int, seed: int = 0) -> bytes:
    """`n` deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: fast retries, no colours, and this test's own store (never the user's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTFETCH_")}
    env.update({"CKPTFETCH_BACKOFF": "0.01", "CKPTFETCH_TIMEOUT": "2", "CKPTFETCH_RETRIES": "4", "NO_COLOR": "1",
                "CKPTFETCH_CACHE": os.environ.get("CKPTFETCH_CACHE") or _session_store()})
    # No user config.toml of whoever runs the tests (README "Configuration"); tests that want one set their own.
    env["XDG_CONFIG_HOME"] = str(Path(__file__).resolve().parent / "data" / "no-user-config")
    env.update(extra)
    return env


def _session_store() -> str:
    """A store for CLI runs made outside a test (module-level setup): under the system's temp dir, never the user's."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"ckptfetch-test-store-{os.getpid()}")


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `ckptfetch` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "ckptfetch", *args], cwd=cwd, env=env or cli_env(), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


class _Ran:
    """What `invoke` saw: the same fields as a finished subprocess."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def invoke(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> _Ran:
    """Run the CLI in this process (click's CliRunner), through the console script's own entry point.

    For options, usage errors and messages; signals, kills and concurrency need `run_cli`'s real process.
    """
    import click
    from click.testing import CliRunner

    from ckptfetch import entry

    @click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
    @click.argument("argv", nargs=-1, type=click.UNPROCESSED)
    def whole(argv: tuple[str, ...]) -> None:
        entry.main(list(argv))

    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CKPTFETCH_")}
    overrides.update(env or cli_env())
    old_cwd, old_term = os.getcwd(), signal.getsignal(signal.SIGTERM)
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(whole, list(args), env=overrides, catch_exceptions=True)
    finally:
        os.chdir(old_cwd)
        signal.signal(signal.SIGTERM, old_term)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Ran(result.exit_code, result.stdout, result.stderr)


# --- the hardening suites' figures and the `slow` marker ----------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` sweeps run only when asked: `-m slow` or CKPTFETCH_SLOW=1."""
    if os.environ.get("CKPTFETCH_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow sweep; run with CKPTFETCH_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: pytest.Config) -> None:
    """Print what the fault, crash, archive and secret suites tried (see tests/faultstats.py)."""
    from . import faultstats

    lines = faultstats.lines()
    if not lines:
        return
    tr = terminalreporter
    tr.section("hardening figures")  # type: ignore[attr-defined]
    for line in lines:
        tr.write_line(line)  # type: ignore[attr-defined]
    if os.environ.get("CKPTFETCH_FAULT_REPORT"):
        faultstats.write(os.environ["CKPTFETCH_FAULT_REPORT"])
