"""Google Drive, Dropbox and GitHub links, end to end against look-alike hosts.

The manifests keep the real URLs; `FakeHosts` routes them through an HTTPS
proxy to local servers (see tests/fakehosts.py), so every request goes
through the real CLI, sources and engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ckptfetch.sources import dropbox, gdrive, github

from .conftest import blob, cli_env, md5, run_cli
from .fakehosts import FakeHosts
from .httpserver import TestServer

HOSTS = ["drive.google.com", "drive.usercontent.google.com", "accounts.google.com", "www.dropbox.com",
         "uc1f2e.dl.dropboxusercontent.com", "github.com", "raw.githubusercontent.com"]
FID = "1fGhoW33k87OQQHUTmFobMUjEnRixhuqg"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHosts]:
    with FakeHosts(tmp_path_factory.mktemp("pki"), HOSTS) as fake:
        yield fake


def write_manifest(tmp_path: Path, files: dict[str, dict[str, object]], name: str = "web") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"ckptfetch": 1, "name": name, "files": files}))
    return p


def get(manifest: Path, dest: Path, hosts: FakeHosts, *args: str) -> tuple[int, str]:
    r = run_cli("get", str(manifest), "--dest", str(dest), "--no-progress", *args, env=cli_env(**hosts.env))
    assert "Traceback" not in r.stderr
    return r.returncode, r.stdout + r.stderr


def nothing_at(dest: Path) -> bool:
    return not [p for p in dest.rglob("*") if p.is_file() and ".ckptfetch" not in p.parts]


# --- URL forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"https://drive.google.com/file/d/{FID}/view?usp=sharing",
    f"https://drive.google.com/file/d/{FID}/view",
    f"https://drive.google.com/file/u/0/d/{FID}/edit",
    f"https://drive.google.com/open?id={FID}",
    f"https://drive.google.com/uc?id={FID}",
    f"https://drive.google.com/uc?export=download&id={FID}",
    f"https://docs.google.com/uc?export=download&id={FID}",
    f"https://drive.google.com/u/0/uc?id={FID}&export=download",
    f"https://drive.usercontent.google.com/download?id={FID}&export=download&authuser=0",
])
def test_drive_share_links_name_the_file(url: str) -> None:
    assert gdrive.file_id(url) == FID


@pytest.mark.parametrize("url", [
    f"https://drive.google.com/drive/folders/{FID}",
    f"https://docs.google.com/document/d/{FID}/edit",
    f"https://example.org/file/d/{FID}/view",
    f"http://127.0.0.1:8000/drive.google.com/file/d/{FID}/view",
    f"https://drive.google.com/download?id={FID}",
])
def test_other_urls_are_not_drive_files(url: str) -> None:
    assert gdrive.file_id(url) is None


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip", "https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip?dl=1"),
    ("https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip?dl=0", "https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip?dl=1"),
    ("https://www.dropbox.com/scl/fi/czdlt2zc/ref.tar.gz?rlkey=56ebq4g5&dl=0&st=x1",
     "https://www.dropbox.com/scl/fi/czdlt2zc/ref.tar.gz?rlkey=56ebq4g5&dl=1&st=x1"),
    ("https://www.dropbox.com/scl/fi/czdlt2zc/ref.tar.gz?rlkey=56ebq4g5", "https://www.dropbox.com/scl/fi/czdlt2zc/ref.tar.gz?rlkey=56ebq4g5&dl=1"),
])
def test_dropbox_links_ask_for_the_bytes(url: str, expected: str) -> None:
    assert dropbox.is_share_link(url)
    assert dropbox.download_url(url) == expected


def test_github_blob_becomes_raw() -> None:
    assert github.raw_url("https://github.com/o/r/blob/0123abc/models/w.pth") == "https://github.com/o/r/raw/0123abc/models/w.pth"
    assert github.raw_url("https://github.com/o/r/raw/main/w.pth") is None  # fine as it is
    assert github.raw_url("https://raw.githubusercontent.com/o/r/main/w.pth") is None


def test_drive_confirmation_page_shapes() -> None:
    form = ('<html><body><form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="submit" value="Download anyway"/><input type="hidden" name="id" value="ID1">'
            '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="u-1"></form></body></html>')
    assert gdrive.confirmation_url(form, "https://drive.usercontent.google.com/download?id=ID1&export=download") == (
        "https://drive.usercontent.google.com/download?id=ID1&export=download&confirm=t&uuid=u-1")
    old = '<a id="uc-download-link" class="goog-inline-block" href="/uc?export=download&amp;confirm=Xy_z&amp;id=ID1">'
    assert gdrive.confirmation_url(old, "https://drive.google.com/uc?export=download&id=ID1") == (
        "https://drive.google.com/uc?export=download&confirm=Xy_z&id=ID1")
    js = '{"downloadUrl":"https://drive.usercontent.google.com/download?id\\u003dID1\\u0026confirm\\u003dt"}'
    assert gdrive.confirmation_url(js, "https://drive.google.com/x") == "https://drive.usercontent.google.com/download?id=ID1&confirm=t"
    assert gdrive.confirmation_url("<html><title>Hi</title></html>", "https://drive.google.com/x") is None


# --- Google Drive, end to end -------------------------------------------------------------------

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">w.pth</a> (1.2G)</span>
is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="3f1c2a7e-0b1d-4c5e-9f00-aa11bb22cc33">
</form></div></div></body></html>"""

QUOTA_PAGE = """<html><head><title>Google Drive - Quota exceeded</title></head><body><div class="uc-main">
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try accessing the
file again later. If the file you are trying to access is particularly large or is shared with many people, it may take
up to 24 hours to be able to view or download the file.</p></div></body></html>"""

SIGN_IN_PAGE = "<html><head><title>Google Drive: Sign-in</title></head><body>Sign in to continue to Google Drive</body></html>"
NEED_ACCESS_PAGE = "<html><head><title>Google Drive</title></head><body><h1>You need access</h1>Request access, or switch to an account with access.</body></html>"
NOT_FOUND_PAGE = "<html><head><title>Google Drive - File not found</title></head><body><p>Sorry, the file you have requested does not exist.</p></body></html>"


def test_drive_large_file_goes_through_the_confirmation_form(hosts: FakeHosts, tmp_path: Path) -> None:
    fid = "1LargeFileConfirmForm00"
    data = blob(300_000, seed=11)
    drive, content = hosts["drive.google.com"], hosts["drive.usercontent.google.com"]
    drive.add(f"/file/d/{fid}/view", b"<html>the viewer page</html>", content_type="text/html; charset=utf-8")
    drive.redirect(f"/uc?export=download&id={fid}", f"https://drive.usercontent.google.com/download?id={fid}&export=download", 303)
    content.add(f"/download?id={fid}&export=download", CONFIRM_PAGE.format(id=fid).encode(), content_type="text/html; charset=utf-8")
    content.add(f"/download?id={fid}&export=download&confirm=t&uuid=3f1c2a7e-0b1d-4c5e-9f00-aa11bb22cc33", data,
                headers={"Content-Disposition": 'attachment; filename="w.pth"'})
    m = write_manifest(tmp_path, {"ckpt/w.pth": {"url": f"https://drive.google.com/file/d/{fid}/view?usp=sharing", "md5": md5(data)}})

    code, out = get(m, tmp_path / "out", hosts)
    assert code == 0, out
    assert (tmp_path / "out/ckpt/w.pth").read_bytes() == data
    assert drive.hits(f"/file/d/{fid}/view") == 0, "the viewer page is never fetched"
    assert hosts.proxy.connects.count("drive.google.com") >= 1


def test_drive_old_confirmation_link(hosts: FakeHosts, tmp_path: Path) -> None:
    fid = "1OldStyleConfirmLink0"
    data = blob(50_000, seed=12)
    drive = hosts["drive.google.com"]
    old_page = (f'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                f'<a id="uc-download-link" href="/uc?export=download&amp;confirm=Qx7_&amp;id={fid}">Download anyway</a></body></html>')
    drive.add(f"/uc?export=download&id={fid}", old_page.encode(), content_type="text/html")
    drive.add(f"/uc?export=download&confirm=Qx7_&id={fid}", data)
    m = write_manifest(tmp_path, {"w.pth": {"url": f"https://drive.google.com/open?id={fid}", "md5": md5(data)}})
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 0, out
    assert (tmp_path / "out/w.pth").read_bytes() == data


def test_drive_small_file_comes_straight(hosts: FakeHosts, tmp_path: Path) -> None:
    fid = "1SmallFileNoWarning00"
    data = blob(4_000, seed=13)
    hosts["drive.google.com"].add(f"/uc?export=download&id={fid}", data)
    m = write_manifest(tmp_path, {"w.pth": {"url": f"https://drive.google.com/uc?id={fid}"}})
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 0, out
    assert (tmp_path / "out/w.pth").read_bytes() == data


@pytest.mark.parametrize(("case", "words"), [
    ("quota", ["quota", "Too many users", "try again"]),
    ("sign-in", ["not shared publicly", "Anyone with the link"]),
    ("need-access", ["not shared publicly", "Anyone with the link"]),
    ("not-found-200", ["has no file", "update the manifest"]),
    ("not-found-404", ["has no file", "update the manifest"]),
])
def test_drive_error_pages_become_one_clear_sentence(hosts: FakeHosts, tmp_path: Path, case: str, words: list[str]) -> None:
    fid = f"1ErrorPage{case.replace('-', '_')}0000"
    drive = hosts["drive.google.com"]
    path = f"/uc?export=download&id={fid}"
    if case == "quota":
        drive.add(path, QUOTA_PAGE.encode(), content_type="text/html; charset=utf-8")
    elif case == "sign-in":
        drive.redirect(path, f"https://accounts.google.com/ServiceLogin?service=wise&continue=https://drive.google.com/uc?id%3D{fid}")
        hosts["accounts.google.com"].add("/ServiceLogin", SIGN_IN_PAGE.encode(), content_type="text/html")
    elif case == "need-access":
        drive.fault(path, "status", status=403, body=NEED_ACCESS_PAGE.encode(), content_type="text/html; charset=utf-8")
    elif case == "not-found-200":
        drive.add(path, NOT_FOUND_PAGE.encode(), content_type="text/html")
    else:
        drive.fault(path, "status", status=404, body=NOT_FOUND_PAGE.encode(), content_type="text/html")
    m = write_manifest(tmp_path, {"ckpt/w.pth": {"url": f"https://drive.google.com/file/d/{fid}/view?usp=drive_link"}})
    dest = tmp_path / "out"
    code, out = get(m, dest, hosts)
    assert code == 1
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1, out
    assert error[0].startswith("error: ckpt/w.pth: Google Drive") and fid in error[0], error[0]
    for w in words:
        assert w in error[0], (w, error[0])
    assert nothing_at(dest), "an HTML page never reaches a target path"
    assert not list(dest.rglob("*.ckptfetch-partial*"))


# --- Dropbox ----------------------------------------------------------------------------------------------


def test_dropbox_share_links_fetch_the_file_not_the_preview(hosts: FakeHosts, tmp_path: Path) -> None:
    box, cdn = hosts["www.dropbox.com"], hosts["uc1f2e.dl.dropboxusercontent.com"]
    a, b = blob(40_000, seed=21), blob(30_000, seed=22)
    preview = b"<html><head><title>Dropbox - m.pth</title></head><body>preview</body></html>"
    box.add("/s/4j4z58wuv8o0mfz/a.pth", preview, content_type="text/html; charset=utf-8")
    box.add("/s/4j4z58wuv8o0mfz/a.pth?dl=0", preview, content_type="text/html; charset=utf-8")
    box.redirect("/s/4j4z58wuv8o0mfz/a.pth?dl=1", "https://uc1f2e.dl.dropboxusercontent.com/cd/0/inline/AAA/file#")
    box.add("/scl/fi/czdlt2zc2ji2b7zd0pvoe/b.pth?rlkey=56ebq4g5dk01kyq8kuismev14&dl=0", preview, content_type="text/html")
    box.redirect("/scl/fi/czdlt2zc2ji2b7zd0pvoe/b.pth?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1",
                 "https://uc1f2e.dl.dropboxusercontent.com/cd/0/inline/BBB/file")
    cdn.add("/cd/0/inline/AAA/file", a)
    cdn.add("/cd/0/inline/BBB/file", b)
    m = write_manifest(tmp_path, {
        "a.pth": {"url": "https://www.dropbox.com/s/4j4z58wuv8o0mfz/a.pth", "md5": md5(a)},
        "b.pth": {"url": "https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/b.pth?rlkey=56ebq4g5dk01kyq8kuismev14&dl=0"},
    })
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 0, out
    assert (tmp_path / "out/a.pth").read_bytes() == a and (tmp_path / "out/b.pth").read_bytes() == b
    assert box.hits("/s/4j4z58wuv8o0mfz/a.pth?dl=0") == 0 and box.hits("/s/4j4z58wuv8o0mfz/a.pth?") == 0
    assert box.hits("/scl/fi/czdlt2zc2ji2b7zd0pvoe/b.pth?rlkey=56ebq4g5dk01kyq8kuismev14&dl=0") == 0


def test_dropbox_page_instead_of_file_is_an_error(hosts: FakeHosts, tmp_path: Path) -> None:
    hosts["www.dropbox.com"].add("/s/deadlink000/x.pth?dl=1", b"<html><title>Dropbox - Error</title>This item was deleted</html>",
                                 content_type="text/html")
    m = write_manifest(tmp_path, {"x.pth": {"url": "https://www.dropbox.com/s/deadlink000/x.pth?dl=0"}})
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 1
    assert "error: x.pth: the Dropbox link" in out and "deleted" in out
    assert nothing_at(tmp_path / "out")


# --- GitHub -----------------------------------------------------------------------------------------------


def test_github_blob_link_fetches_the_raw_file(hosts: FakeHosts, tmp_path: Path) -> None:
    gh, raw = hosts["github.com"], hosts["raw.githubusercontent.com"]
    data = blob(25_000, seed=31)
    gh.add("/o/r/blob/01ea8d0f/weights/m.pt", b"<html>GitHub file page</html>", content_type="text/html")
    gh.redirect("/o/r/raw/01ea8d0f/weights/m.pt", "https://raw.githubusercontent.com/o/r/01ea8d0f/weights/m.pt")
    raw.add("/o/r/01ea8d0f/weights/m.pt", data)
    m = write_manifest(tmp_path, {"m.pt": {"url": "https://github.com/o/r/blob/01ea8d0f/weights/m.pt", "md5": md5(data)}})
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 0, out
    assert (tmp_path / "out/m.pt").read_bytes() == data
    assert gh.hits("/o/r/blob/01ea8d0f/weights/m.pt") == 0


def test_github_html_answer_never_reaches_the_target(hosts: FakeHosts, tmp_path: Path) -> None:
    hosts["github.com"].add("/o/r/raw/main/gone.pt", b"<html>Page not found</html>", content_type="text/html")
    m = write_manifest(tmp_path, {"gone.pt": {"url": "https://github.com/o/r/raw/main/gone.pt"}})
    code, out = get(m, tmp_path / "out", hosts)
    assert code == 1 and "HTML page" in out
    assert nothing_at(tmp_path / "out")


# --- mirrors make a Drive/Dropbox URL plain --------------------------------------------------------------


def test_plain_http_mirror_of_drive_and_dropbox_urls_is_a_plain_file(server: TestServer, tmp_path: Path) -> None:
    a, b = blob(10_000, seed=41), blob(12_000, seed=42)
    # What the mirror holds is the file itself, at the rewritten path (query included).
    server.add(f"/drive/file/d/{FID}/view?usp=sharing", a)
    server.add("/dropbox/s/4j4z58wuv8o0mfz/models.zip", b)
    m = write_manifest(tmp_path, {
        "a.pth": {"url": f"https://drive.google.com/file/d/{FID}/view?usp=sharing", "md5": md5(a)},
        "b.zip": {"url": "https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip", "md5": md5(b)},
    })
    r = run_cli("get", str(m), "--dest", str(tmp_path / "out"),
                "--mirror", f"https://drive.google.com/={server.url}/drive/",
                "--mirror", f"https://www.dropbox.com/={server.url}/dropbox/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/a.pth").read_bytes() == a and (tmp_path / "out/b.zip").read_bytes() == b
    assert [q.path for q in server.requests if "dl=1" in q.path or "uc?" in q.path] == []


# --- the real sam-pt manifest's Drive and Dropbox entries, behind look-alike hosts ----------------


def test_sam_pt_drive_and_dropbox_entries_through_the_real_urls(hosts: FakeHosts, tmp_path: Path) -> None:
    from .conftest import REPO
    from .samples import make_archive

    doc = yaml.safe_load((REPO / "manifests/sam-pt.yaml").read_text())
    drive_key = "tapnet_ckpts/open_source_ckpt/checkpoint_wo_optstate.npy"
    npy = blob(60_000, seed=51)
    doc["files"][drive_key]["md5"] = md5(npy)
    fid = "1fGhoW33k87OQQHUTmFobMUjEnRixhuqg"
    hosts["drive.google.com"].redirect(f"/uc?export=download&id={fid}",
                                       f"https://drive.usercontent.google.com/download?id={fid}&export=download", 303)
    hosts["drive.usercontent.google.com"].add(f"/download?id={fid}&export=download", CONFIRM_PAGE.format(id=fid).encode(),
                                              content_type="text/html; charset=utf-8")
    hosts["drive.usercontent.google.com"].add(
        f"/download?id={fid}&export=download&confirm=t&uuid=3f1c2a7e-0b1d-4c5e-9f00-aa11bb22cc33", npy)

    raft = {}
    for n, key in enumerate(k for k in doc["files"] if k.startswith("raft_ckpts/")):
        raft[key] = blob(5_000 + n, seed=60 + n)
        doc["files"][key]["md5"] = md5(raft[key])
    zipped = make_archive("zip", {doc["files"][k]["member"]: v for k, v in raft.items()})
    hosts["www.dropbox.com"].redirect("/s/4j4z58wuv8o0mfz/models.zip?dl=1", "https://uc1f2e.dl.dropboxusercontent.com/cd/0/inline/RAFT/file")
    hosts["uc1f2e.dl.dropboxusercontent.com"].add("/cd/0/inline/RAFT/file", zipped)

    pips2_key = "pips_plus_plus_ckpts/reference_model/model-000200000.pth"
    pips2 = blob(7_000, seed=70)
    doc["files"][pips2_key]["md5"] = md5(pips2)
    tgz = make_archive("tar.gz", {"reference_model/model-000200000.pth": pips2})
    hosts["www.dropbox.com"].redirect("/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1",
                                      "https://uc1f2e.dl.dropboxusercontent.com/cd/0/inline/PIPS2/file")
    hosts["uc1f2e.dl.dropboxusercontent.com"].add("/cd/0/inline/PIPS2/file", tgz)

    m = tmp_path / "sam-pt.yaml"
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    dest = tmp_path / "models"
    code, out = get(m, dest, hosts, "--only", drive_key, "--only", "raft_ckpts/*", "--only", pips2_key)
    assert code == 0, out
    assert (dest / drive_key).read_bytes() == npy and (dest / pips2_key).read_bytes() == pips2
    for key, data in raft.items():
        assert (dest / key).read_bytes() == data
    r = run_cli("verify", str(dest))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 7


def test_drive_download_resumes_on_the_confirmed_url_after_a_cut(hosts: FakeHosts, tmp_path: Path) -> None:
    fid = "1ResetMidDownload00000"
    data = blob(3 << 20, seed=81)
    uuid = "3f1c2a7e-0b1d-4c5e-9f00-aa11bb22cc33"
    hosts["drive.google.com"].add(f"/uc?export=download&id={fid}", CONFIRM_PAGE.format(id=fid).encode(), content_type="text/html")
    real = f"/download?id={fid}&export=download&confirm=t&uuid={uuid}"
    content = hosts["drive.usercontent.google.com"]
    content.add(real, data)
    content.fault(real, "short", at=1 << 20)  # the connection closes after 1 MiB
    m = write_manifest(tmp_path, {"w.pth": {"url": f"https://drive.google.com/uc?id={fid}", "md5": md5(data)}})
    r = run_cli("get", str(m), "--dest", str(tmp_path / "out"), "--no-progress",
                env=cli_env(CKPTFETCH_CONNECTIONS="1", **hosts.env))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/w.pth").read_bytes() == data
    assert hosts["drive.google.com"].hits(f"/uc?export=download&id={fid}") == 1, "the confirmation page is read once"
    gets = [q for q in content.requests if q.path == real]
    assert len(gets) == 2 and gets[1].headers.get("range") == f"bytes={1 << 20}-"
