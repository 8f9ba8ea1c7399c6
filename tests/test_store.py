"""The store (README "The store"): every verified file once, linked into each destination.

Real processes against the local server: a second checkout takes its files
from the store without a request; each `--link` mode and its fallback (a
store on another filesystem, a real tmpfs, forces a copy; a real XFS image
gives reflinks); a damaged store file is never placed and is evicted; `gc`
running while `get`s link from the store breaks none of them; a read-only or
full store is still used and says so in one sentence.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfetch import api, compat, linking
from ckptfetch.errors import UsageError
from ckptfetch.status import Link
from ckptfetch.store import Store

from .conftest import blob, cli_env, md5, run_cli, sha256
from .httpserver import TestServer
from .samples import make_archive

BIG = blob(300_000, seed=31)
SMALL = blob(5_000, seed=32)


def manifest(tmp_path: Path, server: TestServer, name: str = "st", pin: str = "md5") -> Path:
    server.add("/big.bin", BIG)
    server.add("/small.bin", SMALL)
    digest = md5 if pin == "md5" else sha256
    files = {"w/big.bin": {"url": server.url + "/big.bin", pin: digest(BIG)},
             "small.bin": {"url": server.url + "/small.bin", pin: digest(SMALL)}}
    m = tmp_path / f"{name}.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": name, "files": files}))
    return m


def get(m: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress", *args, env=env)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r


def origins(r: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str | None]]:
    return {f["path"]: (f["origin"], f["link"]) for f in json.loads(r.stdout)["files"]}


def mount_tmpfs(d: Path, size: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root with CAP_SYS_ADMIN")


def unmount(d: Path) -> None:
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def tmpfs_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A store on a 2 MiB tmpfs: another filesystem than DIR's, and a small one."""
    d = tmp_path / "tmpfs-store"
    mount_tmpfs(d, "2m")
    monkeypatch.setenv("CKPTFETCH_CACHE", str(d))
    try:
        yield d
    finally:
        unmount(d)


# --- the second checkout ---------------------------------------------------------------------


def test_second_checkout_links_every_file_from_the_store(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    r = get(m, tmp_path / "two", "--json")
    assert r.returncode == 0, r.stderr
    assert server.hits("/big.bin") == server.hits("/small.bin") == 1, "the second checkout asked for nothing"
    assert origins(r) == {"w/big.bin": ("store", "hardlink"), "small.bin": ("store", "hardlink")}
    assert "link from store w/big.bin" in r.stderr and "0 to fetch, 2 found on this machine" in r.stderr
    one, two = (tmp_path / d / "w/big.bin" for d in ("one", "two"))
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    assert one.stat().st_ino == two.stat().st_ino == obj.stat().st_ino and two.read_bytes() == BIG
    assert not obj.stat().st_mode & 0o222, "store files are read-only"
    assert run_cli("verify", str(tmp_path / "two")).returncode == 0
    assert {p.name for p in (tmp_path / "two").iterdir()} == {".ckptfetch", "w", "small.bin"}, "no leftovers"


def test_an_md5_only_manifest_finds_the_file_through_the_index(server: TestServer, tmp_path: Path) -> None:
    """The first manifest pins md5; another, with other names and URLs, finds the bytes by md5 alone."""
    assert get(manifest(tmp_path, server, "first"), tmp_path / "one").returncode == 0
    server.add("/elsewhere/weights.pt", BIG)
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({"ckptfetch": 1, "name": "other", "files": {
        "ckpt/weights.pt": {"url": server.url + "/elsewhere/weights.pt", "md5": md5(BIG)}}}))
    r = get(other, tmp_path / "two", "--json")
    assert r.returncode == 0 and origins(r)["ckpt/weights.pt"] == ("store", "hardlink")
    assert server.hits("/elsewhere/weights.pt") == 0
    assert (tmp_path / "two/ckpt/weights.pt").read_bytes() == BIG


def test_a_weak_pin_finds_the_store_file_by_its_sha256_prefix(server: TestServer, tmp_path: Path) -> None:
    name = f"resnet18-{sha256(BIG)[:8]}.pth"  # torch hub's naming: the sha256 prefix is the only pin
    server.add(f"/models/{name}", BIG)
    m = tmp_path / "weak.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "weak", "files": {name: {"url": f"{server.url}/models/{name}"}}}))
    assert get(m, tmp_path / "one").returncode == 0
    r = get(m, tmp_path / "two", "--json")
    assert r.returncode == 0 and origins(r)[name] == ("store", "hardlink")
    assert server.hits(f"/models/{name}") == 1


def test_archive_members_come_from_the_store_and_the_archive_is_not_fetched(server: TestServer, tmp_path: Path) -> None:
    members = {f"m{i}.pth": blob(50_000, seed=60 + i) for i in range(3)}
    server.add("/pack.zip", make_archive("zip", members))
    m = tmp_path / "arc.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "arc", "archives": {"pack": {"url": server.url + "/pack.zip"}},
                             "files": {f"p/{k}": {"archive": "pack", "member": k, "md5": md5(v)}
                                       for k, v in members.items()}}))
    assert get(m, tmp_path / "one").returncode == 0
    r = get(m, tmp_path / "two", "--json")
    assert r.returncode == 0, r.stderr
    assert {o for o, _ in origins(r).values()} == {"store"}
    assert server.hits("/pack.zip") == 1, "every member was in the store: the archive was not downloaded again"
    assert run_cli("verify", str(tmp_path / "two")).returncode == 0


def test_no_cache_bypasses_the_store(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one", "--no-cache").returncode == 0
    assert not list(store_dir.rglob("sha256/*/*")), "nothing was added"
    assert get(m, tmp_path / "two").returncode == 0
    r = get(m, tmp_path / "three", "--no-cache", "--json")
    assert r.returncode == 0 and {o for o, _ in origins(r).values()} == {"network"}
    assert server.hits("/big.bin") == 3


def test_force_fetches_again_and_a_present_file_is_left_alone(server: TestServer, tmp_path: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    r = get(m, tmp_path / "two", "--force", "--json")
    assert r.returncode == 0 and {o for o, _ in origins(r).values()} == {"network"}
    assert server.hits("/big.bin") == 2


# --- link modes and their fallbacks ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "hardlink", "copy", "symlink", "reflink"])
def test_each_link_mode(mode: str, server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    """On this ext4-or-tmpfs DIR: auto and hardlink share the inode, reflink falls back to a copy."""
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    r = get(m, tmp_path / "two", "--link", mode, "--json")
    assert r.returncode == 0, r.stderr
    two = tmp_path / "two/w/big.bin"
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    way = origins(r)["w/big.bin"][1]
    if mode in ("auto", "hardlink"):
        assert way == "hardlink" and two.stat().st_ino == obj.stat().st_ino
    elif mode == "symlink":
        assert way == "symlink" and two.is_symlink() and Path(os.path.realpath(two)) == obj.resolve()
    else:
        if mode == "reflink" and way == "reflink":
            pytest.skip("this filesystem clones files; the XFS test covers it")
        assert way == "copy" and two.stat().st_ino != obj.stat().st_ino
        assert two.stat().st_mode & stat.S_IWUSR, "a copy is the destination's own, writable file"
    assert two.read_bytes() == BIG and server.hits("/big.bin") == 1
    assert run_cli("verify", str(tmp_path / "two"), "--strict").returncode == 0


def test_without_reflinks_auto_falls_back_to_a_hardlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.write_bytes(SMALL)
    monkeypatch.setattr(compat, "HAVE_REFLINK", False)
    assert linking.place(src, tmp_path / "a", Link.AUTO) == Link.HARDLINK
    assert linking.place(src, tmp_path / "b", Link.REFLINK) == Link.COPY
    assert (tmp_path / "b").read_bytes() == SMALL and (tmp_path / "b").stat().st_ino != src.stat().st_ino
    assert not list(tmp_path.glob("*" + linking.TMP_SUFFIX))


def test_placing_over_an_existing_link_to_the_same_file_leaves_no_temporary_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(SMALL)
    os.link(src, tmp_path / "t")
    assert linking.place(src, tmp_path / "t", Link.HARDLINK) == Link.HARDLINK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "t"]


def test_a_store_on_another_filesystem_forces_a_copy(server: TestServer, tmp_path: Path, tmpfs_store: Path) -> None:
    m = manifest(tmp_path, server)
    r1 = get(m, tmp_path / "one", "--link", "hardlink", "--json")
    r2 = get(m, tmp_path / "two", "--link", "hardlink", "--json")
    assert r1.returncode == r2.returncode == 0, r1.stderr + r2.stderr
    assert origins(r2)["w/big.bin"] == ("store", "copy") and server.hits("/big.bin") == 1
    obj = tmpfs_store / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    assert obj.read_bytes() == BIG and obj.stat().st_dev != (tmp_path / "two/w/big.bin").stat().st_dev
    assert (tmp_path / "one/w/big.bin").stat().st_mode & stat.S_IWUSR, "DIR's own download stays writable"


def test_a_file_copied_into_the_store_is_trusted_without_hashing_again(server: TestServer, tmp_path: Path,
                                                                        tmpfs_store: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's own mtime is new; what vouches for it is that the verified source did not change meanwhile."""
    from ckptfetch import checking, store

    m = manifest(tmp_path, server)
    assert api.fetch(m, tmp_path / "one").ok
    hashed: list[str] = []
    for module in (checking, store):
        real = module.hash_file
        monkeypatch.setattr(module, "hash_file", lambda p, a, real=real: hashed.append(str(p)) or real(p, a))
    r = api.fetch(m, tmp_path / "two")
    assert r.ok and {(f.origin, f.link) for f in r.files} == {("store", "copy")} and hashed == []


def test_a_full_store_does_not_fail_the_get(server: TestServer, tmp_path: Path, tmpfs_store: Path) -> None:
    big = blob(3 << 20, seed=33)  # larger than the 2 MiB store
    server.add("/huge.bin", big)
    m = tmp_path / "full.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "full", "files": {"huge.bin": {"url": server.url + "/huge.bin",
                                                                                    "md5": md5(big)}}}))
    r = get(m, tmp_path / "one")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "one/huge.bin").read_bytes() == big
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "No space left on device" in notes[0] and "--cache-dir" in notes[0], r.stderr
    assert not list(tmpfs_store.rglob("*.tmp")), "no half-copied object is left in the store"


def _xfs(tmp_path: Path) -> Path:
    """A real XFS filesystem (reflink=1) on a loop device, or skip."""
    mkfs = subprocess.run(["sh", "-c", "command -v mkfs.xfs"], capture_output=True, text=True).stdout.strip()
    if not mkfs:
        pytest.skip("mkfs.xfs is not installed (apt-get install xfsprogs) for a reflink-capable filesystem")
    image, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(image, "wb") as f:
        f.truncate(320 << 20)
    mnt.mkdir()
    r = subprocess.run([mkfs, "-q", str(image)], capture_output=True, text=True)
    r = r if r.returncode else subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make and mount an XFS image here: {r.stderr.strip()}")
    return mnt


def test_reflinks_on_a_copy_on_write_filesystem(server: TestServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mnt = _xfs(tmp_path)
    try:
        monkeypatch.setenv("CKPTFETCH_CACHE", str(mnt / "store"))
        m = manifest(tmp_path, server)
        assert get(m, mnt / "one").returncode == 0
        free = compat.free_bytes(mnt)
        r = get(m, mnt / "two", "--json")
        assert r.returncode == 0 and origins(r)["w/big.bin"] == ("store", "reflink"), r.stdout + r.stderr
        two = mnt / "two/w/big.bin"
        obj = mnt / "store/sha256" / sha256(BIG)[:2] / sha256(BIG)
        assert two.stat().st_ino != obj.stat().st_ino and two.stat().st_mode & stat.S_IWUSR
        assert free - compat.free_bytes(mnt) < len(BIG) // 2, "a clone takes (almost) no new blocks"
        with open(two, "r+b") as f:  # an edit in DIR stays in DIR
            f.write(b"edited")
        assert obj.read_bytes() == BIG
    finally:
        unmount(mnt)


# --- damage -------------------------------------------------------------------------------------


def _corrupt_in_place(path: Path) -> None:
    """What an editor (as root, or after chmod) does to a hardlinked file: same inode, size and mtime."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff\x00\xff")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_damaged_store_file_is_never_placed_and_is_evicted(server: TestServer, tmp_path: Path,
                                                            store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    damaged = obj.stat().st_ino
    _corrupt_in_place(obj)  # through the store's name: DIR one shares the inode, and is damaged too
    r = get(m, tmp_path / "two", "--json")
    assert r.returncode == 0 and origins(r)["w/big.bin"] == ("network", None), r.stderr
    assert (tmp_path / "two/w/big.bin").read_bytes() == BIG and server.hits("/big.bin") == 2
    assert obj.read_bytes() == BIG and obj.stat().st_ino != damaged, "evicted, then the good download took its place"
    assert run_cli("verify", str(tmp_path / "one")).returncode == 1, "the damaged checkout says so"
    r = get(m, tmp_path / "one")
    assert r.returncode == 0 and (tmp_path / "one/w/big.bin").read_bytes() == BIG
    assert server.hits("/big.bin") == 2, "repaired from the store, not the network"


def test_a_store_file_grown_through_a_checkout_is_evicted_when_that_checkout_is_repaired(
        server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    doc = json.loads(m.read_text())
    doc["files"]["w/big.bin"]["size"] = len(BIG)  # a size pin: the grown file is refused before any hashing
    m.write_text(json.dumps(doc))
    assert get(m, tmp_path / "one").returncode == 0 and get(m, tmp_path / "two").returncode == 0
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    with open(tmp_path / "one/w/big.bin", "ab") as f:  # `echo x >> one/w/big.bin` as root: every hardlink grows
        f.write(b"x\n")
    r = get(m, tmp_path / "one", "--json")
    assert r.returncode == 0 and origins(r)["w/big.bin"] == ("network", None), r.stderr
    assert (tmp_path / "one/w/big.bin").read_bytes() == BIG and server.hits("/big.bin") == 2
    assert obj.read_bytes() == BIG, "the damaged object was evicted and the good download took its place"
    assert (tmp_path / "one/w/big.bin").stat().st_ino == obj.stat().st_ino
    r = run_cli("cache", "verify")
    assert r.returncode == 0 and "2 OK, 0 FAILED" in r.stderr, r.stdout + r.stderr
    assert run_cli("verify", str(tmp_path / "two")).returncode == 1, "the other checkout sharing the damage says so"
    assert get(m, tmp_path / "two").returncode == 0 and server.hits("/big.bin") == 2, "repaired from the store"


def test_cache_verify_finds_damage_and_evicts(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    r = run_cli("cache", "verify")
    assert r.returncode == 0 and "2 OK, 0 FAILED" in r.stderr
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    _corrupt_in_place(obj)
    r = run_cli("cache", "verify")
    assert r.returncode == 1 and f"{sha256(BIG)}: FAILED (sha256 " in r.stdout and "evicted" in r.stdout
    assert str(tmp_path / "one" / "w/big.bin") in r.stderr, "names the destination that shares the damage"
    assert not obj.exists()
    r = run_cli("cache", "verify", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True


# --- gc and concurrency -------------------------------------------------------------------------

GC_LOOP = """
import os, sys, time
from ckptfetch import api
store = api.open_store()
n = 0
while not os.path.exists(sys.argv[1]):
    n += len(api.cache_gc(store, max_size=0).evicted)
    time.sleep(0.01)
print(n)
"""


@pytest.mark.parametrize("mode", ["auto", "symlink"])
def test_gc_racing_get_never_breaks_it(mode: str, server: TestServer, tmp_path: Path) -> None:
    """One process evicts everything it may, in a loop, while `get`s link from the store one after another.

    Each checkout is checked, then deleted, so that gc may evict its files while the next `get` links them.
    """
    import shutil

    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "seed").returncode == 0
    shutil.rmtree(tmp_path / "seed")
    stop = tmp_path / "stop"
    gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(stop)], env=cli_env(), stdout=subprocess.PIPE, text=True)
    runs = symlinks = 0
    try:
        while runs < 6:
            assert gc.poll() is None
            d = tmp_path / f"d{runs}"
            r = get(m, d, "--link", mode)
            assert r.returncode == 0, r.stderr
            assert (d / "w/big.bin").read_bytes() == BIG and (d / "small.bin").read_bytes() == SMALL
            assert run_cli("verify", str(d)).returncode == 0
            # A symlink; or, when gc took a just-downloaded file's object twice before it could be linked,
            # DIR's own verified file (never a dangling link).
            symlinks += (d / "w/big.bin").is_symlink()
            shutil.rmtree(d)
            runs += 1
    finally:
        stop.touch()
        evicted = int(gc.communicate(timeout=60)[0] or 0)
    assert evicted > 0, "gc did evict files meanwhile"
    assert mode != "symlink" or symlinks > 0


@pytest.mark.parametrize("mode", ["auto", "symlink"])
def test_an_eviction_between_verifying_and_linking_falls_back_to_the_network(
        mode: str, server: TestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window a racing gc could hit, made certain: the object goes right after it was verified."""
    m = manifest(tmp_path, server)
    assert api.fetch(m, tmp_path / "one").ok
    real = Store.place

    def evicted_first(self: Store, sha: str, *args: object, **kwargs: object) -> Link:
        assert api.cache_gc(self, max_size=0).evicted, "gc took it"
        return real(self, sha, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "place", evicted_first)
    r = api.fetch(m, tmp_path / "two", link=mode, jobs=1)
    assert r.ok and {f.origin for f in r.files} == {"network"}
    assert (tmp_path / "two/w/big.bin").read_bytes() == BIG and server.hits("/big.bin") == 2


def test_gc_prefers_unused_files_and_keeps_symlinked_ones(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0  # hardlinks
    assert get(m, tmp_path / "two", "--link", "symlink", "--only", "small.bin").returncode == 0
    r = run_cli("cache", "gc", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["evicted"] == [], "both files are used"
    (tmp_path / "one/w/big.bin").unlink()
    r = run_cli("cache", "gc", "--dry-run")
    assert r.returncode == 0 and f"would evict {sha256(BIG)}" in r.stdout
    assert (store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)).exists(), "a dry run evicts nothing"
    r = run_cli("cache", "gc", "--max-size", "0", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and [o["sha256"] for o in doc["evicted"]] == [sha256(BIG)], "unused first; symlink kept"
    assert (tmp_path / "two/small.bin").read_bytes() == SMALL
    assert run_cli("cache", "gc", "--older-than", "1d", "--json").returncode == 0


def test_checkouts_fetched_at_the_same_time_end_up_sharing_one_file(server: TestServer, tmp_path: Path,
                                                                    store_dir: Path) -> None:
    """Five processes, five destinations, one store: all succeed, and the store keeps each file once."""
    m = manifest(tmp_path, server)
    server.delay = 0.2  # every response starts late, so the processes overlap
    procs = [subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(tmp_path / f"d{i}"),
                               "--no-progress"], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(5)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    objects = sorted(p.name for p in store_dir.glob("sha256/*/*"))
    assert objects == sorted([sha256(BIG), sha256(SMALL)]), "each file once, no temporary copy left"
    obj = store_dir / "sha256" / sha256(BIG)[:2] / sha256(BIG)
    inodes = {(tmp_path / f"d{i}/w/big.bin").stat().st_ino for i in range(5)}
    assert obj.stat().st_ino in inodes and len(inodes) < 5, "the checkouts that came second share the stored file"
    for i in range(5):
        assert run_cli("verify", str(tmp_path / f"d{i}")).returncode == 0


def test_cache_ls_and_du_say_what_is_shared(server: TestServer, tmp_path: Path) -> None:
    m = manifest(tmp_path, server)
    for d in ("one", "two"):
        assert get(m, tmp_path / d).returncode == 0
    assert get(m, tmp_path / "three", "--only", "small.bin", "--link", "copy").returncode == 0
    doc = json.loads(run_cli("cache", "du", "--json").stdout)
    assert doc["objects"] == 2 and doc["size"] == len(BIG) + len(SMALL)
    assert doc["in_destinations"] == 2 * len(BIG) + 3 * len(SMALL) and doc["shared"] == len(BIG) + len(SMALL)
    assert doc["linked"] == 2 * (len(BIG) + len(SMALL)), "the copy in three/ saves nothing"
    assert doc["saved"] == doc["linked"] - doc["disk"] and doc["saved"] > len(BIG) // 2
    per = {Path(d["dest"]).name: d for d in doc["destinations"]}
    assert per["one"]["files"] == 2 and per["three"]["links"] == {"copy": 1}
    r = run_cli("cache", "du")
    assert r.returncode == 0 and "saved by sharing" in r.stdout and str(tmp_path / "two") in r.stdout
    r = run_cli("cache", "ls", "--json")
    assert {o["sha256"]: len(o["uses"]) for o in json.loads(r.stdout)["objects"]} == {sha256(BIG): 2, sha256(SMALL): 3}
    r = run_cli("cache", "ls")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["sha256", "size", "uses"]


def test_every_cache_command_and_option_has_help() -> None:
    from ckptfetch.cli.cache import cache

    for name, command in cache.commands.items():
        assert command.help, name
        assert all(p.help for p in command.params if getattr(p, "param_type_name", "") == "option"), name
        r = run_cli("cache", name, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout


@pytest.mark.parametrize("args", [["gc", "--max-size", "lots"], ["gc", "--older-than", "soon"], ["du", "--nope"]])
def test_cache_usage_errors_exit_2(args: list[str]) -> None:
    r = run_cli("cache", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


# --- read-only -----------------------------------------------------------------------------------


def test_a_read_only_store_is_still_read(server: TestServer, tmp_path: Path, tmpfs_store: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one", "--only", "w/big.bin").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs_store)], check=True)
    try:
        r = get(m, tmp_path / "two", "--json")
        assert r.returncode == 0, r.stderr
        assert origins(r) == {"w/big.bin": ("store", "copy"), "small.bin": ("network", None)}
        notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
        assert len(notes) == 1 and "is read-only" in notes[0] and "none are added" in notes[0], r.stderr
        assert json.loads(r.stdout)["notes"] == [notes[0].removeprefix("note: ")]
        assert (tmp_path / "two/small.bin").read_bytes() == SMALL
        assert run_cli("cache", "ls").returncode == 0
        r = run_cli("cache", "gc")
        assert r.returncode == 1 and r.stderr.count("error:") == 1 and "read-only" in r.stderr, r.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs_store)], check=True)


def test_a_read_only_folder_with_the_file_in_the_store_is_one_clean_error(server: TestServer,
                                                                           tmp_path: Path) -> None:
    """DIR takes locks, but the folder the file goes to is read-only: the file fails, the others are placed."""
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    ro = tmp_path / "two" / "w"
    mount_tmpfs(ro, "1m")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        r = get(m, tmp_path / "two")
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert r.returncode == 1 and len(errors) == 1, r.stderr
        assert errors[0].startswith("error: w/big.bin: cannot write in ") and "Read-only file system" in errors[0]
        assert "--dest" in errors[0] and (tmp_path / "two/small.bin").read_bytes() == SMALL
        assert server.hits("/big.bin") == 1, "nothing was downloaded that could not be written"
    finally:
        unmount(ro)


# --- crash, API ---------------------------------------------------------------------------------


def test_a_kill_while_linking_from_the_store_leaves_nothing_behind(server: TestServer, tmp_path: Path) -> None:
    m = manifest(tmp_path, server)
    assert get(m, tmp_path / "one").returncode == 0
    hooks, dest = tmp_path / "hooks", tmp_path / "two"
    hooks.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--no-progress"],
                            env=cli_env(CKPTFETCH_TEST_HOOKS="link-before-rename", CKPTFETCH_TEST_HOOKS_DIR=str(hooks)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (hooks / "link-before-rename").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert list(dest.rglob("*" + linking.TMP_SUFFIX)), "killed between the link and its rename"
    assert get(m, dest).returncode == 0
    assert not list(dest.rglob("*" + linking.TMP_SUFFIX)) and server.hits("/big.bin") == 1
    assert run_cli("verify", str(dest), "--strict").returncode == 0


def test_python_api_takes_the_same_options(server: TestServer, tmp_path: Path) -> None:
    m = manifest(tmp_path, server)
    own = tmp_path / "own-store"
    assert api.fetch(m, tmp_path / "one", cache_dir=own).ok
    r = api.fetch(m, tmp_path / "two", cache_dir=own, link="copy")
    assert r.ok and {(f.origin, f.link) for f in r.files} == {("store", "copy")}
    r = api.fetch(m, tmp_path / "three", no_cache=True, reuse_from=[tmp_path / "one"])
    assert r.ok and {f.origin for f in r.files} == {"reuse-from"} and server.hits("/big.bin") == 1
    assert [o.sha256 for o in api.cache_list(api.open_store(own))] != []
    with pytest.raises(UsageError, match="--link 'sideways'"):
        api.fetch(m, tmp_path / "four", link="sideways")
    with pytest.raises(UsageError, match="no .*record.json"):
        api.fetch(m, tmp_path / "four", reuse_from=[tmp_path / "nowhere"])
    p = api.plan(m, tmp_path / "five", reuse=None)
    assert {i.origin for i in p.items} == {"network"}


def test_store_index_lost_or_damaged_is_rebuilt(server: TestServer, tmp_path: Path, store_dir: Path) -> None:
    m = manifest(tmp_path, server, pin="sha256")
    assert get(m, tmp_path / "one").returncode == 0
    (store_dir / "index.sqlite").write_bytes(b"not a database" * 100)
    r = get(m, tmp_path / "two", "--json")
    assert r.returncode == 0 and {o for o, _ in origins(r).values()} == {"store"}, "found by sha256, its name"
    assert list(store_dir.glob("index.sqlite.damaged-*")), "the damaged index was set aside"
    assert Store(store_dir).index.row(sha256(BIG)) is not None, "and the new one describes what was used"
