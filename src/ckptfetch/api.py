"""The library API the CLI is a skin over: `plan`, `fetch`, `verify`, `make_lock` and `path`, with their results.

A facade: each name lives in the module that owns its stage (ARCHITECTURE.md
lists them). Nothing inside the package imports this module.

>>> import ckptfetch
>>> result = ckptfetch.fetch("sam-pt", variants=["minimal"])  # doctest: +SKIP
>>> result.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

from .concrete import check_entry, located
from .describe import describe_pin, describe_source, relies_on_nothing
from .errors import DownloadError
from .firstuse import path
from .lockmaker import LockResult, make_lock
from .planning import plan
from .results import FetchResult, FileOutcome, Plan, PlanItem, VerifyItem, VerifyResult
from .run import fetch
from .verifying import verify

__all__ = [
    "DownloadError", "FetchResult", "FileOutcome", "LockResult", "Plan", "PlanItem", "VerifyItem", "VerifyResult",
    "check_entry", "describe_pin", "describe_source", "fetch", "located", "make_lock", "path", "plan",
    "relies_on_nothing", "verify",
]
