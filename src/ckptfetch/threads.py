"""Doing independent things side by side: checking files, listing folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """`[fn(i) for i in items]` on a few threads, results in order; the first exception is raised.

    Hashing releases the GIL and network waits do too, so files are checked and folders listed side by side.
    """
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    import concurrent.futures as cf

    workers = workers or min(len(items), max(2, os.cpu_count() or 2))
    with cf.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


__all__ = ["parallel"]
