"""s3:// sources and mirrors against a real S3-compatible store (SeaweedFS on 127.0.0.1, tests/s3server.py).

Buckets are filled with boto3; `ckptfetch get` runs as a subprocess with the
standard AWS variables pointing at the store (or at a counting, throttling
relay in front of it). Nothing is mocked: presigned URLs, Range, ETags and the
store's error answers are SeaweedFS's own.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptfetch.sources.s3 import declared, parse

from .conftest import cli_env, md5, run_cli, sha256
from .s3server import ACCESS_KEY, SECRET_KEY, Relay, SeaweedS3, free_ports, without_boto3

TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKEN"
SECRETS = (ACCESS_KEY, SECRET_KEY, TOKEN, "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature=")


def blob(n: int, seed: int) -> bytes:
    """`n` pseudo-random bytes, quickly (tens of MiB per test)."""
    return random.Random(seed).randbytes(n)


def s3_env(store: SeaweedS3, home: Path, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """The CLI's test environment without the user's AWS settings, plus the store's."""
    env = {k: v for k, v in cli_env().items() if not k.startswith("AWS_")}
    env.update(store.env(home, endpoint))
    env.update(extra)
    return env


def manifest(path: Path, files: dict[str, dict[str, object]]) -> Path:
    path.write_text(json.dumps({"ckptfetch": 1, "name": path.stem, "files": files}))
    return path


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked: {text[:2000]}"


def assert_no_secret_under(folder: Path) -> None:
    """No file under `folder` (partials, sidecars, the record, the state cache) holds a credential."""
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret!r} at rest in {p}"


def one_sentence_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert_no_secret(proc.stdout, proc.stderr)
    return proc.stderr


def sidecar_done(side: Path) -> int:
    """Bytes a segmented partial's sidecar records as written (0 while there is none)."""
    try:
        pieces = json.loads(side.read_text()).get("pieces") or []
    except (OSError, ValueError):
        return 0
    return sum(p[2] - p[0] for p in pieces)


def kill_when(proc: subprocess.Popen[bytes], side: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sidecar_done(side) < at_least:
        assert proc.poll() is None, "the run ended before it could be killed mid-download"
        assert time.monotonic() < deadline, "the download never got far enough"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def start_get(m: Path, dest: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ckptfetch", "get", str(m), "--dest", str(dest), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


# --- fetching ------------------------------------------------------------------------------------


def test_get_plain_and_segmented_from_s3(seaweed: SeaweedS3, tmp_path: Path) -> None:
    small, big = blob(300_000, seed=1), blob(24 << 20, seed=2)  # big: past the 8 MiB probe, so it comes in pieces
    seaweed.put("models", "plain/small.bin", small)
    seaweed.put("models", "seg/big.bin", big)
    m = manifest(tmp_path / "s3get.yaml", {
        "small.bin": {"url": "s3://models/plain/small.bin", "md5": md5(small)},
        "big.bin": {"url": "s3://models/seg/big.bin", "md5": md5(big), "size": len(big)},
    })
    dest = tmp_path / "out"
    with Relay(seaweed.ports["s3.port"]) as relay:
        proc = run_cli("get", str(m), "--dest", str(dest), "--json",
                       env=s3_env(seaweed, tmp_path, relay.endpoint, CKPTFETCH_CONNECTIONS="4", CKPTFETCH_TIMEOUT="30"))
        assert proc.returncode == 0, proc.stderr
        assert relay.peak >= 2  # the big file's ranges came over several connections at once
        assert relay.settle() < len(small) + len(big) + (64 << 10)  # each byte once, plus headers
    assert (dest / "small.bin").read_bytes() == small
    assert (dest / "big.bin").read_bytes() == big
    doc = json.loads(proc.stdout)
    assert {f["path"]: f["status"] for f in doc["files"]} == {"small.bin": "fetched", "big.bin": "fetched"}
    assert run_cli("verify", str(dest)).returncode == 0
    assert sorted(p.name for p in dest.iterdir()) == [".ckptfetch", "big.bin", "small.bin"]
    assert_no_secret(proc.stdout, proc.stderr)
    assert_no_secret_under(dest)


def test_resume_after_sigkill_asks_only_for_the_missing_bytes(seaweed: SeaweedS3, tmp_path: Path) -> None:
    data = blob(32 << 20, seed=3)
    seaweed.put("models", "resume/big.bin", data)
    m = manifest(tmp_path / "s3resume.yaml", {"big.bin": {"url": "s3://models/resume/big.bin", "sha256": sha256(data)}})
    dest = tmp_path / "out"
    side = dest / "big.bin.ckptfetch-partial.json"
    with Relay(seaweed.ports["s3.port"], rate=4 << 20) as relay:
        # A long read timeout: a retry after a stall on a busy machine would count bytes twice.
        env = s3_env(seaweed, tmp_path, relay.endpoint, CKPTFETCH_CONNECTIONS="4", CKPTFETCH_TIMEOUT="30")
        kill_when(start_get(m, dest, env), side, at_least=10 << 20)
        before = relay.settle()
        kept = sidecar_done(side)
        assert 0 < kept < len(data)
        assert json.loads(side.read_text())["url"] == "s3://models/resume/big.bin"  # not the presigned URL
        assert_no_secret_under(dest)
        relay.rate = None
        proc = run_cli("get", str(m), "--dest", str(dest), env=env)
        assert proc.returncode == 0, proc.stderr
        resent = relay.settle() - before
    assert (dest / "big.bin").read_bytes() == data
    missing = len(data) - kept
    assert missing <= resent < missing + (64 << 10), (kept, missing, resent)  # the missing bytes, plus headers
    assert not side.exists()


def test_an_object_replaced_upstream_restarts_and_pins_catch_wrong_bytes(seaweed: SeaweedS3, tmp_path: Path) -> None:
    old, new = blob(20 << 20, seed=4), blob(20 << 20, seed=5)  # same size: only the ETag tells them apart
    old_etag = seaweed.put("models", "replaced/m.bin", old)
    dest = tmp_path / "out"
    side = dest / "m.bin.ckptfetch-partial.json"
    # No hash pinned, so nothing but the ETag can tell that the partial belongs to another version.
    m = manifest(tmp_path / "s3replaced.yaml", {"m.bin": {"url": "s3://models/replaced/m.bin", "size": len(old)}})
    with Relay(seaweed.ports["s3.port"], rate=2 << 20) as relay:
        env = s3_env(seaweed, tmp_path, relay.endpoint, CKPTFETCH_CONNECTIONS="4")
        kill_when(start_get(m, dest, env), side, at_least=8 << 20)
        before = relay.settle()
        assert json.loads(side.read_text())["validator"] == old_etag
        assert seaweed.put("models", "replaced/m.bin", new) != old_etag

        # The store ignores If-Range (a stale ETag still gets 206 and the new bytes), so only the
        # validator from the HEAD keeps the old partial from being completed with the new object's bytes.
        import requests

        url = seaweed.client().generate_presigned_url("get_object", Params={"Bucket": "models", "Key": "replaced/m.bin"})
        stale = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": old_etag}, timeout=10)
        assert stale.status_code == 206 and stale.content == new[:10]

        relay.rate = None
        proc = run_cli("get", str(m), "--dest", str(dest), env=env)
        assert proc.returncode == 0, proc.stderr
        resent = relay.settle() - before
    assert (dest / "m.bin").read_bytes() == new
    assert resent >= len(new)  # a restart from byte 0, not a resume

    # A manifest that pins the old bytes: the new object is downloaded, refused, and never reaches the target.
    pinned_old = manifest(tmp_path / "s3old.yaml", {"m.bin": {"url": "s3://models/replaced/m.bin", "md5": md5(old)}})
    proc = run_cli("get", str(pinned_old), "--dest", str(tmp_path / "out2"), env=s3_env(seaweed, tmp_path))
    one_sentence_error(proc, "md5 mismatch", "s3://models/replaced/m.bin", md5(old), md5(new))
    assert not (tmp_path / "out2" / "m.bin").exists()


def test_checksum_the_store_declares_is_checked_before_any_byte_moves(seaweed: SeaweedS3, tmp_path: Path) -> None:
    data = blob(1 << 20, seed=6)
    seaweed.put("models", "sum/m.bin", data, ChecksumAlgorithm="SHA256")  # the store keeps its sha256
    dest = tmp_path / "out"
    wrong = manifest(tmp_path / "s3sum.yaml", {"m.bin": {"url": "s3://models/sum/m.bin", "sha256": sha256(b"other")}})
    with Relay(seaweed.ports["s3.port"]) as relay:
        proc = run_cli("get", str(wrong), "--dest", str(dest), env=s3_env(seaweed, tmp_path, relay.endpoint))
        one_sentence_error(proc, "declares sha256", sha256(data), "Nothing was downloaded")
        assert relay.settle() < 16 << 10  # the HEAD only
    unpinned = manifest(tmp_path / "s3sum2.yaml", {"m.bin": {"url": "s3://models/sum/m.bin"}})
    proc = run_cli("get", str(unpinned), "--dest", str(dest), "--json", env=s3_env(seaweed, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"][0]["digests"]["sha256"] == sha256(data)


# --- mirrors -------------------------------------------------------------------------------------


def test_mirror_https_to_s3_serves_a_manifest_whose_hosts_are_unreachable(seaweed: SeaweedS3, tmp_path: Path) -> None:
    files = {"sam/vit_b.pth": ("dl.fbaipublicfiles.com/segment_anything/sam_vit_b.pth", blob(2 << 20, seed=7)),
             "raft/things.pth": ("www.dropbox.com/s/abc/raft-things.pth", blob(10 << 20, seed=8))}
    for key, data in files.values():
        seaweed.put("mirror", f"ckpt/{key}", data)
    m = manifest(tmp_path / "s3mirror.yaml", {
        path: {"url": f"https://{key}", "md5": md5(data)} for path, (key, data) in files.items()})
    dest = tmp_path / "out"
    dead = free_ports(1)[0]
    # The original hosts are reached only through a proxy that is not there: nothing leaves the machine.
    env = s3_env(seaweed, tmp_path, HTTPS_PROXY=f"http://127.0.0.1:{dead}", NO_PROXY="127.0.0.1")
    proc = run_cli("get", str(m), "--dest", str(dest), "--mirror", "https://=s3://mirror/ckpt/", env=env)
    assert proc.returncode == 0, proc.stderr
    for path, (_, data) in files.items():
        assert (dest / path).read_bytes() == data
    # The same through CKPTFETCH_MIRRORS, for a file the mirror lacks: the original is tried next, and fails.
    missing = manifest(tmp_path / "s3mirror2.yaml", {"x.bin": {"url": "https://example.org/x.bin", "md5": "0" * 32}})
    proc = run_cli("get", str(missing), "--dest", str(dest), env={**env, "CKPTFETCH_MIRRORS": "https://=s3://mirror/ckpt/"})
    one_sentence_error(proc, "s3://mirror/ckpt/example.org/x.bin", "no such object", "https://example.org/x.bin")


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "words"), [
    ("s3://models/no/such/key.bin", ("s3://models/no/such/key.bin", "no such object", "NoSuchKey")),
    ("s3://no-such-bucket/key.bin", ("s3://no-such-bucket/key.bin", "bucket does not exist", "NoSuchBucket")),
])
def test_a_missing_object_or_bucket_is_one_clear_sentence(url: str, words: tuple[str, ...], seaweed: SeaweedS3,
                                                          tmp_path: Path) -> None:
    seaweed.put("models", "present.bin", b"x")
    m = manifest(tmp_path / "s3missing.yaml", {"m.bin": {"url": url, "md5": "0" * 32}})
    proc = run_cli("get", str(m), "--dest", str(tmp_path / "out"), env=s3_env(seaweed, tmp_path))
    text = one_sentence_error(proc, "m.bin", *words)
    assert text.count("s3://") == 1


@pytest.mark.parametrize(("change", "words"), [
    ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, ("SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY")),
    ({"AWS_ACCESS_KEY_ID": "AKIANOTKNOWNHERE0000"}, ("InvalidAccessKeyId", "AWS_ACCESS_KEY_ID")),
    ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, ("no AWS credentials",)),
    ({"AWS_SESSION_TOKEN": TOKEN}, ("cannot read",)),  # temporary credentials the store never issued
])
def test_wrong_or_missing_credentials_are_one_clear_sentence(change: dict[str, str], words: tuple[str, ...],
                                                             seaweed: SeaweedS3, tmp_path: Path) -> None:
    seaweed.put("models", "creds/m.bin", b"payload")
    m = manifest(tmp_path / "s3creds.yaml", {"m.bin": {"url": "s3://models/creds/m.bin", "md5": md5(b"payload")}})
    env = s3_env(seaweed, tmp_path, **change)
    env = {k: v for k, v in env.items() if v}  # "" means unset
    for extra in ([], ["--json", "--debug"]):
        dest = tmp_path / f"out{len(extra)}"
        proc = run_cli("get", str(m), "--dest", str(dest), *extra, env=env)
        one_sentence_error(proc, "s3://models/creds/m.bin", *words)
        assert not (dest / "m.bin").exists()
        assert_no_secret_under(dest)


def test_an_unreachable_endpoint_is_retried_then_named(seaweed: SeaweedS3, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    m = manifest(tmp_path / "s3dead.yaml", {"m.bin": {"url": "s3://models/m.bin", "md5": "0" * 32}})
    started = time.monotonic()
    proc = run_cli("get", str(m), "--dest", str(tmp_path / "out"),
                   env=s3_env(seaweed, tmp_path, dead, CKPTFETCH_RETRIES="2", CKPTFETCH_BACKOFF="0.2"))
    one_sentence_error(proc, "cannot reach the S3 endpoint", dead, "after 3 attempts", "AWS_ENDPOINT_URL")
    assert time.monotonic() - started >= 0.2  # it backed off between the attempts


def test_without_boto3_the_error_names_the_extra(seaweed: SeaweedS3, tmp_path: Path) -> None:
    m = manifest(tmp_path / "s3noboto.yaml", {"m.bin": {"url": "s3://models/m.bin", "md5": "0" * 32}})
    env = s3_env(seaweed, tmp_path, PYTHONPATH=without_boto3(tmp_path / "noboto"))
    assert subprocess.run([sys.executable, "-c", "import boto3"], env=env, capture_output=True).returncode != 0
    proc = run_cli("get", str(m), "--dest", str(tmp_path / "out"), env=env)
    text = one_sentence_error(proc, "s3://models/m.bin", "boto3", "pip install 'ckptfetch[s3]'")
    assert len(text.strip().splitlines()) <= 3
    assert run_cli("show", str(m), env=env).returncode == 0  # only fetching an s3:// file needs it


def test_s3_urls_in_manifests(tmp_path: Path) -> None:
    ok = manifest(tmp_path / "s3ok.yaml", {"a.bin": {"url": "s3://bucket/dir/a.bin"}})
    assert run_cli("show", str(ok)).returncode == 0
    for bad in ("s3://bucket", "s3://bucket/", "s3:///key", "s3://bucket/dir/"):
        m = manifest(tmp_path / "s3bad.yaml", {"a.bin": {"url": bad}})
        proc = run_cli("show", str(m))
        assert proc.returncode == 2 and "s3://BUCKET/KEY" in proc.stderr, (bad, proc.stderr)


@pytest.mark.parametrize(("url", "parsed"), [
    ("s3://models/sam/vit_b.pth", ("models", "sam/vit_b.pth")),
    ("s3://models/a b%20c.bin", ("models", "a b%20c.bin")),  # the key as written
    ("s3://models/dir/", None), ("s3://models", None), ("s3:///key", None), ("https://models/key", None),
])
def test_parse(url: str, parsed: tuple[str, str] | None) -> None:
    assert parse(url) == parsed


SHA = "MNrU59cln7Ahsf/BKr+rjpBBOyeSdMOU4hW5fjRbOAI="  # a real x-amz-checksum-sha256 (base64 of 32 bytes)


@pytest.mark.parametrize(("head", "pins"), [
    ({"ChecksumSHA256": SHA}, {"sha256": "30dad4e7d7259fb021b1ffc12abfab8e90413b279274c394e215b97e345b3802"}),
    ({"ChecksumSHA256": SHA, "ChecksumType": "FULL_OBJECT"}, {"sha256": "30dad4e7d7259fb021b1ffc12abfab8e90413b279274c394e215b97e345b3802"}),
    ({"ChecksumSHA256": SHA + "-3", "ChecksumType": "COMPOSITE"}, {}),  # a checksum of the parts' checksums
    ({"ChecksumSHA256": SHA + "-3"}, {}),
    ({"ChecksumCRC32": "AAAAAA=="}, {}),  # not an algorithm the manifest knows
    ({"ChecksumSHA1": "not base64!"}, {}),
    ({}, {}),
])
def test_only_whole_object_checksums_become_pins(head: dict[str, str], pins: dict[str, str]) -> None:
    assert declared(head) == pins


def test_a_presigned_url_shown_anywhere_is_redacted() -> None:
    """The engine names the URL it fetches only through `redact` (a TLS or redirect error): nothing secret is left."""
    import boto3
    from botocore.config import Config

    from ckptfetch.urls import redact

    client = boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, aws_session_token=TOKEN, config=Config(signature_version="s3v4"))
    url = client.generate_presigned_url("get_object", Params={"Bucket": "models", "Key": "m.bin"})  # signed locally
    assert ACCESS_KEY in url and TOKEN in url and "X-Amz-Signature=" in url
    shown = redact(url)
    assert ACCESS_KEY not in shown and TOKEN not in shown
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    assert signature not in shown
