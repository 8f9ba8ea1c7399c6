"""The engine's knobs and the one HTTP session of a run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter

from .._version import __version__

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
    chunk_size: int = 1 << 20
    connections: int = 8  # per large file, when the server takes byte ranges
    per_host: int = 16  # extra connections to one host, across all files
    sleep: Callable[[float], None] = time.sleep
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_env(cls) -> Settings:
        """Defaults, overridden by CKPTFETCH_RETRIES / _TIMEOUT / _BACKOFF."""
        s = cls()
        env = os.environ
        if env.get("CKPTFETCH_RETRIES", "").isdigit():
            s.retries = int(env["CKPTFETCH_RETRIES"])
        if env.get("CKPTFETCH_CONNECTIONS", "").isdigit():
            s.connections = max(1, int(env["CKPTFETCH_CONNECTIONS"]))
        for key, attr in (("CKPTFETCH_TIMEOUT", "read_timeout"), ("CKPTFETCH_BACKOFF", "backoff")):
            try:
                setattr(s, attr, float(env[key]))
            except (KeyError, ValueError):
                pass
        if "CKPTFETCH_TIMEOUT" in env:
            s.connect_timeout = min(s.connect_timeout, s.read_timeout)
        return s


def make_session(pool_size: int = 8) -> requests.Session:
    """One pooled session for every download of a run.

    Proxies and CA bundles come from requests' usual environment variables
    (HTTPS_PROXY, REQUESTS_CA_BUNDLE, ...), as `trust_env` is left on.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"  # bytes as stored, so ranges and sizes mean what they say
    return session
