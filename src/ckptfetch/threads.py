"""Doing independent things side by side: checking files, listing folders, a run's downloads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import Interrupted

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


def run_all(tasks: list[Callable[[], None]], jobs: int, cancel: threading.Event) -> None:
    """Run tasks on a pool; Ctrl-C sets `cancel`, waits for workers, raises Interrupted."""
    if not tasks:
        return
    import concurrent.futures as cf

    pool = cf.ThreadPoolExecutor(max_workers=min(jobs, len(tasks)), thread_name_prefix="ckptfetch")
    futures = [pool.submit(t) for t in tasks]
    try:
        pending = set(futures)
        while pending:
            _, pending = cf.wait(pending, timeout=0.2)
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted() from None
    pool.shutdown(wait=True)
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc


__all__ = ["parallel", "run_all"]
