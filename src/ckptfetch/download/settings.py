"""The engine's knobs, from their defaults and the environment (no HTTP library: `session.py` has the session)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass
class Settings:
    """Knobs for the engine. Tests pass a fake `sleep` and short timeouts."""

    retries: int = 5  # failed attempts in a row without progress before giving up
    backoff: float = 0.5  # first backoff, doubled each time, with jitter
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    chunk_size: int = 1 << 20  # the most one read takes from a connection
    connections: int = 16  # per large file, when the server takes byte ranges
    per_host: int = 16  # connections to one host at once, across all files and pieces of a run
    speed_limit: int = 1024  # bytes/s: a connection slower than this for `speed_time` is dropped (0: never)
    speed_time: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_env(cls) -> Settings:
        """Defaults, overridden by CKPTFETCH_RETRIES, _CONNECTIONS, _TIMEOUT, _BACKOFF, _SPEED_LIMIT, _SPEED_TIME.

        A value that is set (not empty) but not what the variable takes is a
        `UsageError` naming the variable, never ignored.
        """
        s = cls()
        s.retries = _env_int("CKPTFETCH_RETRIES", s.retries, 0, "a whole number of failed attempts, 0 or more")
        s.connections = _env_int("CKPTFETCH_CONNECTIONS", s.connections, 1,
                                 "a whole number of connections per file, 1 or more")
        s.speed_limit = _env_int("CKPTFETCH_SPEED_LIMIT", s.speed_limit, 0,
                                 "a whole number of bytes per second, 0 or more (0: no minimum speed)")
        if _env("CKPTFETCH_TIMEOUT") is not None:
            s.read_timeout = _env_float("CKPTFETCH_TIMEOUT", s.read_timeout, positive=True)
            s.connect_timeout = min(s.connect_timeout, s.read_timeout)
        s.backoff = _env_float("CKPTFETCH_BACKOFF", s.backoff, positive=False)
        s.speed_time = _env_float("CKPTFETCH_SPEED_TIME", s.speed_time, positive=True)
        return s


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None  # set but empty counts as unset


def _env_int(name: str, default: int, least: int, takes: str) -> int:
    value = _env(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < least:
        raise UsageError(f"{name}={value!r} is not valid: it takes {takes} (default {default}).")
    return int(value)


def _env_float(name: str, default: float, positive: bool) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        takes = "a number of seconds, more than 0" if positive else "a number of seconds, 0 or more"
        raise UsageError(f"{name}={value!r} is not valid: it takes {takes} (default {default:g}).")
    return number
