"""The library API the CLI is a skin over: `plan`, `fetch`, `verify`, `make_lock`, `path` and the store's
`open_store` / `cache_list` / `cache_usage` / `cache_verify` / `cache_gc`, with their results.

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
from .fetching import fetch
from .firstuse import path
from .housekeeping import Collected, ObjectCheck, ObjectInfo, Usage
from .housekeeping import collect as cache_gc
from .housekeeping import survey as cache_list
from .housekeeping import usage as cache_usage
from .housekeeping import verify_store as cache_verify
from .lockmaker import LockResult, make_lock
from .planning import plan
from .results import FetchResult, FileOutcome, Plan, PlanItem, VerifyItem, VerifyResult
from .store import Store, StoreError, open_store
from .verifying import verify

__all__ = [
    "Collected", "DownloadError", "FetchResult", "FileOutcome", "LockResult", "ObjectCheck", "ObjectInfo", "Plan",
    "PlanItem", "Store", "StoreError", "Usage", "VerifyItem", "VerifyResult", "cache_gc", "cache_list",
    "cache_usage", "cache_verify", "check_entry", "describe_pin", "describe_source", "fetch", "located",
    "make_lock", "open_store", "path", "plan", "relies_on_nothing", "verify",
]
