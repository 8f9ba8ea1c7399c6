"""Plain-text rendering shared by the click CLI and its fast entry path.

No click, rich or yaml here: `ckptfetch verify` and `--version` run through
this module without loading them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import VerifyResult


def emit_json(doc: Any) -> None:
    """The one JSON document a `--json` command prints on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def print_verify(result: VerifyResult, quiet: bool, as_json: bool) -> None:
    """`PATH: STATUS` lines on stdout like `md5sum -c`; on stderr a summary, then each FAILED or MISSING file
    with why and the command that repairs it. With `quiet`, nothing at all when every file is OK."""
    if as_json:
        emit_json(result.to_json())
        return
    out = [f"{item.path}: {item.status}\n" for item in result.items if not (quiet and item.status == "OK")]
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    if quiet and result.ok:
        return
    counts = result.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in ("OK", "FAILED", "MISSING", "UNLISTED") if counts.get(k))
    n = len(result.items)
    err = [f"ckptfetch: {n} file{'' if n == 1 else 's'} in {result.dest}: {summary or 'nothing listed'}\n"]
    for i in result.items:
        if i.status in ("FAILED", "MISSING") and (i.detail or i.repair):
            why = i.detail or str(i.status).lower()
            err.append(f"ckptfetch: {i.path}: {why}" + (f"; run: {i.repair}" if i.repair else "") + "\n")
    sys.stderr.write("".join(err))
