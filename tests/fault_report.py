"""Run the hardening suites and print their figures.

    python tests/fault_report.py            # the default (CI-sized) runs
    python tests/fault_report.py --slow     # plus the slow sweeps (60 seeds per fault kind and mode, more kills)
    python tests/fault_report.py --json     # the figures as JSON

Figures: faults tried, fault kinds, outcomes (verified / clean-error), kill
points, hostile archives refused, bytes written outside the destination,
outputs checked for secrets and leaks found, fuzzed manifests. They come from
tests/faultstats.py, filled in by the tests themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SUITES = ["test_faults.py", "test_crash.py", "test_concurrency.py", "test_archives_hostile.py",
          "test_manifest_fuzz.py", "test_secrets.py", "test_disk.py"]


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    if "--slow" in argv:
        env["CKPTFETCH_SLOW"] = "1"
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "report.json"
        env["CKPTFETCH_FAULT_REPORT"] = str(report)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(here / s) for s in SUITES)],
                           cwd=here.parent, env=env, capture_output=True, text=True)
        tail = r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else []
        figures = json.loads(report.read_text()) if report.exists() else {}
    figures["pytest"] = {"exit_code": r.returncode, "summary": tail[0] if tail else ""}
    if "--json" in argv:
        print(json.dumps(figures, indent=1, sort_keys=True))
    else:
        print(f"pytest: {figures['pytest']['summary']} (exit {r.returncode})")
        print(f"faults tried: {figures.get('faults_tried', 0)} across {figures.get('kinds', 0)} kinds; "
              f"outcomes: {figures.get('outcomes', {})}")
        for name, n in figures.get("counters", {}).items():
            print(f"{name}: {n}")
    if r.returncode != 0:
        print(r.stdout[-4000:], file=sys.stderr)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
