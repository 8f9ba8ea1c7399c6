"""Hostile archives (README Guarantee 7): each is refused with a clear message and
nothing is written outside the destination.

Every archive is built here from tarfile/zipfile or raw bytes, then driven
twice: through `extract()` and through the public CLI (`ckptfetch get` with a
manifest, the archive served by the local test server). After each run the
test walks the whole temporary tree: no file outside the destination, no link
or special file inside it, no listed target from a refused archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import struct
import tarfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ckptfetch.errors import UnsafeArchive
from ckptfetch.extract import Wanted, extract

from . import faultstats
from .conftest import run_cli, sha256
from .httpserver import TestServer

GOOD = b"a perfectly good checkpoint\n" * 100

# --- builders ---------------------------------------------------------------------------------


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]], compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w",  # type: ignore[call-overload]
                      format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def ti(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def zip_bytes(entries: list[tuple[str, bytes, int | None]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data, attr in entries:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = method
                if attr is not None:
                    info.external_attr = attr << 16
                    info.create_system = 3  # unix: the mode bits mean what they say
                zf.writestr(info, data)
    return buf.getvalue()


def _patch_central(data: bytes, index: int, **fields: int) -> bytes:
    """Rewrite fields of the `index`-th central directory entry (and its local header sizes)."""
    out = bytearray(data)
    pos = -1
    for _ in range(index + 1):
        pos = out.index(b"PK\x01\x02", pos + 1)
    if "offset" in fields:
        struct.pack_into("<I", out, pos + 42, fields["offset"])
    if "file_size" in fields:
        struct.pack_into("<I", out, pos + 24, fields["file_size"])
        local = struct.unpack_from("<I", out, pos + 42)[0]
        struct.pack_into("<I", out, local + 22, fields["file_size"])
    return bytes(out)


def overlapping_zip() -> bytes:
    """Two central entries pointing into the same local data: the classic overlap bomb."""
    raw = zip_bytes([("good.pth", GOOD, None), ("other.pth", GOOD, None)])
    first_local = 0
    return _patch_central(raw, 1, offset=first_local)


def half_overlapping_zip() -> bytes:
    raw = zip_bytes([("good.pth", GOOD, None), ("other.pth", GOOD, None)])
    return _patch_central(raw, 1, offset=10)


def huge_declared_zip() -> bytes:
    return _patch_central(zip_bytes([("good.pth", GOOD, None)]), 0, file_size=3 << 30)


def huge_declared_tar(outside: Path) -> bytes:
    info = tarfile.TarInfo("good.pth")
    info.size = 1 << 40  # one TiB declared, a few bytes present
    return info.tobuf(tarfile.GNU_FORMAT) + GOOD[:1024] + b"\0" * 1024


def zeros_zip() -> bytes:
    return zip_bytes([("good.pth", b"\0" * (24 << 20), None)])


def zeros_tgz() -> bytes:
    return tar_bytes([ti("good.pth", b"\0" * (24 << 20))], "gz")


# --- the cases: (archive bytes, {target: member}, expected message regex) -----------------------


@dataclass
class Case:
    build: Callable[[Path], bytes]  # gets the "outside" folder, for absolute names pointing at it
    files: dict[str, str]  # target -> member
    message: str
    fmt: str = ""  # manifest `format:` hint when detection needs it


S_LNK = stat.S_IFLNK | 0o777
CASES: dict[str, Case] = {
    "zip-slip": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("../../outside/evil.txt", b"pwned", None)]),
                     {"m/good.pth": "good.pth"}, r"entry '\.\./\.\./outside/evil\.txt' climbs out with `\.\.`"),
    "tar-slip": Case(lambda o: tar_bytes([ti("good.pth", GOOD), ti("../outside/evil.txt", b"pwned")], "gz"),
                     {"m/good.pth": "good.pth"}, r"climbs out with `\.\.`"),
    "dotdot-inside": Case(lambda o: tar_bytes([ti("good.pth", GOOD), ti("a/../../evil.txt", b"pwned")]),
                          {"m/good.pth": "good.pth"}, r"climbs out"),
    "absolute-tar": Case(lambda o: tar_bytes([ti("good.pth", GOOD), ti(str(o / "evil.txt"), b"pwned")], "bz2"),
                         {"m/good.pth": "good.pth"}, r"is an absolute path"),
    "absolute-zip": Case(lambda o: zip_bytes([("good.pth", GOOD, None), (str(o / "evil.txt"), b"pwned", None)]),
                         {"m/good.pth": "good.pth"}, r"is an absolute path"),
    "drive-letter": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("C:/Windows/evil.dll", b"pwned", None)]),
                         {"m/good.pth": "good.pth"}, r"is an absolute path"),
    "symlink-tar": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.SYMTYPE, linkname=str(o / "target"))], "xz"),
                        {"m/good.pth": "good.pth"}, r"member 'good\.pth' of .* is a link; refused"),
    "symlink-relative-tar": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.SYMTYPE, linkname="../../../etc/passwd")]),
                                 {"m/good.pth": "good.pth"}, r"is a link; refused"),
    "symlink-zip": Case(lambda o: zip_bytes([("good.pth", str(o / "target").encode(), S_LNK)]),
                        {"m/good.pth": "good.pth"}, r"is not a regular file \(a link or special file\); refused"),
    "hardlink-tar": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.LNKTYPE, linkname="/etc/passwd")]),
                         {"m/good.pth": "good.pth"}, r"is a link; refused"),
    "hardlink-to-member": Case(lambda o: tar_bytes([ti("real.pth", GOOD), ti("good.pth", kind=tarfile.LNKTYPE, linkname="real.pth")]),
                               {"m/good.pth": "good.pth"}, r"is a link; refused"),
    "char-device": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.CHRTYPE)]),
                        {"m/good.pth": "good.pth"}, r"is a device or special file; refused"),
    "block-device": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.BLKTYPE)]),
                         {"m/good.pth": "good.pth"}, r"is a device or special file; refused"),
    "fifo": Case(lambda o: tar_bytes([ti("good.pth", kind=tarfile.FIFOTYPE)]),
                 {"m/good.pth": "good.pth"}, r"is a device or special file; refused"),
    "fifo-zip": Case(lambda o: zip_bytes([("good.pth", b"", stat.S_IFIFO | 0o644)]),
                     {"m/good.pth": "good.pth"}, r"not a regular file"),
    "setuid-tar": Case(lambda o: tar_bytes([ti("good.pth", GOOD, mode=0o4755)]),
                       {"m/good.pth": "good.pth"}, r"has a setuid/setgid bit; refused"),
    "setgid-tar": Case(lambda o: tar_bytes([ti("good.pth", GOOD, mode=0o2755)], "gz"),
                       {"m/good.pth": "good.pth"}, r"has a setuid/setgid bit; refused"),
    "setuid-zip": Case(lambda o: zip_bytes([("good.pth", GOOD, stat.S_IFREG | 0o4755)]),
                       {"m/good.pth": "good.pth"}, r"has a setuid/setgid bit; refused"),
    "overlapping-zip": Case(lambda o: overlapping_zip(), {"m/good.pth": "good.pth"}, r"share the same data|overlap"),
    "half-overlapping-zip": Case(lambda o: half_overlapping_zip(), {"m/good.pth": "good.pth"}, r"overlap"),
    "bomb-ratio-zip": Case(lambda o: zeros_zip(), {"m/good.pth": "good.pth"}, r"like a decompression bomb"),
    "bomb-ratio-tgz": Case(lambda o: zeros_tgz(), {"m/good.pth": "good.pth"}, r"like a decompression bomb"),
    "bomb-size-zip": Case(lambda o: huge_declared_zip(), {"m/good.pth": "good.pth"}, r"like a decompression bomb"),
    "bomb-size-tar": Case(huge_declared_tar, {"m/good.pth": "good.pth"}, r"like a decompression bomb", fmt="tar"),
    "twice-tar": Case(lambda o: tar_bytes([ti("good.pth", GOOD), ti("good.pth", b"evil twin")]),
                      {"m/good.pth": "good.pth"}, r"appears more than once"),
    "twice-zip": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("good.pth", b"evil twin", None)]),
                      {"m/good.pth": "good.pth"}, r"appears 2 times"),
    "twice-dot-slash": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("./good.pth", b"evil twin", None)]),
                            {"m/good.pth": "good.pth"}, r"appears 2 times"),
    "twice-unicode-nfd": Case(lambda o: tar_bytes([ti("caf\u00e9.pth", GOOD), ti(unicodedata.normalize("NFD", "caf\u00e9.pth"), b"evil twin")]),
                              {"m/cafe.pth": "caf\u00e9.pth"}, r"appears more than once"),
    "backslash-slip": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("..\\..\\evil.txt", b"pwned", None)]),
                           {"m/good.pth": "good.pth"}, r"climbs out"),
    "backslash-name": Case(lambda o: zip_bytes([("models\\good.pth", GOOD, None)]),
                           {"m/good.pth": "models/good.pth"}, r"member 'models/good\.pth' is not in archive"),
    "bidi-override": Case(lambda o: zip_bytes([("good.pth", GOOD, None), ("evil\u202egnp.exe", b"pwned", None)]),
                          {"m/good.pth": "good.pth"}, r"control or bidirectional-override characters"),
    "newline-name": Case(lambda o: tar_bytes([ti("good.pth", GOOD), ti("evil\nOK: good.pth", b"pwned")]),
                         {"m/good.pth": "good.pth"}, r"control or bidirectional-override characters"),
}


# --- the checks ------------------------------------------------------------------------------------


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def assert_contained(root: Path, dest: Path, before: set[str], targets: list[str]) -> None:
    """Nothing new outside `dest`; inside it no link, no special file, no refused target."""
    outside_new = {p for p in tree(root) - before if not (root / p).is_relative_to(dest)}
    written = sum((root / p).stat().st_size for p in outside_new if (root / p).is_file())
    faultstats.count("bytes written outside the destination", written)
    assert not outside_new, f"written outside the destination: {outside_new}"
    for p in dest.rglob("*"):
        mode = p.lstat().st_mode
        assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), f"{p} is a link or special file"
        if stat.S_ISREG(mode):
            assert not mode & (stat.S_ISUID | stat.S_ISGID), f"{p} has a setuid/setgid bit"
    for t in targets:
        assert not (dest / t).exists(), f"{t} came out of a refused archive"
    assert not list(dest.rglob("*.ckptfetch-partial")), "a partial file was left behind"


def layout(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").mkdir()
    dest = tmp_path / "dest"
    return outside, dest


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_refuses(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    outside, dest = layout(tmp_path)
    archive = tmp_path / "archive.bin"
    archive.write_bytes(case.build(outside))
    before = tree(tmp_path)
    wanted = [Wanted(member, dest / target, target, {"sha256": sha256(GOOD)}, None) for target, member in case.files.items()]
    try:
        results = extract(archive, wanted, label="hostile (archive)", declared_format=case.fmt or None)
    except UnsafeArchive as exc:
        message = str(exc)
    else:
        errors = [r for r in results.values() if not isinstance(r, dict)]
        assert errors, f"{name}: nothing was refused: {results}"
        message = str(errors[0])
    assert "\n" not in message.replace("\\n", "")
    import re

    assert re.search(case.message, message), f"{name}: {message!r}"
    assert_contained(tmp_path, dest, before, list(case.files))
    faultstats.count("hostile archives refused (extract)")


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_refuses(name: str, server: TestServer, tmp_path: Path) -> None:
    case = CASES[name]
    outside, dest = layout(tmp_path)
    data = case.build(outside)
    server.add("/hostile.bin", data)
    archive: dict[str, object] = {"url": server.url + "/hostile.bin", "sha256": sha256(data)}
    if case.fmt:
        archive["format"] = case.fmt
    m = tmp_path / "hostile.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "hostile", "archives": {"bad": archive},
                             "files": {t: {"archive": "bad", "member": mem, "sha256": sha256(GOOD)}
                                       for t, mem in case.files.items()}}))
    before = tree(tmp_path)
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress")
    assert r.returncode == 1, r.stdout + r.stderr
    import re

    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(case.files), r.stderr
    assert re.search(case.message, errors[0]), f"{name}: {errors[0]!r}"
    assert "Traceback" not in r.stderr
    assert_contained(tmp_path, dest, before, list(case.files))
    assert server.hits("/hostile.bin") == 1, "a hostile (not corrupt) archive is not downloaded twice"
    faultstats.count("hostile archives refused (CLI)")


def test_two_step_link_planted_by_one_archive_used_by_the_next(server: TestServer, tmp_path: Path) -> None:
    """Archive 1 tries to plant `link -> outside`; archive 2 then writes `link/x.pth`.

    The link is never created, so the second write lands in a real folder inside DIR.
    """
    outside, dest = layout(tmp_path)
    first = tar_bytes([ti("link", kind=tarfile.SYMTYPE, linkname=str(outside / "target")),
                       ti("ok.pth", GOOD)], "gz")
    second = tar_bytes([ti("x.pth", GOOD)], "gz")
    server.add("/one.tgz", first)
    server.add("/two.tgz", second)
    m1 = tmp_path / "one.yaml"
    m1.write_text(json.dumps({"ckptfetch": 1, "name": "one", "archives": {"a": {"url": server.url + "/one.tgz"}},
                              "files": {"link": {"archive": "a", "member": "link"},
                                        "ok.pth": {"archive": "a", "member": "ok.pth", "sha256": sha256(GOOD)}}}))
    m2 = tmp_path / "two.yaml"
    m2.write_text(json.dumps({"ckptfetch": 1, "name": "two", "archives": {"b": {"url": server.url + "/two.tgz"}},
                              "files": {"link/x.pth": {"archive": "b", "member": "x.pth", "sha256": sha256(GOOD)}}}))
    before = tree(tmp_path)
    r1 = run_cli("get", str(m1), "--dest", str(dest), "--no-progress")
    assert r1.returncode == 1 and "member 'link' of a (archive) is a link; refused" in r1.stderr, r1.stderr
    assert (dest / "ok.pth").read_bytes() == GOOD  # the safe member of the same archive still arrives
    assert not (dest / "link").exists() and not (dest / "link").is_symlink()
    r2 = run_cli("get", str(m2), "--dest", str(dest), "--no-progress")
    assert r2.returncode == 0, r2.stderr
    assert (dest / "link").is_dir() and not (dest / "link").is_symlink()
    assert (dest / "link/x.pth").read_bytes() == GOOD
    assert list((outside / "target").iterdir()) == []
    assert_contained(tmp_path, dest, before, [])
    faultstats.count("hostile archives refused (CLI)")


def test_a_listed_member_twice_is_a_manifest_error(tmp_path: Path) -> None:
    m = tmp_path / "twice.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "twice", "archives": {"a": {"url": "http://127.0.0.1:9/a.zip"}},
                             "files": {"x.pth": {"archive": "a", "member": "w.pth"},
                                       "y.pth": {"archive": "a", "member": "w.pth"}}}))
    r = run_cli("get", str(m), "--dest", str(tmp_path / "d"))
    assert r.returncode == 2 and "member 'w.pth' of archive 'a' is already taken by 'x.pth'" in r.stderr


@pytest.mark.parametrize("member", ["../evil.pth", "/etc/passwd", "a\\b.pth", "C:/x.pth", "a/../../b.pth"])
def test_hostile_member_names_in_the_manifest_are_manifest_errors(tmp_path: Path, member: str) -> None:
    m = tmp_path / "names.yaml"
    m.write_text(json.dumps({"ckptfetch": 1, "name": "names", "archives": {"a": {"url": "http://127.0.0.1:9/a.zip"}},
                             "files": {"x.pth": {"archive": "a", "member": member}}}))
    r = run_cli("get", str(m), "--dest", str(tmp_path / "d"))
    assert r.returncode == 2 and "member" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_safe_archives_still_work(server: TestServer, tmp_path: Path) -> None:
    """The refusals are specific: an unlisted benign link, Unicode names and store/deflate/bz2/lzma zips are fine."""
    outside, dest = layout(tmp_path)
    name = "\u6a21\u578b/\u6743\u91cd.pth"
    archives = {
        "t": tar_bytes([ti("latest", kind=tarfile.SYMTYPE, linkname="v2"), ti("v2/" + name, GOOD)], "gz"),
        "z0": zip_bytes([("w.pth", GOOD, None)], zipfile.ZIP_STORED),
        "z1": zip_bytes([("w.pth", GOOD, stat.S_IFREG | 0o755)], zipfile.ZIP_BZIP2),
        "z2": zip_bytes([("w.pth", GOOD, None)], zipfile.ZIP_LZMA),
        "zeros": zip_bytes([("w.pth", b"\0" * (1 << 20), None)]),  # 1000:1 but small: not a bomb
    }
    doc: dict[str, object] = {"ckptfetch": 1, "name": "safe", "archives": {}, "files": {}}
    for key, data in archives.items():
        server.add(f"/{key}.bin", data)
        doc["archives"][key] = {"url": f"{server.url}/{key}.bin", "sha256": sha256(data)}  # type: ignore[index]
    doc["files"] = {  # type: ignore[index]
        "uni.pth": {"archive": "t", "member": "v2/" + name, "sha256": sha256(GOOD)},
        "z0.pth": {"archive": "z0", "member": "w.pth", "sha256": sha256(GOOD)},
        "z1.pth": {"archive": "z1", "member": "w.pth", "sha256": sha256(GOOD)},
        "z2.pth": {"archive": "z2", "member": "w.pth", "sha256": sha256(GOOD)},
        "zeros.pth": {"archive": "zeros", "member": "w.pth", "sha256": hashlib.sha256(b"\0" * (1 << 20)).hexdigest()},
    }
    m = tmp_path / "safe.yaml"
    m.write_text(json.dumps(doc))
    r = run_cli("get", str(m), "--dest", str(dest), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (dest / "uni.pth").read_bytes() == GOOD
    assert {p.name for p in dest.iterdir()} == {".ckptfetch", "uni.pth", "z0.pth", "z1.pth", "z2.pth", "zeros.pth"}
    assert zlib.crc32((dest / "zeros.pth").read_bytes()) == zlib.crc32(b"\0" * (1 << 20))
