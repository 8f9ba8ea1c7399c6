"""Hashed mirrors on a real S3-compatible store (SeaweedFS on 127.0.0.1, tests/s3server.py), and a job's ranks.

The store is reached through the counting relay, which reads each request's
method and path out of the byte stream: what a push sent (PUTs, multipart
POSTs) and how often each object was read are the store's own traffic, not
what ckptfetch says it did. The original hosts of the manifests are https
names reached only through a proxy that is not there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptfetch import mirrortargets
from ckptfetch.lock import load_lock
from ckptfetch.mirroring import push
from ckptfetch.sources.s3 import declared

from .conftest import md5, run_cli, sha256
from .httpserver import TestServer
from .s3server import Relay, SeaweedS3, free_ports
from .test_s3 import assert_no_secret, assert_no_secret_under, blob, manifest, s3_env

BUCKET = "hashed"  # one bucket for every test here (each is a SeaweedFS collection of its own)


@pytest.fixture(autouse=True)
def bucket(seaweed: SeaweedS3) -> None:
    """The bucket exists (a push never creates one)."""
    seaweed.put(BUCKET, ".keep", b"")


def _writes(relay: Relay) -> list[tuple[str, str]]:
    return [(m, p) for m, p in relay.requests if m in ("PUT", "POST", "DELETE")]


def _world(tmp_path: Path, origin: TestServer, files: dict[str, bytes], name: str) -> tuple[Path, list[str]]:
    """A manifest of https files that pins md5s only, and the --mirror that reaches them on the connected side."""
    for path, data in files.items():
        origin.add(f"/dl.example.org/{path}", data)
    m = manifest(tmp_path / f"{name}.yaml", {p: {"url": f"https://dl.example.org/{p}", "md5": md5(d)}
                                             for p, d in files.items()})
    return m, ["--mirror", f"https://dl.example.org/={origin.url}/dl.example.org/"]


def _dead_hosts(seaweed: SeaweedS3, tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The store's environment, with every https host behind a proxy that is not there."""
    return s3_env(seaweed, tmp_path, endpoint, HTTPS_PROXY=f"http://127.0.0.1:{free_ports(1)[0]}",
                  NO_PROXY="127.0.0.1", **extra)


def test_push_is_idempotent_at_the_store(seaweed: SeaweedS3, server: TestServer, tmp_path: Path) -> None:
    files = {"a.bin": blob(300_000, seed=31), "b/c.bin": blob(1 << 20, seed=32), "same.bin": blob(300_000, seed=31)}
    m, reach = _world(tmp_path, server, files, "idem")
    target = f"s3://{BUCKET}/idem"
    with Relay(seaweed.ports["s3.port"]) as relay:
        env = s3_env(seaweed, tmp_path, relay.endpoint)
        r = run_cli("mirror", "push", str(m), target, "--dest", str(tmp_path / "models"), *reach, env=env)
        assert r.returncode == 0, r.stderr
        assert "2 uploaded" in r.stdout  # same.bin is a.bin's bytes: one object
        objects = {f"/{BUCKET}/idem/sha256/{sha256(d)}" for d in files.values()}
        lock_path = f"/{BUCKET}/idem/manifests/idem.lock.yaml"
        assert sorted(_writes(relay)) == sorted([("PUT", o) for o in objects] + [("PUT", lock_path)])
        assert_no_secret(r.stdout, r.stderr)

        relay.clear()
        r = run_cli("mirror", "push", str(m), target, "--dest", str(tmp_path / "models"), "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert _writes(relay) == [], "a second push writes nothing"
        assert sorted(p for meth, p in relay.requests if meth == "HEAD") == sorted(objects)
        doc = json.loads(r.stdout)
        assert {f["status"] for f in doc["files"]} == {"present"} and doc["locks"][0]["written"] is False

    client = seaweed.client()
    head = client.head_object(Bucket=BUCKET, Key=f"idem/sha256/{sha256(files['b/c.bin'])}", ChecksumMode="ENABLED")
    assert declared(head) == {"sha256": sha256(files["b/c.bin"])}, "a single PUT leaves its sha256 with the object"
    text = client.get_object(Bucket=BUCKET, Key="idem/manifests/idem.lock.yaml")["Body"].read().decode()
    assert_no_secret(text)
    (tmp_path / "lock.yaml").write_text(text)
    assert {k: p.sha256 for k, p in load_lock(tmp_path / "lock.yaml").files.items()} == {
        k: sha256(d) for k, d in files.items()}
    assert_no_secret_under(tmp_path / "models")


def test_a_large_file_goes_up_in_parts(seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SINGLE_PUT a push is a multipart upload (a smaller threshold here, so the test stays small)."""
    data = blob(20 << 20, seed=33)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    m = manifest(tmp_path / "parts.yaml", {"big.bin": {"url": (src / "big.bin").as_uri(), "md5": md5(data)}})
    monkeypatch.setattr(mirrortargets, "SINGLE_PUT", 8 << 20)
    with Relay(seaweed.ports["s3.port"]) as relay:
        for k, v in s3_env(seaweed, tmp_path, relay.endpoint).items():
            monkeypatch.setenv(k, v)
        result = push(m, f"s3://{BUCKET}/parts", dest=tmp_path / "models")
        assert result.ok and [f.status for f in result.files] == ["uploaded"]
        key = f"/{BUCKET}/parts/sha256/{sha256(data)}"
        assert relay.count("PUT", key) == 3 and relay.count("POST", key) == 2  # 3 parts; create and complete
    client = seaweed.client()
    assert client.get_object(Bucket=BUCKET, Key=f"parts/sha256/{sha256(data)}")["Body"].read() == data
    again = push(m, f"s3://{BUCKET}/parts", dest=tmp_path / "models")
    assert [f.status for f in again.files] == ["present"] and again.locks == {"parts": False}


def test_the_hashed_mirror_serves_every_file_when_the_original_hosts_are_unreachable(
        seaweed: SeaweedS3, server: TestServer, tmp_path: Path) -> None:
    files = {"sam/vit_b.pth": blob(2 << 20, seed=34), "raft/things.pth": blob(10 << 20, seed=35)}  # one in pieces
    m, reach = _world(tmp_path, server, files, "site")
    r = run_cli("mirror", "push", str(m), f"s3://{BUCKET}/site", "--dest", str(tmp_path / "connected"), *reach,
                env=s3_env(seaweed, tmp_path))
    assert r.returncode == 0, r.stderr
    asked = len(server.requests)
    with Relay(seaweed.ports["s3.port"]) as relay:
        env = _dead_hosts(seaweed, tmp_path, relay.endpoint, CKPTFETCH_HASHED_MIRRORS=f"s3://{BUCKET}/site")
        for extra in ([], ["--offline"]):
            dest = tmp_path / f"site{len(extra)}"
            r = run_cli("get", str(m), "--dest", str(dest), *extra, env=env)
            assert r.returncode == 0, r.stderr
            for path, data in files.items():
                assert (dest / path).read_bytes() == data
            assert run_cli("verify", str(dest), env=env).returncode == 0
            assert_no_secret(r.stdout, r.stderr)
            assert_no_secret_under(dest)
        assert relay.settle() < 2 * sum(len(d) for d in files.values()) + (1 << 20)  # each byte once per get
    assert len(server.requests) == asked, "no request reached the original host"


def test_a_wrong_object_on_the_s3_mirror_is_refused_and_the_next_source_used(
        seaweed: SeaweedS3, server: TestServer, tmp_path: Path) -> None:
    same, declared_wrong = blob(500_000, seed=36), blob(400_000, seed=37)
    # Right size, wrong bytes, no checksum: downloaded, refused by the hash. Wrong bytes the store declares a
    # sha256 for: refused before any byte moves.
    seaweed.put(BUCKET, f"wrong/sha256/{sha256(same)}", blob(len(same), seed=98))
    seaweed.put(BUCKET, f"wrong/sha256/{sha256(declared_wrong)}", blob(len(declared_wrong), seed=97),
                ChecksumAlgorithm="SHA256")
    m = manifest(tmp_path / "wrong.yaml", {
        "same.bin": {"url": server.add("/same.bin", same), "sha256": sha256(same)},
        "declared.bin": {"url": server.add("/declared.bin", declared_wrong), "sha256": sha256(declared_wrong)}})
    dest = tmp_path / "out"
    with Relay(seaweed.ports["s3.port"]) as relay:
        r = run_cli("get", str(m), "--dest", str(dest), "--hashed-mirror", f"s3://{BUCKET}/wrong",
                    env=s3_env(seaweed, tmp_path, relay.endpoint))
        assert r.returncode == 0, r.stderr
        assert relay.count("GET", f"/{BUCKET}/wrong/sha256/{sha256(same)}") == 1
        assert relay.count("GET", f"/{BUCKET}/wrong/sha256/{sha256(declared_wrong)}") == 0
    assert (dest / "same.bin").read_bytes() == same and (dest / "declared.bin").read_bytes() == declared_wrong
    assert server.hits("/same.bin") == 1 and server.hits("/declared.bin") == 1


@pytest.mark.parametrize(("change", "words"), [
    ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, ("SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY")),
    ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, ("no AWS credentials",)),
])
def test_a_push_refused_by_the_store_is_one_sentence(change: dict[str, str], words: tuple[str, ...],
                                                     seaweed: SeaweedS3, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"payload")
    m = manifest(tmp_path / "refused.yaml", {"a.bin": {"url": src.as_uri(), "md5": md5(b"payload")}})
    env = {k: v for k, v in s3_env(seaweed, tmp_path, **change).items() if v}  # "" means unset
    r = run_cli("mirror", "push", str(m), f"s3://{BUCKET}/refused", "--dest", str(tmp_path / "models"), env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    for word in (f"s3://{BUCKET}/refused/sha256/{sha256(b'payload')}", *words):
        assert word in r.stderr, r.stderr
    assert_no_secret(r.stdout, r.stderr)


RANKS = 64


def test_a_jobs_64_ranks_on_one_shared_folder_fetch_each_object_once(
        seaweed: SeaweedS3, server: TestServer, tmp_path: Path) -> None:
    """64 processes started together (half `ckptfetch get`, half `ckptfetch.path()`), as a job's ranks would."""
    files = {f"ranks/part{i}.bin": blob((i + 1) << 20, seed=40 + i) for i in range(4)}  # under 8 MiB: one GET each
    m, reach = _world(tmp_path, server, files, "ranks")
    r = run_cli("mirror", "push", str(m), f"s3://{BUCKET}/ranks", "--dest", str(tmp_path / "connected"), *reach,
                env=s3_env(seaweed, tmp_path))
    assert r.returncode == 0, r.stderr
    shared = tmp_path / "shared"
    code = ("import ckptfetch, sys\n"
            "for f in sys.argv[3:]:\n"
            "    assert ckptfetch.path(sys.argv[1], f, dest=sys.argv[2]).read_bytes()\n")
    with Relay(seaweed.ports["s3.port"]) as relay:
        # The job's node starts with an empty store of its own (the push above filled this test's store).
        env = _dead_hosts(seaweed, tmp_path, relay.endpoint, CKPTFETCH_HASHED_MIRRORS=f"s3://{BUCKET}/ranks",
                          CKPTFETCH_TIMEOUT="120", CKPTFETCH_CACHE=str(tmp_path / "node-store"))
        started = time.monotonic()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(shared), "-q"] if rank % 2 == 0 else
            [sys.executable, "-c", code, str(m), str(shared), *files], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(RANKS)]
        outcomes = [(p.wait(600), *p.communicate()) for p in procs]
        wall = time.monotonic() - started
        relay.settle()
        failed = [(rank, code, err[-800:]) for rank, (code, _, err) in enumerate(outcomes) if code != 0]
        assert not failed, failed
        per_object = {p: relay.count("GET", f"/{BUCKET}/ranks/sha256/{sha256(d)}") for p, d in files.items()}
        assert per_object == dict.fromkeys(files, 1), per_object
        lock_requests = sum(1 for _, p in relay.requests if p.endswith("ranks.lock.yaml"))
        # A rank that finds every file in place (by the manifest's own md5s) asks the mirror nothing.
        relay.clear()
        r = run_cli("get", str(m), "--dest", str(shared), env=env)
        assert r.returncode == 0 and "4 present" in r.stdout, r.stderr
        assert relay.requests == []
    for path, data in files.items():
        assert (shared / path).read_bytes() == data
    assert run_cli("verify", str(shared), env=env).returncode == 0
    assert sorted(p.name for p in shared.iterdir()) == [".ckptfetch", "ranks"]
    print(f"\n{RANKS} ranks: {wall:.1f} s wall; GETs per object {per_object}; {lock_requests} requests for the "
          "mirror's lock")
