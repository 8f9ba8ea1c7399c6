"""The one backoff policy: how long to wait before trying again, and waiting so a cancel stops it.

Every retry loop of ckptfetch uses it: the engine's attempts, each piece of a
segmented download, and the Hub metadata requests of `sources.huggingface`.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from ..errors import Interrupted

if TYPE_CHECKING:
    from .settings import Settings


def delay(failures: int, retry_after: float | None, settings: Settings) -> float:
    """Seconds to wait after `failures` failed attempts in a row.

    The server's Retry-After when it sent one, else an exponential backoff
    from `settings.backoff`, capped at `settings.backoff_max`, with ±50 %
    jitter so many clients do not come back at once. Never more than
    `settings.retry_after_max`.

    >>> from ckptfetch.download.settings import Settings
    >>> delay(3, 7.0, Settings())
    7.0
    >>> 0.5 <= delay(2, None, Settings(backoff=0.5)) <= 1.5
    True
    """
    if retry_after is None:
        base = min(settings.backoff_max, settings.backoff * (2 ** max(0, failures - 1)))
        retry_after = base * random.uniform(0.5, 1.5)
    return min(retry_after, settings.retry_after_max)


def waits_too_long(retry_after: float | None, settings: Settings) -> bool:
    """Whether a server's Retry-After asks for more than ckptfetch waits (the engine gives up at once)."""
    return retry_after is not None and retry_after > settings.retry_after_max


def pause(seconds: float, settings: Settings) -> None:
    """Sleep `seconds` in short steps; raises `Interrupted` as soon as `settings.cancel` is set."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if settings.cancel.is_set():
            raise Interrupted()
        settings.sleep(min(left, 0.25))
