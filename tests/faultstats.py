"""Counters for the hardening suites: what was tried and what came of it.

The fault, crash, archive, fuzz and secret tests call `record(...)`; the
session-finish hook in conftest.py prints the totals, and writes them as JSON
to `$CKPTFETCH_FAULT_REPORT` when that is set (`python tests/fault_report.py`
does both). The figures are what the README's Guarantees section and the
closing notes quote.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_lock = threading.Lock()
faults: Counter[tuple[str, str]] = Counter()  # (kind, outcome) -> count
counters: Counter[str] = Counter()  # free-form totals: kill points, archives refused, ...
samples: dict[str, list[int]] = {}  # distributions: bytes a kill cost, ...


def record(kind: str, outcome: str) -> None:
    """One fault scenario of `kind` ended in `outcome` ("verified" or "clean-error")."""
    with _lock:
        faults[kind, outcome] += 1


def count(name: str, n: int = 1) -> None:
    """Add `n` to the named counter (e.g. "kill points", "bytes outside destination")."""
    with _lock:
        counters[name] += n


def observe(name: str, values: list[int]) -> None:
    """Add measured values to the named distribution (printed as min / median / max)."""
    with _lock:
        samples.setdefault(name, []).extend(values)


def summary() -> dict[str, Any]:
    with _lock:
        kinds = sorted({k for k, _ in faults})
        outcomes: Counter[str] = Counter()
        for (_, outcome), n in faults.items():
            outcomes[outcome] += n
        return {
            "faults_tried": sum(faults.values()),
            "kinds": len(kinds),
            "outcomes": dict(outcomes),
            "by_kind": {k: {o: n for (kk, o), n in sorted(faults.items()) if kk == k} for k in kinds},
            "counters": dict(sorted(counters.items())),
            "samples": {k: sorted(v) for k, v in sorted(samples.items())},
        }


def lines() -> list[str]:
    s = summary()
    if not s["faults_tried"] and not s["counters"] and not s["samples"]:
        return []
    out = [
        f"faults tried: {s['faults_tried']} across {s['kinds']} kinds; outcomes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
    ]
    for kind, by in s["by_kind"].items():
        out.append(f"  {kind}: " + ", ".join(f"{o} {n}" for o, n in by.items()))
    for name, n in s["counters"].items():
        out.append(f"{name}: {n}")
    for name, values in s["samples"].items():
        out.append(f"{name}: n={len(values)}, min {values[0]}, median {values[len(values) // 2]}, max {values[-1]}; "
                   f"all: {values}")
    return out


def write(path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary(), indent=1, sort_keys=True) + "\n")
