"""ckptfetch: fetch and verify machine-learning checkpoints from YAML manifests.

The public API is what this module re-exports. Heavy modules load on first
use, so `ckptfetch --version` and `--help` start fast.
"""

from __future__ import annotations

from ._version import __version__

# Not `from typing import TYPE_CHECKING`: typing costs ~5 ms, a third of the
# interpreter's start-up, and every `ckptfetch` command imports this package.
TYPE_CHECKING = False

__all__ = [
    "CkptfetchError", "DownloadError", "Error", "FetchFailed", "FetchResult", "HashMismatch", "Interrupted", "Manifest",
    "ManifestError", "ManualFileNeeded", "Store", "UnsafeArchive", "UsageError", "VerifyResult", "__version__",
    "cache_gc", "cache_list", "cache_usage", "cache_verify", "fetch", "load_manifest", "open_store", "path", "plan",
    "verify",
]

# Each name from the module that owns it (what `api` re-exports), so `ckptfetch.path` loads the first-use
# stage alone, not every stage the facade names.
_LAZY = {
    "fetch": "fetching", "plan": "planning", "verify": "verifying", "path": "firstuse", "FetchResult": "results",
    "VerifyResult": "results", "Store": "store", "open_store": "store", "cache_list": "api", "cache_usage": "api",
    "cache_verify": "api", "cache_gc": "api",
    "Manifest": "manifest", "load_manifest": "manifest",
    "CkptfetchError": "errors", "DownloadError": "errors", "HashMismatch": "errors", "Interrupted": "errors",
    "ManifestError": "errors", "UnsafeArchive": "errors", "UsageError": "errors", "Error": "errors",
    "FetchFailed": "errors", "ManualFileNeeded": "errors",
}

if TYPE_CHECKING:
    from typing import Any

    from .api import (
        FetchResult,
        Store,
        VerifyResult,
        cache_gc,
        cache_list,
        cache_usage,
        cache_verify,
        fetch,
        open_store,
        path,
        plan,
        verify,
    )
    from .errors import (
        CkptfetchError,
        DownloadError,
        Error,
        FetchFailed,
        HashMismatch,
        Interrupted,
        ManifestError,
        ManualFileNeeded,
        UnsafeArchive,
        UsageError,
    )
    from .manifest import Manifest, load_manifest


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ckptfetch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
