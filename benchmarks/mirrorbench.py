"""Hashed mirrors on a local SeaweedFS: `mirror push` vs `aws s3 cp`, and a job's 64 ranks vs one process.

    python benchmarks/mirrorbench.py            # 1 GiB push, 5 rounds; 64 ranks over 8 x 32 MiB, 3 rounds
    python benchmarks/mirrorbench.py --quick    # 96 MiB push and 8 x 4 MiB, 2 rounds: checks the script works
    python benchmarks/mirrorbench.py --only push   (or --only ranks)

Run it from a venv where ckptfetch is installed with its test extra (`pip install -e '.[test]'`). Like
benchmarks/s3bench.py (whose helpers it uses) it installs awscli into its own venv under benchmarks/work/awscli,
starts SeaweedFS (tests/s3server.py) on free 127.0.0.1 ports with its data under benchmarks/work/seaweedfs, and
removes the store's data when it ends.

push: a folder a `get` installed the 1 GiB file into is pushed with `ckptfetch mirror push DIR s3://bench/ck`;
`aws s3 cp FILE s3://bench/aws/big.bin` sends the same file. Before each run (untimed) the object it wrote last
time is deleted, so every run uploads the whole file. Both are multipart uploads of 8 MiB parts, 10 at once. A
third contender is the same push with the folder's verified-state cache removed first, so the file is hashed
(md5 and sha256, one read) before it is sent: the cost of a first push of a folder whose sha256 nobody computed.
Alternating A B C A B C, medians.

ranks: 8 files are pushed to s3://bench/ranks; a manifest that names them by https URLs that cannot be reached
(HTTPS_PROXY points at a closed port) and pins only md5s is fetched with CKPTFETCH_HASHED_MIRRORS set (so the pins
come from the mirror's lock) by (a) one `ckptfetch get` into an empty folder, (b) 64 processes started at once on
one empty shared folder, half `ckptfetch get`, half `ckptfetch.path()` for each file, as a job's ranks would, and
(c) the same 64 processes again on the filled folder (start-up and checks only). One extra round of (b), untimed,
goes through a counting relay (tests/s3server.py) to report the GETs per object and the bytes the store sent.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from benchlib import (  # noqa: E402
    MiB,
    Run,
    compile_ckptfetch,
    ensure_debian,
    ensure_pip,
    fmt_mb,
    fmt_s,
    free_ports,
    make_file,
    markdown_table,
    measure,
    median,
)
from s3bench import WORK, alternate, awscli  # noqa: E402

BUCKET = "bench"
RANKS = 64
LAUNCH = """\
import subprocess, sys
manifest, dest, ranks, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
code = "import ckptfetch, sys\\nfor f in sys.argv[3:]:\\n    ckptfetch.path(sys.argv[1], f, dest=sys.argv[2])\\n"
procs = [subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", manifest, "--dest", dest, "-q"] if r % 2 == 0
                          else [sys.executable, "-c", code, manifest, dest, *files], stdin=subprocess.DEVNULL)
         for r in range(ranks)]
sys.exit(max(p.wait() for p in procs))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and 2 rounds, to check the script works")
    ap.add_argument("--repeats", type=int, help="timed rounds (default: push 5, ranks 3; quick 2)")
    ap.add_argument("--only", choices=("push", "ranks"), action="append", help="run only this part (repeatable)")
    ap.add_argument("--json", type=Path, help="also write the rows and every run to this file")
    args = ap.parse_args()
    parts = args.only or ["push", "ranks"]
    ensure_debian("time", "time")
    compile_ckptfetch()
    ensure_pip("boto3")
    from tests.s3server import SeaweedS3, ensure_weed

    ensure_weed()
    ckptfetch = shutil.which("ckptfetch", path=os.path.dirname(sys.executable)) or shutil.which("ckptfetch")
    if not ckptfetch:
        sys.exit("ckptfetch is not installed here; run `pip install -e '.[test]'` in a venv, then this script with its python")
    WORK.mkdir(exist_ok=True)
    shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)
    store = SeaweedS3(WORK / "seaweedfs", volumes=400)  # room for every round's upload before the store vacuums

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.datetime.now(datetime.timezone.utc)
    loads = [os.getloadavg()[0]]
    rows: list[list[str]] = []
    runs: dict[str, object] = {}
    try:
        store.start()
        store.put(BUCKET, "probe", b"")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CKPTFETCH_"))}
        env.update(store.env(WORK))
        bench = Bench(store, env, ckptfetch, args.quick, WORK / "mirror-commands.log")
        if "push" in parts:
            r, raw = bench.push(args.repeats or (2 if args.quick else 5))
            rows += r
            runs["push"] = raw
            loads.append(os.getloadavg()[0])
        if "ranks" in parts:
            r, raw = bench.ranks(args.repeats or (2 if args.quick else 3))
            rows += r
            runs["ranks"] = raw
            loads.append(os.getloadavg()[0])
    finally:
        store.stop()
        shutil.rmtree(WORK / "mirror-runs", ignore_errors=True)
        shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)
    note = (f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}, python "
            f"{platform.python_version()}, {'quick' if args.quick else 'full'} mode, 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f}")
    print("\n" + note + "\n")
    print(markdown_table(["workload", "ckptfetch", "other", "ratio"], rows))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rows": rows, "runs": runs}, indent=1, default=str))


class Bench:
    """The store, the environment and the helpers both parts share."""

    def __init__(self, store: object, env: dict[str, str], ckptfetch: str, quick: bool, log: Path) -> None:
        self.store = store
        self.env = env
        self.ck = ckptfetch
        self.quick = quick
        self.log = log
        self.runs = WORK / "mirror-runs"
        log.write_text("")

    def run(self, cmd: list[str], env: dict[str, str] | None = None) -> Run:
        with open(self.log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
        r = measure(cmd, env=env or self.env, log=self.log)
        if r.rc != 0:
            raise RuntimeError(f"command failed ({r.rc}): {' '.join(cmd)}; see {self.log}")
        return r

    def fresh(self, name: str) -> Path:
        d = self.runs / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def node(self, env: dict[str, str], name: str) -> dict[str, str]:
        """`env` with an empty store of its own (one node's): a store an earlier run filled would serve every
        file with no request to the mirror."""
        return {**env, "CKPTFETCH_CACHE": str(self.fresh(f"{name}-store"))}

    def installed(self, name: str, files: dict[str, Path]) -> tuple[Path, dict[str, str]]:
        """A folder a `get` installed `files` into (from file:// URLs), and each file's md5."""
        digests = {k: _digest(p, 'md5') for k, p in files.items()}
        m = WORK / "manifests" / f"{name}.yaml"
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(json.dumps({"ckptfetch": 1, "name": name, "files": {
            k: {"url": p.as_uri(), "md5": digests[k]} for k, p in files.items()}}))
        dest = self.fresh(f"{name}-installed")
        self.run([self.ck, "get", str(m), "--dest", str(dest), "--no-progress", "-q"])
        return dest, digests

    def push(self, repeats: int) -> tuple[list[list[str]], dict[str, object]]:
        size = 96 * MiB if self.quick else 1 << 30
        aws = awscli()
        print(f"generating data in {WORK / 'data'} (kept between runs) ...", flush=True)
        make_file(WORK / "data" / "big.bin", size, 1)
        dest, _ = self.installed("bench-push", {"big.bin": WORK / "data" / "big.bin"})
        client = self.store.client()  # type: ignore[attr-defined]
        sha = _digest(dest / "big.bin", "sha256")

        def ck() -> Run:
            client.delete_object(Bucket=BUCKET, Key=f"ck/sha256/{sha}")
            client.delete_object(Bucket=BUCKET, Key="ck/manifests/bench-push.lock.yaml")
            return self.run([self.ck, "mirror", "push", str(dest), f"s3://{BUCKET}/ck", "--no-progress"])

        def cp() -> Run:
            client.delete_object(Bucket=BUCKET, Key="aws/big.bin")
            return self.run([aws, "s3", "cp", "--quiet", str(dest / "big.bin"), f"s3://{BUCKET}/aws/big.bin"])

        def cold() -> Run:
            (dest / ".ckptfetch" / "state.sqlite").unlink(missing_ok=True)  # every digest computed again first
            return ck()

        contenders: dict[str, Callable[[], Run]] = {"ckptfetch mirror push": ck, "aws s3 cp": cp,
                                                    "ckptfetch mirror push, digests not cached": cold}
        print(f"\n== push {size // MiB} MiB to SeaweedFS", flush=True)
        both = alternate(contenders, repeats, self.store.proc.pid)  # type: ignore[attr-defined]
        wall = {k: median([r.wall for r, _ in v]) for k, v in both.items()}
        cpu = {k: median([r.cpu for r, _ in v]) for k, v in both.items()}
        srv = {k: median([s for _, s in v]) for k, v in both.items()}
        rss = {k: max(r.maxrss_kb for r, _ in v) for k, v in both.items()}
        a, b = wall["ckptfetch mirror push"], wall["aws s3 cp"]
        rows = [[f"push {size // MiB} MiB to SeaweedFS vs aws s3 cp",
                 f"{fmt_s(a)} (CPU {cpu['ckptfetch mirror push']:.2f} + store {srv['ckptfetch mirror push']:.2f} s, "
                 f"{fmt_mb(rss['ckptfetch mirror push'])})",
                 f"aws s3 cp {fmt_s(b)} (CPU {cpu['aws s3 cp']:.2f} + store {srv['aws s3 cp']:.2f} s, "
                 f"{fmt_mb(rss['aws s3 cp'])})",
                 f"{a / b:.2f}x its time (target <= 1.2x: {'met' if a / b <= 1.2 else 'NOT met'})"]]
        c = wall["ckptfetch mirror push, digests not cached"]
        rows.append(["the same, the folder's digests not cached (md5 and sha256 computed first)",
                     f"{fmt_s(c)} (CPU {cpu['ckptfetch mirror push, digests not cached']:.2f} s)",
                     f"aws s3 cp {fmt_s(b)}", f"{c / b:.2f}x its time"])
        return rows, {k: [{**r.__dict__, "server_cpu": s} for r, s in v] for k, v in both.items()}

    def ranks(self, repeats: int) -> tuple[list[list[str]], dict[str, object]]:
        n, each = 8, (4 if self.quick else 32) * MiB
        files = {f"part{i}.bin": WORK / "data" / f"rank-{i}-{each // MiB}.bin" for i in range(n)}
        for i, p in enumerate(files.values()):
            make_file(p, each, 100 + i)
        dest, digests = self.installed("bench-ranks-src", files)
        self.run([self.ck, "mirror", "push", str(dest), f"s3://{BUCKET}/ranks", "--no-progress"])
        # What the ranks fetch: the same files under unreachable https URLs, md5 pins only; the mirror lends sha256s.
        m = WORK / "manifests" / "bench-ranks-src.yaml"  # same name as pushed: the mirror's lock is found by it
        site = WORK / "manifests" / "site"
        site.mkdir(parents=True, exist_ok=True)
        (site / m.name).write_text(json.dumps({"ckptfetch": 1, "name": "bench-ranks-src", "files": {
            k: {"url": f"https://dl.example.org/{k}", "md5": d} for k, d in digests.items()}}))
        manifest = site / m.name
        env = {**self.env, "CKPTFETCH_HASHED_MIRRORS": f"s3://{BUCKET}/ranks", "NO_PROXY": "127.0.0.1",
               "HTTPS_PROXY": f"http://127.0.0.1:{free_ports(1)[0]}"}
        launcher = WORK / "launch-ranks.py"
        launcher.write_text(LAUNCH)
        shared = self.runs / "shared"

        def one() -> Run:
            return self.run([self.ck, "get", str(manifest), "--dest", str(self.fresh("one")), "-q"], self.node(env, "one"))

        def many() -> Run:
            shutil.rmtree(shared, ignore_errors=True)
            return self.run([sys.executable, str(launcher), str(manifest), str(shared), str(RANKS), *files],
                            self.node(env, "many"))

        def present() -> Run:
            return self.run([sys.executable, str(launcher), str(manifest), str(shared), str(RANKS), *files], env)

        contenders: dict[str, Callable[[], Run]] = {"1 process": one, f"{RANKS} ranks": many,
                                                    f"{RANKS} ranks, files present": present}
        total = n * each
        print(f"\n== {n} x {each // MiB} MiB from the hashed mirror: 1 process vs {RANKS} ranks", flush=True)
        res = alternate(contenders, repeats, self.store.proc.pid)  # type: ignore[attr-defined]
        counted = self.count_requests(manifest, env, launcher, list(files), digests, shared)
        wall = {k: median([r.wall for r, _ in v]) for k, v in res.items()}
        cpu = {k: median([r.cpu for r, _ in v]) for k, v in res.items()}
        rows = [
            [f"{n} x {each // MiB} MiB from the s3 hashed mirror: {RANKS} ranks on one folder vs 1 process",
             f"{fmt_s(wall[f'{RANKS} ranks'])} (CPU {cpu[f'{RANKS} ranks']:.1f} s)",
             f"1 process {fmt_s(wall['1 process'])} (CPU {cpu['1 process']:.1f} s)",
             f"{wall[f'{RANKS} ranks'] / wall['1 process']:.1f}x its time"],
            [f"{RANKS} ranks on the filled folder (start-up and checks only)",
             f"{fmt_s(wall[f'{RANKS} ranks, files present'])} (CPU {cpu[f'{RANKS} ranks, files present']:.1f} s)",
             "", f"{wall[f'{RANKS} ranks, files present'] / RANKS * 1000:.0f} ms per rank"],
            [f"{RANKS} ranks through a counting relay (untimed)", counted, f"{total // MiB} MiB in the manifest", ""],
        ]
        return rows, {k: [{**r.__dict__, "server_cpu": s} for r, s in v] for k, v in res.items()}

    def count_requests(self, manifest: Path, env: dict[str, str], launcher: Path, files: list[str],
                       digests: dict[str, str], shared: Path) -> str:
        """One more 64-rank run through the relay: GETs per object and bytes the store sent."""
        from tests.s3server import Relay

        shutil.rmtree(shared, ignore_errors=True)
        with Relay(self.store.ports["s3.port"]) as relay:  # type: ignore[attr-defined]
            self.run([sys.executable, str(launcher), str(manifest), str(shared), str(RANKS), *files],
                     {**self.node(env, "counted"), "AWS_ENDPOINT_URL": relay.endpoint})
            sent = relay.settle()
            gets = [p for m, p in relay.requests if m == "GET" and "/sha256/" in p]
            per = {p: gets.count(p) for p in set(gets)}
            lock = sum(1 for _, p in relay.requests if p.endswith(".lock.yaml"))
        return (f"{len(per)} objects, GETs per object {min(per.values())}-{max(per.values())} (ranged pieces), "
                f"{sent / MiB:.0f} MiB sent by the store; {lock} requests for the mirror's lock")


def _digest(path: Path, algo: str) -> str:
    import hashlib

    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    main()
