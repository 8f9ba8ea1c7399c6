"""The one HTTP session of a run: pooled connections, proxies read once per origin.

Apart from `settings.py` so that a run with nothing to download (every file
present) never imports requests: the session is made on first use.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .._version import __version__

if TYPE_CHECKING:
    from requests.sessions import _Settings  # the stub's name for what requests returns here

USER_AGENT = f"ckptfetch/{__version__} (+https://github.com/ckptfetch/ckptfetch) python-requests/{requests.__version__}"


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
