"""ckptfetch against curl, wget, aria2c, md5sum and pooch, side by side.

    python benchmarks/run.py            # full run (1 GiB files, 5 rounds, 3 when throttled; ~12 minutes)
    python benchmarks/run.py --quick    # small sizes, 1-2 repeats: checks the suite works

Run it from a venv where ckptfetch is installed (`pip install -e .`). It installs
nginx, aria2, curl and wget (Debian) and pooch (pip) when missing, starts its own
nginx on free 127.0.0.1 ports with a private prefix under benchmarks/work/, a
delaying proxy for the many-files workload, generates the data, runs every
workload alternating A B A B, prints medians, peak RSS and ratios, and stops
its servers on exit. See benchmarks/README.md.
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    DelayProxy,
    MiB,
    Nginx,
    Run,
    bytes_sent,
    compile_ckptfetch,
    drop_caches,
    ensure_debian,
    ensure_pip,
    fmt_mb,
    fmt_s,
    make_file,
    markdown_table,
    measure,
    median,
    write_manifest,
)

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
os.environ["CKPTFETCH_CACHE"] = str(WORK / "store")  # never the user's store, should a run use one


@dataclass
class Row:
    workload: str
    ckptfetch: str
    other: str
    ratio: str
    target: str
    met: bool | None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class Config:
    big: int
    mid: int
    small_count: int
    small_size: int
    verify_count: int
    verify_size: int
    repeats: int
    throttled_repeats: int
    startup_repeats: int
    delay: float
    quick: bool


FULL = Config(big=1 << 30, mid=256 * MiB, small_count=300, small_size=MiB, verify_count=4, verify_size=256 * MiB,
              repeats=5, throttled_repeats=3, startup_repeats=21, delay=0.05, quick=False)
QUICK = Config(big=96 * MiB, mid=32 * MiB, small_count=40, small_size=MiB, verify_count=4, verify_size=24 * MiB,
               repeats=2, throttled_repeats=1, startup_repeats=7, delay=0.05, quick=True)


class Bench:
    def __init__(self, cfg: Config, only: set[str] | None, runs: Path | None = None) -> None:
        self.cfg = cfg
        self.only = only
        self.rows: list[Row] = []
        self.log = WORK / "commands.log"
        self.data = WORK / "data"
        self.runs = runs or WORK / "runs"
        bindir = Path(sys.executable).parent
        exe = bindir / "ckptfetch"
        if not exe.exists():
            found = shutil.which("ckptfetch")
            if not found:
                sys.exit("ckptfetch is not installed here; run `pip install -e .` in a venv, then this script with its python")
            exe = Path(found)
        self.ckptfetch = str(exe)
        self.nginx: Nginx | None = None
        self.proxy: DelayProxy | None = None
        self.cold = True
        self.loads: list[float] = []

    # -- setup ----------------------------------------------------------------------

    def setup(self) -> None:
        for binary, package in (("nginx", "nginx"), ("aria2c", "aria2"), ("curl", "curl"), ("wget", "wget"),
                                ("md5sum", "coreutils")):
            ensure_debian(binary, package)
        ensure_debian("time", "time")  # GNU time reports the peak RSS of each run
        ensure_pip("pooch")
        compile_ckptfetch()
        WORK.mkdir(exist_ok=True)
        shutil.rmtree(self.runs, ignore_errors=True)
        self.runs.mkdir(parents=True)
        self.log.write_text("")
        print(f"generating data in {self.data} (kept between runs) ...", flush=True)
        c = self.cfg
        self.md5: dict[str, str] = {}
        self.md5["big.bin"] = make_file(self.data / "big.bin", c.big, 1)
        self.md5["mid.bin"] = make_file(self.data / "mid.bin", c.mid, 2)
        for i in range(c.small_count):
            self.md5[f"small/f{i:03d}.bin"] = make_file(self.data / "small" / f"f{i:03d}.bin", c.small_size, 100 + i)
        for i in range(c.verify_count):
            self.md5[f"verify/v{i}.bin"] = make_file(self.data / "verify" / f"v{i}.bin", c.verify_size, 10 + i)
        self.nginx = Nginx(ensure_debian("nginx", "nginx"), WORK / "nginx", self.data)
        self.nginx.start()
        self.proxy = DelayProxy(self.nginx.plain, c.delay)
        print(f"nginx plain :{self.nginx.plain}, throttled (20 MB/s per connection) :{self.nginx.throttled}, "
              f"{c.delay * 1000:.0f} ms delaying proxy :{self.proxy.port}", flush=True)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None

    # -- helpers ---------------------------------------------------------------------

    def url(self, port: int, name: str) -> str:
        return f"http://127.0.0.1:{port}/{name}"

    def fresh(self, name: str) -> Path:
        d = self.runs / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def run(self, cmd: list[str], cwd: Path | None = None, check: bool = True) -> Run:
        with open(self.log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
        r = measure(cmd, cwd=cwd, log=self.log)
        if check and r.rc != 0:
            raise RuntimeError(f"command failed ({r.rc}): {' '.join(cmd)}; see {self.log}")
        return r

    def get(self, manifest: Path, dest: Path, *extra: str) -> list[str]:
        # The engine against the other tools: --no-cache, or every round after the first would come from the
        # store. What the store costs a first download and saves later ones is benchmarks/store.py's.
        return [self.ckptfetch, "get", str(manifest), "--dest", str(dest), "--no-progress", "--no-cache", *extra]

    def warm(self, *paths: Path) -> None:
        """Read the server's files into the page cache, so every tool starts from the same state."""
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                while f.read(16 * MiB):
                    pass

    def alternate(self, contenders: dict[str, Callable[[], Run]], repeats: int, warmup: bool = False) -> dict[str, list[Run]]:
        """Run each contender once per round, A B A B ..., syncing before each run.

        With `warmup`, one untimed round first: the first GiB written after other work
        makes the kernel reclaim page cache, which would land on whichever tool runs first.
        """
        out: dict[str, list[Run]] = {k: [] for k in contenders}
        if warmup:
            for name, fn in contenders.items():
                os.sync()
                run = fn()
                print(f"  warm-up: {name:<35} {fmt_s(run.wall):>9}  (not counted)", flush=True)
        for r in range(repeats):
            for name, fn in contenders.items():
                os.sync()
                run = fn()
                out[name].append(run)
                print(f"  round {r + 1}: {name:<34} {fmt_s(run.wall):>9}  CPU {run.cpu:5.2f} s  peak RSS {fmt_mb(run.maxrss_kb)}",
                      flush=True)
        return out

    def loadavg(self) -> None:
        """Remember the 1-minute load average: other processes on the cores skew CPU-bound ratios."""
        self.loads.append(os.getloadavg()[0])

    def wanted(self, key: str) -> bool:
        return self.only is None or key in self.only

    # -- workloads ------------------------------------------------------------------------

    def w_plain(self) -> None:
        assert self.nginx
        c = self.cfg
        label = f"{c.big // MiB} MiB file, download + md5 check"
        print(f"\n== {label} (plain nginx)", flush=True)
        url = self.url(self.nginx.plain, "big.bin")
        man = write_manifest(WORK / "manifests" / "bench-big-plain.yaml", {"big.bin": (url, self.md5["big.bin"])})
        sums = WORK / "big.md5"
        sums.write_text(f"{self.md5['big.bin']}  big.bin\n")
        self.warm(self.data / "big.bin")

        def ck() -> Run:
            d = self.fresh("plain-ck")
            return self.run(self.get(man, d))

        def curl() -> Run:
            d = self.fresh("plain-curl")
            return self.run(["sh", "-c", f"curl -sS -o big.bin {url} && md5sum -c --quiet {sums}"], cwd=d)

        res = self.alternate({"ckptfetch get": ck, "curl -o f && md5sum f": curl}, c.repeats, warmup=True)
        t_ck, t_curl = median([r.wall for r in res["ckptfetch get"]]), median([r.wall for r in res["curl -o f && md5sum f"]])
        cpu_ck, cpu_curl = median([r.cpu for r in res["ckptfetch get"]]), median([r.cpu for r in res["curl -o f && md5sum f"]])
        ratio = t_ck / t_curl
        fs = _fs_type(self.runs)
        target = 0.65 if fs == "tmpfs" else 0.75  # on tmpfs the disk is out of the comparison
        self.rows.append(Row(f"{label} ({fs})", f"{fmt_s(t_ck)} (CPU {cpu_ck:.2f} s)",
                             f"curl+md5sum {fmt_s(t_curl)} (CPU {cpu_curl:.2f} s)", f"{ratio:.2f}x its time",
                             f"<= {target}x", ratio <= target,
                             {"ckptfetch": [r.wall for r in res["ckptfetch get"]],
                              "curl": [r.wall for r in res["curl -o f && md5sum f"]]}))
        self.plain_rss = [r.maxrss_kb for r in res["ckptfetch get"]]
        shutil.rmtree(self.runs / "plain-ck", ignore_errors=True)
        shutil.rmtree(self.runs / "plain-curl", ignore_errors=True)

    def w_throttled(self) -> None:
        assert self.nginx
        c = self.cfg
        label = f"{c.big // MiB} MiB, 20 MB/s per connection"
        print(f"\n== {label} (nginx limit_rate 20m)", flush=True)
        url = self.url(self.nginx.throttled, "big.bin")
        man = write_manifest(WORK / "manifests" / "bench-big-throttled.yaml", {"big.bin": (url, self.md5["big.bin"])})
        sums = WORK / "big.md5"
        sums.write_text(f"{self.md5['big.bin']}  big.bin\n")
        self.warm(self.data / "big.bin")

        def ck() -> Run:
            return self.run(self.get(man, self.fresh("thr-ck")))

        def curl() -> Run:
            return self.run(["sh", "-c", f"curl -sS -o big.bin {url} && md5sum -c --quiet {sums}"], cwd=self.fresh("thr-curl"))

        def aria(split: int) -> Callable[[], Run]:
            def run() -> Run:
                return self.run(["aria2c", f"-x{split}", f"-s{split}", "-q", "--allow-overwrite=true",
                                 "--auto-file-renaming=false", f"--checksum=md5={self.md5['big.bin']}",
                                 "-d", str(self.fresh(f"thr-aria{split}")), "-o", "big.bin", url])
            return run

        res = self.alternate({"ckptfetch get": ck, "curl && md5sum": curl, "aria2c -x4 -s4 --checksum": aria(4),
                              "aria2c -x16 -s16 --checksum": aria(16)}, c.throttled_repeats)
        t_ck = median([r.wall for r in res["ckptfetch get"]])
        t_curl = median([r.wall for r in res["curl && md5sum"]])
        self.rows.append(Row(label + " vs curl", fmt_s(t_ck), f"curl+md5sum {fmt_s(t_curl)}", f"{t_curl / t_ck:.2f}x faster",
                             ">= 3.6x faster", t_curl / t_ck >= 3.6, _walls(res)))
        for split in (4, 16):
            t_aria = median([r.wall for r in res[f"aria2c -x{split} -s{split} --checksum"]])
            self.rows.append(Row(label + f" vs aria2c -x{split}", fmt_s(t_ck), f"aria2c -x{split} -s{split} {fmt_s(t_aria)}",
                                 f"{t_aria / t_ck:.2f}x faster", ">= 1.0x", t_aria / t_ck >= 1.0))
        for d in ("thr-ck", "thr-curl", "thr-aria4", "thr-aria16"):
            shutil.rmtree(self.runs / d, ignore_errors=True)

    def w_many(self) -> None:
        assert self.proxy
        c = self.cfg
        label = f"{c.small_count} files x {c.small_size // MiB} MiB, {c.delay * 1000:.0f} ms to first byte"
        print(f"\n== {label}", flush=True)
        names = [f"f{i:03d}.bin" for i in range(c.small_count)]
        urls = {n: self.url(self.proxy.port, f"small/{n}") for n in names}
        man = write_manifest(WORK / "manifests" / "bench-many.yaml",
                             {n: (urls[n], self.md5[f"small/{n}"]) for n in names})
        wget_list = WORK / "many-wget.txt"
        wget_list.write_text("".join(urls[n] + "\n" for n in names))
        aria_list = WORK / "many-aria2.txt"
        aria_list.write_text("".join(f"{urls[n]}\n  out={n}\n  checksum=md5={self.md5['small/' + n]}\n" for n in names))
        self.warm(*(self.data / "small" / n for n in names))

        def ck() -> Run:
            return self.run(self.get(man, self.fresh("many-ck")))

        def wget() -> Run:
            return self.run(["wget", "-q", "-i", str(wget_list), "-P", str(self.fresh("many-wget"))])

        def aria(jobs: int) -> Callable[[], Run]:
            def run() -> Run:
                return self.run(["aria2c", f"-j{jobs}", "-q", "--allow-overwrite=true", "--auto-file-renaming=false",
                                 "-i", str(aria_list), "-d", str(self.fresh(f"many-aria{jobs}"))])
            return run

        res = self.alternate({"ckptfetch get": ck, "wget -i list": wget, "aria2c -j8 -i list": aria(8),
                              "aria2c -j16 -i list": aria(16)}, c.repeats)
        t_ck = median([r.wall for r in res["ckptfetch get"]])
        t_wget = median([r.wall for r in res["wget -i list"]])
        self.rows.append(Row(label + " vs wget", fmt_s(t_ck), f"wget -i {fmt_s(t_wget)}", f"{t_wget / t_ck:.2f}x faster",
                             ">= 3x faster", t_wget / t_ck >= 3, _walls(res)))
        for jobs in (8, 16):
            t_aria = median([r.wall for r in res[f"aria2c -j{jobs} -i list"]])
            self.rows.append(Row(label + f" vs aria2c -j{jobs}", fmt_s(t_ck), f"aria2c -j{jobs} {fmt_s(t_aria)}",
                                 f"{t_aria / t_ck:.2f}x faster", ">= 1.0x", t_aria / t_ck >= 1.0))

    def w_verify(self) -> None:
        assert self.nginx
        c = self.cfg
        label = f"verify {c.verify_count} x {c.verify_size // MiB} MiB"
        print(f"\n== {label}", flush=True)
        names = [f"v{i}.bin" for i in range(c.verify_count)]
        man = write_manifest(WORK / "manifests" / "bench-verify.yaml",
                             {n: (self.url(self.nginx.plain, f"verify/{n}"), self.md5[f"verify/{n}"]) for n in names})
        dest = self.fresh("verify")
        self.run(self.get(man, dest))  # what a user has after `get`: the files and DIR/.ckptfetch/record.json
        sums = WORK / "verify.md5"
        sums.write_text("".join(f"{self.md5['verify/' + n]}  {n}\n" for n in names))
        state = dest / ".ckptfetch"

        def forget() -> None:
            for p in state.glob("state.sqlite*"):
                p.unlink()

        self.cold = drop_caches()
        if not self.cold:
            print("  cannot drop the page cache (not root?): both tools are measured warm", flush=True)

        def ck_cold() -> Run:
            forget()
            drop_caches()
            return self.run([self.ckptfetch, "verify", str(dest)])

        def md5_cold() -> Run:
            drop_caches()
            return self.run(["md5sum", "-c", "--quiet", str(sums)], cwd=dest)

        res = self.alternate({"ckptfetch verify (cold, no cache)": ck_cold, "md5sum -c (cold)": md5_cold}, c.repeats)
        t_ck = median([r.wall for r in res["ckptfetch verify (cold, no cache)"]])
        t_md5 = median([r.wall for r in res["md5sum -c (cold)"]])
        cpu_ck = median([r.cpu for r in res["ckptfetch verify (cold, no cache)"]])
        cpu_md5 = median([r.cpu for r in res["md5sum -c (cold)"]])
        state_word = "cold" if self.cold else "warm (page cache could not be dropped)"
        self.rows.append(Row(f"{label}, {state_word}", f"{fmt_s(t_ck)} (CPU {cpu_ck:.2f} s)",
                             f"md5sum -c {fmt_s(t_md5)} (CPU {cpu_md5:.2f} s)", f"{t_ck / t_md5:.2f}x its time",
                             "<= 0.6x", t_ck / t_md5 <= 0.6))

        # Again, nothing changed: ckptfetch has its cache; md5sum gets a warm page cache (its best case).
        self.run([self.ckptfetch, "verify", str(dest)])
        self.run(["md5sum", "-c", "--quiet", str(sums)], cwd=dest)
        res = self.alternate({"ckptfetch verify (again)": lambda: self.run([self.ckptfetch, "verify", str(dest)]),
                              "md5sum -c (warm)": lambda: self.run(["md5sum", "-c", "--quiet", str(sums)], cwd=dest)},
                             max(11, c.repeats))
        t_ck2 = median([r.wall for r in res["ckptfetch verify (again)"]])
        t_md52 = median([r.wall for r in res["md5sum -c (warm)"]])
        self.rows.append(Row(f"{label} again, nothing changed", fmt_s(t_ck2), f"md5sum -c (warm) {fmt_s(t_md52)}",
                             f"{t_ck2 / t_md52:.3f}x its time", "<= 0.02x", t_ck2 / t_md52 <= 0.02))
        shutil.rmtree(dest, ignore_errors=True)

    def w_rss(self) -> None:
        assert self.nginx
        c = self.cfg
        print("\n== peak RSS while fetching", flush=True)
        pooch_code = ("import sys, pooch; pooch.retrieve(sys.argv[1], known_hash='md5:' + sys.argv[2], fname=sys.argv[3],"
                      " path=sys.argv[4], progressbar=False)")
        out: dict[str, dict[str, float]] = {}
        for name, size in (("mid.bin", c.mid), ("big.bin", c.big)):
            url = self.url(self.nginx.plain, name)
            man = write_manifest(WORK / "manifests" / f"bench-rss-{name[:3]}.yaml", {name: (url, self.md5[name])})
            self.warm(self.data / name)

            def ck(man: Path = man) -> Run:
                return self.run(self.get(man, self.fresh("rss-ck")))

            def pooch(url: str = url, name: str = name) -> Run:
                return self.run([sys.executable, "-c", pooch_code, url, self.md5[name], name, str(self.fresh("rss-pooch"))])

            res = self.alternate({f"ckptfetch get {size // MiB} MiB": ck, f"pooch.retrieve {size // MiB} MiB": pooch},
                                 2 if not c.quick else 1)
            rc, rp = res[f"ckptfetch get {size // MiB} MiB"], res[f"pooch.retrieve {size // MiB} MiB"]
            out[name] = {"ck": max(r.maxrss_kb for r in rc), "pooch": max(r.maxrss_kb for r in rp),
                         "size": size, "t_ck": median([r.wall for r in rc]), "t_pooch": median([r.wall for r in rp])}
            shutil.rmtree(self.runs / "rss-ck", ignore_errors=True)
            shutil.rmtree(self.runs / "rss-pooch", ignore_errors=True)
        mid, big = out["mid.bin"], out["big.bin"]
        limit = 80 * 1000 * 1000 / 1024  # 80 MB in KiB
        same = abs(big["ck"] - mid["ck"]) <= 0.1 * mid["ck"]
        self.rows.append(Row(
            f"peak RSS fetching {c.mid // MiB} MiB / {c.big // MiB} MiB",
            f"{fmt_mb(mid['ck'])} / {fmt_mb(big['ck'])}",
            f"pooch {fmt_mb(mid['pooch'])} / {fmt_mb(big['pooch'])}",
            f"{big['ck'] / big['pooch']:.2f}x pooch's; {big['ck'] / mid['ck']:.2f}x across sizes",
            "<= 80 MB, flat", big["ck"] <= limit and mid["ck"] <= limit and same,
            {"times": {k: (v["t_ck"], v["t_pooch"]) for k, v in out.items()}}))

    def w_startup(self) -> None:
        print("\n== start-up", flush=True)
        # The interpreter ckptfetch runs on (the venv's python3), so only ckptfetch's own cost differs.
        py = _python_of(self.ckptfetch)
        res = self.alternate({"ckptfetch --version": lambda: self.run([self.ckptfetch, "--version"]),
                              "python3 -c pass": lambda: self.run([py, "-c", "pass"])}, self.cfg.startup_repeats)
        t_ck = median([r.wall for r in res["ckptfetch --version"]])
        t_py = median([r.wall for r in res["python3 -c pass"]])
        self.rows.append(Row("ckptfetch --version", fmt_s(t_ck), f"python3 -c pass {fmt_s(t_py)}",
                             f"{t_ck / t_py:.2f}x its time", "<= 4x", t_ck / t_py <= 4))

    def w_resume(self) -> None:
        assert self.nginx
        c = self.cfg
        print("\n== resume after kill -9 at ~50 % (throttled server, bytes counted in nginx's access log)", flush=True)
        url = self.url(self.nginx.throttled, "big.bin")
        man = write_manifest(WORK / "manifests" / "bench-resume.yaml", {"big.bin": (url, self.md5["big.bin"])})
        self.warm(self.data / "big.bin")
        ratios, at_kill = [], []
        for r in range(c.repeats):
            dest = self.fresh("resume")
            side = dest / "big.bin.ckptfetch-partial.json"
            part = dest / "big.bin.ckptfetch-partial"
            proc = subprocess.Popen(self.get(man, dest), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            done = 0
            while proc.poll() is None:
                done = _saved_progress(side, part)
                if done >= c.big // 2:
                    break
                time.sleep(0.005)
            if proc.poll() is not None:
                raise RuntimeError("ckptfetch finished before it could be killed; use a bigger file")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done = max(done, _saved_progress(side, part))
            time.sleep(0.5)  # let nginx log the connections the kill closed
            mark = self.nginx.log_size()
            run = self.run(self.get(man, dest))
            time.sleep(0.2)
            again = bytes_sent(self.nginx.access_log, mark, self.nginx.throttled, "/big.bin")
            ratios.append(again / c.big)
            at_kill.append(done / c.big)
            print(f"  round {r + 1}: killed with {done / c.big:.1%} saved; resume sent {again / c.big:.1%} of the file"
                  f" again, took {fmt_s(run.wall)}", flush=True)
        shutil.rmtree(self.runs / "resume", ignore_errors=True)
        m = median(ratios)
        self.rows.append(Row("resume after kill -9 at ~50 %", f"{m:.1%} of the bytes sent again",
                             f"killed at {median(at_kill):.1%}", f"{m:.2f}x file size", "<= 55 %", m <= 0.55))

    # -- report -----------------------------------------------------------------------------

    def table(self) -> str:
        return markdown_table(["workload", "ckptfetch", "other tool", "ratio", "target", "met"],
                              [[r.workload, r.ckptfetch, r.other, r.ratio, r.target,
                                "yes" if r.met else "NO" if r.met is False else "-"] for r in self.rows])


def _fs_type(path: Path) -> str:
    """The file system type holding `path` (from /proc/self/mounts; "?" elsewhere)."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    where = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and (where == parts[1] or where.startswith(parts[1].rstrip("/") + "/")) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def _walls(res: dict[str, list[Run]]) -> dict[str, object]:
    """Every round's wall time per contender, for the JSON report."""
    return {name: [r.wall for r in runs] for name, runs in res.items()}


def _python_of(script: str) -> str:
    """The interpreter named on a console script's #! line (else this one)."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode().strip()
    except OSError:
        return sys.executable
    return first[2:].split()[0] if first.startswith("#!/") else sys.executable


def _saved_progress(sidecar: Path, partial: Path) -> int:
    """Bytes a resume may keep, from the sidecar (pieces) or the partial's size."""
    try:
        doc = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("pieces"), list):
        return sum(p[2] - p[0] for p in doc["pieces"])
    try:
        return partial.stat().st_size
    except OSError:
        return 0


WORKLOADS = ("startup", "plain", "throttled", "many", "verify", "rss", "resume")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and fewer repeats, to check the suite works")
    ap.add_argument("--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)")
    ap.add_argument("--repeats", type=int, help="rounds per workload (default 5, 3 for the throttled one; quick 2)")
    ap.add_argument("--json", type=Path, help="also write the rows and raw figures to this file")
    ap.add_argument("--runs-dir", type=Path, help="where the tools write their downloads (default benchmarks/work/runs; "
                                                  "e.g. a folder on tmpfs to take the disk out of the comparison)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.repeats:
        cfg.repeats = cfg.throttled_repeats = args.repeats
    bench = Bench(cfg, set(args.only) if args.only else None, args.runs_dir)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        bench.setup()
        for key in WORKLOADS:
            if bench.wanted(key):
                bench.loadavg()
                getattr(bench, f"w_{key}")()
                bench.loadavg()
                print(f"  (1-minute load average now {bench.loads[-1]:.1f} on {os.cpu_count()} cores)", flush=True)
    finally:
        bench.stop()
    note = (f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (nproc {_nproc()}), {platform.platform()}, "
            f"python {platform.python_version()}, mode {'quick' if cfg.quick else 'full'}, downloads in {bench.runs}, "
            f"page cache {'dropped for cold verify' if bench.cold else 'NOT dropped (warm for both)'}, "
            f"1-minute load average between workloads {min(bench.loads, default=0):.1f}-{max(bench.loads, default=0):.1f}")
    print("\n" + note + "\n")
    print(bench.table())
    if cfg.quick:
        print("\n(quick mode: the sizes are too small for the targets, which are for the full run)")
    missed = [r.workload for r in bench.rows if r.met is False]
    print("\nall targets met" if not missed else "\ntargets missed: " + "; ".join(missed))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rows": [r.__dict__ for r in bench.rows]}, indent=1, default=str))


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    main()
