"""The store's workloads: a second checkout, a file already in the HF or torch cache, sam-pt's disk.

    python benchmarks/store.py                 # 1 GiB, 5 rounds each, plus sam-pt's minimal set (~2.5 GB)
    python benchmarks/store.py --quick         # 96 MiB, 2 rounds, sam-pt scaled down: checks the script works
    python benchmarks/store.py --only second   # second | reflink | hf | torch | sampt (repeatable)

Run it from a venv where ckptfetch is installed (`pip install -e .`), as root
(nginx, and a loop-mounted XFS image for the reflink workload). Like run.py it
serves the data with its own nginx on free 127.0.0.1 ports under
benchmarks/work/, alternates contenders A B A B, and prints medians. What each
workload measures:

- **cost**: what the store costs a first download of the 1 GiB file (the sha256
  computed beside the md5, the file linked into the store), against the same
  `get --no-cache`, the store emptied before each run.
- **second**: a second checkout of a 1 GiB manifest, the store filled by the
  first: bytes over the network (nginx's log), extra disk (blocks of inodes
  the store and the first checkout do not already hold), and wall time against
  the same `get --dry-run` into a new folder (the same start-up, manifest and
  plan with its look in the store, nothing placed): the difference is what
  verifying from the index and linking cost.
- **reflink**: the same on a real XFS image (reflink=1), where `auto` clones.
- **hf** / **torch**: the 1 GiB file already in huggingface_hub's cache (an LFS
  blob, named by its sha256, with its snapshot and ref, as huggingface_hub
  leaves it) or in torch's `checkpoints/` (named `NAME-<sha256 prefix>.pth`),
  the store empty: bytes over the network, and wall time against one
  `openssl dgst -sha256` of the file (verified once means: about start-up plus
  one hash);
  then a second checkout, from the store, hashing nothing.
- **sampt**: the disk two checkouts of the bundled sam-pt manifest's minimal
  set take, served from a local mirror (`--mirror https://=http://127.0.0.1:PORT/`)
  with fake bytes of about the real sizes and a copy of the manifest pinning
  their md5, with the store and with `--no-cache`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import MiB, Nginx, Run, ensure_debian, fmt_s, make_file, markdown_table, measure, median  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
WORKLOADS = ("cost", "second", "reflink", "hf", "torch", "sampt")
COMMIT = "67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2"


def unique_disk(*roots: Path) -> int:
    """Blocks allocated under `roots`, each inode counted once (hardlinks share theirs)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                st = os.lstat(os.path.join(folder, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def sha256_of(path: Path) -> str:
    stamp = path.with_name(path.name + ".sha256")
    if stamp.is_file() and stamp.stat().st_mtime >= path.stat().st_mtime:
        return stamp.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * MiB):
            h.update(chunk)
    stamp.write_text(h.hexdigest())
    return h.hexdigest()


class StoreBench:
    def __init__(self, size: int, repeats: int, sam_sizes: tuple[int, int]) -> None:
        self.size, self.repeats, self.sam_sizes = size, repeats, sam_sizes
        self.data = WORK / "data"
        self.runs = WORK / "store-runs"
        self.log = WORK / "store-commands.log"
        exe = Path(sys.executable).parent / "ckptfetch"
        self.ckptfetch = str(exe if exe.exists() else shutil.which("ckptfetch") or sys.exit("install ckptfetch first"))
        self.nginx: Nginx | None = None
        self.rows: list[list[str]] = []
        self.loads: list[float] = []

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        shutil.rmtree(self.runs, ignore_errors=True)
        self.runs.mkdir(parents=True)
        self.log.write_text("")
        print(f"generating data in {self.data} (kept between runs) ...", flush=True)
        self.md5 = make_file(self.data / "big.bin", self.size, 1)
        self.sha = sha256_of(self.data / "big.bin")
        self.nginx = Nginx(ensure_debian("nginx", "nginx"), WORK / "nginx-store", self.data)
        self.nginx.start()
        print(f"nginx :{self.nginx.plain}", flush=True)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()

    def env(self, store: Path) -> dict[str, str]:
        assert self.nginx
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CKPTFETCH_", "HF_", "TORCH_"))}
        env.update(CKPTFETCH_CACHE=str(store), HF_HUB_CACHE=str(WORK / "hf-cache"), TORCH_HOME=str(WORK / "torch-home"),
                   HF_ENDPOINT=f"http://127.0.0.1:{self.nginx.plain}", HF_HOME=str(WORK / "hf-home"), NO_COLOR="1")
        return env

    def run(self, cmd: list[str], env: dict[str, str]) -> Run:
        with open(self.log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
        r = measure(cmd, env=env, log=self.log)
        if r.rc != 0:
            raise RuntimeError(f"command failed ({r.rc}): {' '.join(cmd)}; see {self.log}")
        return r

    def get(self, man: Path, dest: Path, *extra: str) -> list[str]:
        return [self.ckptfetch, "get", str(man), "--dest", str(dest), "--no-progress", *extra]

    def origins(self, man: Path, dest: Path, env: dict[str, str], *extra: str) -> list[str]:
        out = subprocess.run([*self.get(man, dest, *extra), "--json"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return [f"{f['origin']}/{f['link']}" for f in json.loads(out.stdout)["files"]]

    def network(self, since: int) -> int:
        assert self.nginx
        total = 0
        for line in self.nginx.access_log.read_bytes()[since:].decode().splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[2].isdigit():
                total += int(parts[2])
        return total

    def alternate(self, contenders: dict[str, Callable[[], Run]]) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {k: [] for k in contenders}
        for r in range(self.repeats):
            for name, fn in contenders.items():
                os.sync()
                run = fn()
                out[name].append(run)
                print(f"  round {r + 1}: {name:<44} {fmt_s(run.wall):>9}  CPU {run.cpu:5.2f} s", flush=True)
        self.loads.append(os.getloadavg()[0])
        return out

    def manifest(self, name: str, files: dict[str, dict[str, str]]) -> Path:
        p = WORK / "store-manifests" / f"{name}.yaml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"ckptfetch": 1, "name": name, "files": files}))
        return p

    # -- workloads ----------------------------------------------------------------------------

    def w_cost(self) -> None:
        assert self.nginx
        print("\n== first download, with the store and with --no-cache", flush=True)
        store = self.runs / "store"
        env = self.env(store)
        man = self.manifest("bench-cost", {"big.bin": {"url": f"http://127.0.0.1:{self.nginx.plain}/big.bin",
                                                       "md5": self.md5}})

        def fetch(*extra: str) -> Callable[[], Run]:
            def go() -> Run:
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(self.runs / "cost", ignore_errors=True)
                return self.run(self.get(man, self.runs / "cost", *extra), env)
            return go

        res = self.alternate({"get (store on: md5 + sha256, then linked in)": fetch(),
                              "get --no-cache (md5 only)": fetch("--no-cache")})
        on, off = (res[k] for k in res)
        self.rows.append([f"first download of {self.size // MiB} MiB, store on", fmt_s(median([r.wall for r in on])),
                          f"--no-cache {fmt_s(median([r.wall for r in off]))}; CPU {median([r.cpu for r in on]):.2f} s "
                          f"vs {median([r.cpu for r in off]):.2f} s", f"{self.size} B each", "-", "network"])
        shutil.rmtree(self.runs / "cost", ignore_errors=True)

    def w_second(self, base: Path | None = None, label: str = "second checkout, store on the same disk",
                 private: bool = False) -> None:
        assert self.nginx
        base = base or self.runs
        print(f"\n== {label}", flush=True)
        store, first = base / "store", base / "first"
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(first, ignore_errors=True)
        env = self.env(store)
        man = self.manifest("bench-second", {"big.bin": {"url": f"http://127.0.0.1:{self.nginx.plain}/big.bin",
                                                         "md5": self.md5}})
        self.run(self.get(man, first), env)
        n = 0
        extra: list[int] = []
        sent: list[int] = []
        ways: set[str] = set()

        def second() -> Run:
            nonlocal n
            n += 1
            dest = base / f"second-{n}"
            shutil.rmtree(dest, ignore_errors=True)
            os.sync()
            before, free = unique_disk(store, first), _free(base)
            since = self.nginx.log_size() if self.nginx else 0
            r = self.run(self.get(man, dest), env)
            sent.append(self.network(since))
            os.sync()
            # A private filesystem (the XFS image) tells exactly by its free space; on the shared disk, count the
            # blocks of inodes that neither the store nor the first checkout held (a clone's st_blocks would lie).
            extra.append(free - _free(base) if private else unique_disk(store, first, dest) - before)
            ways.update(self.origins(man, base / f"second-{n}-json", env))
            # Kept until the end: deleting a checkout changes the shared file's ctime, and the next use re-hashes.
            return r

        def startup() -> Run:
            shutil.rmtree(base / "plan-only", ignore_errors=True)
            return self.run(self.get(man, base / "plan-only", "--dry-run"), env)

        res = self.alternate({"get --dry-run, new checkout (start-up + plan)": startup,
                              "get into a new checkout (from the store)": second})
        start, new = res["get --dry-run, new checkout (start-up + plan)"], res["get into a new checkout (from the store)"]
        t_start, t_second = median([r.wall for r in start]), median([r.wall for r in new])
        c_start, c_second = median([r.cpu for r in start]), median([r.cpu for r in new])
        self.rows.append([f"{label}, {self.size // MiB} MiB manifest", f"{fmt_s(t_second)} (CPU {c_second:.2f} s)",
                          f"--dry-run: {fmt_s(t_start)} (CPU {c_start:.2f} s); difference {(t_second - t_start) * 1000:+.0f} ms "
                          f"wall, {(c_second - c_start) * 1000:+.0f} ms CPU",
                          f"{max(sent)} B", f"{max(extra) / 1024:.0f} KiB", ", ".join(sorted(ways))])
        for d in base.glob("second-*"):
            shutil.rmtree(d)

    def w_reflink(self) -> None:
        image, mnt = WORK / "xfs.img", WORK / "xfs"
        if not shutil.which("mkfs.xfs"):
            ensure_debian("mkfs.xfs", "xfsprogs")
        mnt.mkdir(exist_ok=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        with open(image, "wb") as f:
            f.truncate(2 * self.size + (600 << 20))
        subprocess.run(["mkfs.xfs", "-q", "-f", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        try:
            self.w_second(mnt, "second checkout, XFS (reflink)", private=True)
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            image.unlink(missing_ok=True)

    def _from_cache(self, label: str, man: Path, cached: Path) -> None:
        assert self.nginx
        print(f"\n== {label}", flush=True)
        store = self.runs / "store"
        env = self.env(store)
        n = 0
        sent: list[int] = []
        ways: set[str] = set()
        second: list[Run] = []

        def reuse() -> Run:
            nonlocal n
            n += 1
            dest, dest2, seen = (self.runs / f"reuse-{n}{x}" for x in ("", "-again", "-json"))
            shutil.rmtree(store, ignore_errors=True)
            since = self.nginx.log_size() if self.nginx else 0
            r = self.run(self.get(man, dest), env)
            sent.append(self.network(since))
            shutil.rmtree(store, ignore_errors=True)
            ways.update(self.origins(man, seen, env))  # the same, with --json: where the bytes came from
            second.append(self.run(self.get(man, dest2), env))  # the store has them now
            ways.update(f"next: {w}" for w in self.origins(man, self.runs / f"reuse-{n}-json2", env))
            for d in (dest, dest2, seen, self.runs / f"reuse-{n}-json2"):
                shutil.rmtree(d)
            return r

        # One sha256 of the file with the same library (OpenSSL, SHA extensions where the CPU has them) as ckptfetch's
        # hashlib; coreutils' sha256sum is several times slower on such CPUs and would flatter ckptfetch.
        one_hash = ["openssl", "dgst", "-sha256", str(cached)]
        res = self.alternate({"openssl dgst -sha256 of the cached file": lambda: self.run(one_hash, env),
                              "get, the file in the cache, store empty": reuse})
        t_sum = median([r.wall for r in res["openssl dgst -sha256 of the cached file"]])
        t_get = median([r.wall for r in res["get, the file in the cache, store empty"]])
        t_again = median([r.wall for r in second])
        self.rows.append([label, fmt_s(t_get), f"one sha256: {fmt_s(t_sum)}; next checkout {fmt_s(t_again)}",
                          f"{max(sent)} B", "-", ", ".join(sorted(ways))])

    def w_hf(self) -> None:
        repo = WORK / "hf-cache" / "models--bench--model"
        blob = repo / "blobs" / self.sha
        if not blob.is_file():
            shutil.rmtree(repo, ignore_errors=True)
            blob.parent.mkdir(parents=True)
            shutil.copyfile(self.data / "big.bin", blob)
        snap = repo / "snapshots" / COMMIT / "model.safetensors"
        snap.parent.mkdir(parents=True, exist_ok=True)
        if not snap.is_symlink():
            snap.symlink_to(os.path.relpath(blob, snap.parent))
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        man = self.manifest("bench-hf", {"model.safetensors": {"url": "hf://bench/model/model.safetensors",
                                                               "sha256": self.sha}})
        self._from_cache(f"{self.size // MiB} MiB LFS blob in the HF cache", man, blob)

    def w_torch(self) -> None:
        name = f"bench-{self.sha[:8]}.pth"
        cached = WORK / "torch-home" / "hub" / "checkpoints" / name
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.data / "big.bin", cached)
        served = self.data / "torch" / name  # what a failed reuse would download (and the log would show)
        served.parent.mkdir(exist_ok=True)
        if not served.exists():
            os.link(self.data / "big.bin", served)
        assert self.nginx
        man = self.manifest("bench-torch", {name: {"url": f"http://127.0.0.1:{self.nginx.plain}/torch/{name}"}})
        self._from_cache(f"{self.size // MiB} MiB checkpoint in torch's cache (weak pin)", man, cached)

    def w_sampt(self) -> None:
        assert self.nginx
        print("\n== sam-pt --minimal, two checkouts", flush=True)
        text = (REPO / "manifests" / "sam-pt.yaml").read_text()
        fakes = {"https://dl.fbaipublicfiles.com/cotracker/cotracker_stride_4_wind_8.pth": (self.sam_sizes[0], 7),
                 f"https://huggingface.co/lkeab/hq-sam/resolve/{COMMIT}/sam_hq_vit_h.pth": (self.sam_sizes[1], 8)}
        for url, (size, seed) in fakes.items():
            digest = make_file(self.data / "sam-pt" / url.removeprefix("https://"), size, seed)
            old = re.search(re.escape(url) + r"\n\s+md5: ([0-9a-f]{32})", text)
            assert old, url
            text = text.replace(old.group(1), digest)
        man = WORK / "store-manifests" / "sam-pt.yaml"
        man.write_text(text)
        mirror = ["--mirror", f"https://=http://127.0.0.1:{self.nginx.plain}/sam-pt/", "--minimal"]
        total = sum(s for s, _ in fakes.values())
        for how, extra in (("store (auto: hardlinks here)", []), ("--no-cache", ["--no-cache"])):
            store, a, b = self.runs / "sam-store", self.runs / "sam-a", self.runs / "sam-b"
            for d in (store, a, b):
                shutil.rmtree(d, ignore_errors=True)
            env = self.env(store)
            since = self.nginx.log_size()
            self.run(self.get(man, a, *mirror, *extra), env)
            one = unique_disk(store, a) if store.exists() else unique_disk(a)
            self.run(self.get(man, b, *mirror, *extra), env)
            roots = [r for r in (store, a, b) if r.exists()]
            both = unique_disk(*roots)
            self.rows.append([f"sam-pt --minimal (2 files, {total / (1 << 30):.2f} GiB), two checkouts, {how}",
                              "-", f"one checkout {one / (1 << 20):.0f} MiB; both {both / (1 << 20):.0f} MiB",
                              f"{self.network(since) / (1 << 20):.0f} MiB", f"{(both - one) / (1 << 20):.1f} MiB",
                              ", ".join(sorted(set(self.origins(man, self.runs / "sam-c", env, *mirror, *extra))))])
            for d in (store, a, b, self.runs / "sam-c"):
                shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", choices=WORKLOADS)
    ap.add_argument("--repeats", type=int)
    args = ap.parse_args()
    size, repeats, sam = (96 * MiB, 2, (8 * MiB, 40 * MiB)) if args.quick else (1 << 30, 5, (92 * MiB, 2450 * MiB))
    bench = StoreBench(size, args.repeats or repeats, sam)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        bench.setup()
        for key in WORKLOADS:
            if args.only is None or key in args.only:
                getattr(bench, f"w_{key}")()
    finally:
        bench.stop()
    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}, python "
          f"{platform.python_version()}, {'quick' if args.quick else 'full'}; 1-minute load average after each "
          f"workload {', '.join(f'{x:.1f}' for x in bench.loads)}\n")
    print(markdown_table(["workload", "ckptfetch (median)", "compared with", "over the network", "extra disk",
                          "origin/link"], bench.rows))


if __name__ == "__main__":
    main()
