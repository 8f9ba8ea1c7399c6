"""The engine's knobs and the one HTTP session of a run."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .._version import __version__
from ..errors import UsageError

if TYPE_CHECKING:
    from requests.sessions import _Settings  # the stub's name for what requests returns here

USER_AGENT = f"ckptfetch/{__version__} (+https://github.com/ckptfetch/ckptfetch) python-requests/{requests.__version__}"


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


class RunSession(requests.Session):
    """A session that reads the environment's proxy and CA settings once per origin.

    requests looks them up again for every request (scanning every environment
    variable three times to match NO_PROXY): for hundreds of small files that
    was a fifth of a run's CPU. A run's environment does not change under it,
    and the answer depends only on the scheme and host (with port) of the URL.
    """

    def __init__(self) -> None:
        super().__init__()
        self._per_origin: dict[tuple[object, ...], _Settings] = {}

    def merge_environment_settings(self, url: str | bytes | None, proxies: MutableMapping[str, str] | None,
                                   stream: bool | None, verify: bool | str | None,
                                   cert: str | tuple[str, str] | None) -> _Settings:
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        known = self._per_origin.get(key)
        if known is None:
            known = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._per_origin[key] = known
        mine: _Settings = {**known, "proxies": dict(known["proxies"])}  # the caller may change its copy
        return mine


def make_session(pool_size: int = 8) -> requests.Session:
    """One pooled session for every download of a run.

    Proxies and CA bundles come from requests' usual environment variables
    (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, ...), as `trust_env` is left
    on; they are read once per origin (`RunSession`).
    """
    session = RunSession()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"  # bytes as stored, so ranges and sizes mean what they say
    return session
