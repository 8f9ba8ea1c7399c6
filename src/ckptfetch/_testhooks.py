"""Named pause points for the crash tests. Inert unless a test sets CKPTFETCH_TEST_HOOKS.

`tests/test_crash.py` runs the real CLI with `CKPTFETCH_TEST_HOOKS=POINT` and
`CKPTFETCH_TEST_HOOKS_DIR=DIR`: when the run reaches POINT it creates
`DIR/POINT` and sleeps, so the test can SIGKILL it exactly there (between a
download and its rename, between two extracted members, ...). Without the
variable `point()` is a dictionary look-up and a return; no user sets it.
"""

from __future__ import annotations

import os
import time

_POINTS = frozenset(filter(None, os.environ.get("CKPTFETCH_TEST_HOOKS", "").split(",")))


def point(name: str) -> None:
    """Pause here for a crash test if CKPTFETCH_TEST_HOOKS names this point."""
    if name not in _POINTS:
        return
    folder = os.environ.get("CKPTFETCH_TEST_HOOKS_DIR", ".")
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)  # the test kills the process here
