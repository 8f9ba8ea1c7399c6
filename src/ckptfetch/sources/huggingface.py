"""Hugging Face Hub files: `hf://` URLs and the Hub's own `/resolve/` URLs.

URL forms (revision defaults to `main`; a revision containing `/` is written
%2F-encoded, e.g. `@refs%2Fpr%2F1`, or plainly for `refs/pr/N`)::

    hf://ORG/REPO[@REVISION]/PATH            a model repo
    hf://datasets/ORG/REPO[@REVISION]/PATH   a dataset repo
    hf://spaces/ORG/REPO[@REVISION]/PATH     a Space
    https://huggingface.co/[datasets/|spaces/]ORG/REPO/resolve/REVISION/PATH

Like huggingface_hub, a file is first asked for with a HEAD on its resolve URL
*without* following the redirect to the CDN: that answer carries the commit
(`X-Repo-Commit`), the blob id (`X-Linked-Etag`, for LFS files the sha256) and
the size (`X-Linked-Size`). The bytes are then fetched by the one engine from
the resolve URL pinned to that commit; the token goes with that URL alone, so
the engine drops it when the Hub redirects to its CDN.

`HF_ENDPOINT` points everything at another Hub (a mirror, a test server).
The token comes from `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), else
from the file `hf auth login` writes: `$HF_TOKEN_PATH`, else `$HF_HOME/token`,
else `~/.cache/huggingface/token`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..errors import DownloadError
from ..urls import redact
from .base import Context, Request, Resolved

if TYPE_CHECKING:
    import requests

DEFAULT_ENDPOINT = "https://huggingface.co"
HUB_HOSTS = ("huggingface.co", "hf.co")
REPO_TYPES = {"": "model", "models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HF_RE = re.compile(
    rf"^hf://(?:(?P<type>models|datasets|spaces)/)?(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[^/]+))?(?:/(?P<path>.*))?$"
)
_RESOLVE_RE = re.compile(
    rf"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>{_NAME}/{_NAME})/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)
_PR_REF = re.compile(r"^(refs/(?:pr|convert)/[^/]+)(?:/(.*))?$")
MAX_HUB_REDIRECTS = 5  # same-host redirects (a renamed repo) followed while asking for metadata


def endpoint() -> str:
    """The Hub's base URL: `HF_ENDPOINT`, else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """The user's Hub token, or None: HF_TOKEN, then the token file `hf auth login` writes."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(var, "").replace("\r", "").replace("\n", "").strip()
        if value:
            return value
    path = os.environ.get("HF_TOKEN_PATH") or os.path.join(hf_home(), "token")
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            value = f.read().replace("\r", "").replace("\n", "").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def hf_home() -> str:
    """`$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else ~/.cache/huggingface."""
    home = os.environ.get("HF_HOME")
    if home:
        return os.path.expanduser(home)
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")


def hub_cache_dir() -> str:
    """Where huggingface_hub keeps its cache: HF_HUB_CACHE, else $HF_HOME/hub."""
    return os.path.expanduser(
        os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home(), "hub")
    )


@dataclass(frozen=True)
class HubFile:
    """A file (or folder, when `path` is empty or ends in `/`) of a Hub repo at a revision."""

    repo_type: str  # model | dataset | space
    repo_id: str  # ORG/NAME
    revision: str  # as asked for: a branch, tag or commit
    path: str  # inside the repo
    endpoint: str

    @property
    def repo_url(self) -> str:
        """The repo's page, where a gated repo's licence is accepted."""
        return f"{self.endpoint}/{URL_PREFIX[self.repo_type]}{self.repo_id}"

    def resolve_url(self, revision: str | None = None) -> str:
        rev = quote(revision or self.revision, safe="")
        return f"{self.repo_url}/resolve/{rev}/{quote(self.path)}"

    def api_url(self, what: str, revision: str | None = None) -> str:
        rev = quote(revision or self.revision, safe="")
        return f"{self.endpoint}/api/{self.repo_type}s/{self.repo_id}/{what}/{rev}"

    def uri(self, revision: str | None = None) -> str:
        """This file as an hf:// URL (the revision %2F-encoded when it has a slash)."""
        rev = revision or self.revision
        at = "" if rev == "main" else "@" + quote(rev, safe="")
        return f"hf://{URL_PREFIX[self.repo_type]}{self.repo_id}{at}/{self.path}"

    @property
    def cache_folder(self) -> str:
        """huggingface_hub's folder name for the repo: models--ORG--NAME."""
        return "--".join([f"{self.repo_type}s", *self.repo_id.split("/")])


def _safe(text: str, *, folder_ok: bool = False) -> bool:
    """A revision or repo path that cannot climb out of a cache folder: no `..`, `.`, empty parts or backslashes."""
    if folder_ok and text.endswith("/"):
        text = text[:-1]
    if not text:
        return folder_ok
    return "\\" not in text and "\x00" not in text and all(p not in ("", ".", "..") for p in text.split("/"))


def parse(url: str) -> HubFile | None:
    """The Hub file `url` names, or None when it is not a Hub URL (or not a safe one).

    >>> parse("hf://datasets/org/data@v1/a/b.bin").repo_type
    'dataset'
    """
    f = _parse(url)
    if f is None or not _safe(f.revision) or not _safe(f.path, folder_ok=True):
        return None
    return f


def _parse(url: str) -> HubFile | None:
    if url.startswith("hf://"):
        m = _HF_RE.match(url)
        if m is None:
            return None
        rev, path = m["rev"], m["path"] or ""
        if rev is not None and rev == "refs" and (pr := _PR_REF.match(url.split("@", 1)[1])):
            rev, path = pr[1], pr[2] or ""  # hf://org/repo@refs/pr/1/file written without %2F
        return HubFile(REPO_TYPES[m["type"] or ""], m["repo"], unquote(rev or "main"), unquote(path), endpoint())
    if not url.startswith(("https://", "http://")):
        return None
    parts = urlsplit(url)
    base = endpoint()
    own = urlsplit(base)
    if parts.hostname in HUB_HOSTS and parts.scheme == "https":
        # A huggingface.co URL goes to HF_ENDPOINT when one is set, as huggingface_hub does.
        origin = base if own.hostname not in HUB_HOSTS else f"https://{parts.netloc}"
    elif (parts.scheme, parts.netloc) == (own.scheme, own.netloc) and own.hostname not in HUB_HOSTS:
        origin = base
    else:
        return None
    prefix = own.path.rstrip("/") if origin == base else ""
    if not parts.path.startswith(prefix):
        return None
    m = _RESOLVE_RE.match(parts.path[len(prefix):])
    if m is None or parts.query:
        return None
    return HubFile(REPO_TYPES[m["type"] or ""], m["repo"], unquote(m["rev"]), unquote(m["path"]), origin)


def at_commit(url: str, commit: str) -> str:
    """`url` (an hf:// or Hub resolve URL) pinned to `commit`; other URLs unchanged."""
    f = parse(url)
    if f is None:
        return url
    if url.startswith("hf://"):
        return f.uri(commit)
    # Keep the URL as written (its host, so --mirror prefixes still apply); only the revision changes.
    return re.sub(r"/resolve/[^/]+/", f"/resolve/{commit}/", url, count=1)


def _auth(f: HubFile) -> dict[str, str]:
    tok = token()
    return {"Authorization": f"Bearer {tok}"} if tok else {}


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def access_error(f: HubFile, status: int, headers: Mapping[str, str], what: str) -> DownloadError:
    """One clear sentence for a Hub refusal, from its status and `X-Error-Code` header."""
    code = headers.get("X-Error-Code", "")
    message = headers.get("X-Error-Message", "")
    repo = f"{f.repo_type} repo {f.repo_id}" if f.repo_type != "model" else f"repo {f.repo_id}"
    has_token = token() is not None
    if code == "GatedRepo" or (status == 403 and "gated" in message.lower()):
        told = (" (a token was sent but has no access yet: check it can read this repo, or wait for the approval)"
                if has_token else " (no token was set)")
        return DownloadError(
            f"{what}: {repo} is gated: accept its licence at {f.repo_url} while logged in, then set HF_TOKEN "
            f"(or run `hf auth login`) and run the same command again{told}."
        )
    if message == "Invalid credentials in Authorization header":
        return DownloadError(f"{what}: the Hub rejected your token (HF_TOKEN or the token file) as invalid; "
                             "create a new one, set HF_TOKEN (or run `hf auth login`) and run the same command again.")
    if message == "Access to this resource is disabled.":
        return DownloadError(f"{what}: {repo} has been disabled on the Hub ({f.repo_url}); it cannot be downloaded.")
    if code == "RevisionNotFound":
        return DownloadError(f"{what}: {repo} has no revision {f.revision!r} (branch, tag or commit); check the URL.")
    if code == "EntryNotFound" or (status == 404 and code not in ("RepoNotFound", "")):
        return DownloadError(f"{what}: {repo} has no file {f.path!r} at revision {f.revision!r}; check the path.")
    if code == "RepoNotFound" or status in (401, 403, 404):
        hint = ("Your token was sent: check it can read this repo." if has_token
                else "If it is private or gated, accept its licence at its page, then set HF_TOKEN (or run `hf auth login`).")
        return DownloadError(
            f"{what}: {repo} was not found or you have no access (HTTP {status}) at {f.repo_url}. {hint}"
        )
    return DownloadError(f"{what}: the Hub answered HTTP {status} for {redact(f.resolve_url())}; try again later, "
                         "or use --mirror / --offline.")


def _request(
    ctx: Context, method: str, url: str, headers: Mapping[str, str], what: str, f: HubFile,
    params: Mapping[str, str] | None = None,
) -> requests.Response:
    """One metadata request with bounded retries on 5xx / 429 / connection errors.

    Redirects are followed by hand and only within the Hub's origin (a renamed
    repo answers 307): a redirect elsewhere is returned as it is, unfollowed.
    """
    import requests

    from ..download import retry
    from ..download.resume import is_retryable_status, retry_after_seconds

    s = ctx.settings
    failures = 0
    current = url
    hops = 0
    while True:
        if s.cancel.is_set():
            from ..errors import Interrupted

            raise Interrupted()
        wait: float | None = None
        try:
            resp = ctx.session.request(
                method, current, headers={**headers, "Accept-Encoding": "identity"}, params=params,
                allow_redirects=False, timeout=(s.connect_timeout, s.read_timeout), stream=method == "GET",
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"cannot reach {urlsplit(current).hostname} ({type(exc).__name__})"
        else:
            # A redirect that already carries the file's metadata is the Hub's answer (its CDN may share the host).
            hub_answer = "X-Repo-Commit" in resp.headers or "X-Linked-Etag" in resp.headers
            if resp.is_redirect and "Location" in resp.headers and hops < MAX_HUB_REDIRECTS and not hub_answer:
                target = urljoin(current, resp.headers["Location"])
                if _same_origin(current, target):
                    resp.close()
                    current, params, hops = target, None, hops + 1
                    continue
            if not is_retryable_status(resp.status_code) or (method == "HEAD" and resp.status_code == 501):
                return resp
            problem = f"HTTP {resp.status_code} from {urlsplit(current).hostname}"
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            resp.close()
        failures += 1
        if failures > s.retries:
            raise DownloadError(f"{what}: cannot ask the Hub about {f.repo_id}: {problem}. Check the network, or use "
                                "--mirror / --offline, then run the same command again.")
        retry.pause(retry.delay(failures, wait, s), s)


def _normalize_etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


class HubSource:
    """Files of Hugging Face Hub repos."""

    name = "huggingface"

    def matches(self, url: str) -> bool:
        return url.startswith("hf://") or parse(url) is not None

    def resolve(self, url: str, ctx: Context) -> Resolved:
        f = parse(url)
        if f is None or not f.path or f.path.endswith("/"):
            raise DownloadError(f"{redact(url)} does not name a file of a Hugging Face repo (hf://ORG/REPO[@REV]/PATH)")
        what = ctx.label or f"{f.repo_id}/{f.path}"
        auth = _auth(f)
        resp = _request(ctx, "HEAD", f.resolve_url(), auth, what, f)
        with resp:
            status, headers = resp.status_code, resp.headers
        if status in (405, 501):
            # Not a Hub after all (HEAD refused): fetch the resolve URL as a plain file.
            return Resolved([Request(f.resolve_url(), auth)], meta=self._meta(f, None, None, None))
        if status >= 400:
            raise access_error(f, status, headers, what)
        commit = headers.get("X-Repo-Commit")
        etag = _normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        size_text = headers.get("X-Linked-Size") or (None if resp.is_redirect else headers.get("Content-Length"))
        size = int(size_text) if size_text and size_text.isdigit() else None
        hashes: dict[str, str] = {}
        if etag and SHA256_RE.match(etag.lower()):
            # An LFS file: its blob id is the sha256 of its bytes, so it pins them.
            hashes["sha256"] = etag.lower()
        pinned = f.resolve_url(commit) if commit and COMMIT_RE.match(commit) else f.resolve_url()
        return Resolved([Request(pinned, auth)], hashes, size, self._meta(f, commit, etag, size))

    @staticmethod
    def _meta(f: HubFile, commit: str | None, etag: str | None, size: int | None) -> dict[str, str]:
        meta = {"source": "huggingface", "repo_type": f.repo_type, "repo_id": f.repo_id, "revision": f.revision,
                "path": f.path, "endpoint": f.endpoint}
        if commit:
            meta["commit"] = commit
        if etag:
            meta["etag"] = etag
        if size is not None:
            meta["size"] = str(size)
        return meta


# --- folders -------------------------------------------------------------------


@dataclass(frozen=True)
class TreeFile:
    """One file of a folder listing, with the pins the tree API gives."""

    path: str  # inside the repo
    size: int | None
    sha256: str | None  # LFS files only
    blob_id: str | None  # git blob id (the etag of a non-LFS file)


def _tree_pages(ctx: Context, f: HubFile, revision: str, what: str) -> Iterator[list[Any]]:
    folder = f.path.strip("/")
    url = f.api_url("tree", revision) + ("/" + quote(folder, safe="") if folder else "")
    params: Mapping[str, str] | None = {"recursive": "true", "expand": "false"}
    auth = _auth(f)
    pages = 0
    while url:
        # The token goes to the Hub's own origin only.
        resp = _request(ctx, "GET", url, auth if _same_origin(url, f.endpoint) else {}, what, f, params)
        with resp:
            if resp.status_code >= 400:
                raise access_error(replace(f, path=folder), resp.status_code, resp.headers, what)
            try:
                page = resp.json()
            except ValueError:
                raise DownloadError(f"{what}: the Hub's tree listing at {redact(url)} is not JSON.") from None
            nxt = resp.links.get("next", {}).get("url")
        if not isinstance(page, list):
            raise DownloadError(f"{what}: the Hub's tree listing at {redact(url)} is not a list.")
        yield page
        pages += 1
        if pages > 100_000:
            raise DownloadError(f"{what}: the Hub's tree listing does not end.")
        # The next page's URL carries its own query (a cursor). A mirror at HF_ENDPOINT may pass on the
        # Hub's own absolute links: those are asked of the mirror, as huggingface_hub does.
        url = urljoin(url, nxt) if nxt else ""
        parts = urlsplit(url)
        if url and parts.hostname in HUB_HOSTS and not _same_origin(url, f.endpoint):
            url = f.endpoint + parts.path + (f"?{parts.query}" if parts.query else "")
        if url.startswith("http://") and f.endpoint.startswith("https://"):
            raise DownloadError(f"{what}: the Hub's tree listing points from https to http ({redact(url)}); refused.")
        params = None


def resolve_commit(ctx: Context, f: HubFile, what: str) -> str | None:
    """The commit `f.revision` points at now (None if this Hub cannot say)."""
    if COMMIT_RE.match(f.revision):
        return f.revision
    resp = _request(ctx, "GET", f.api_url("revision"), _auth(f), what, f)
    with resp:
        if resp.status_code in (404, 405) and not resp.headers.get("X-Error-Code"):
            return None  # a Hub look-alike without the revision API: list the branch as it is
        if resp.status_code >= 400:
            raise access_error(f, resp.status_code, resp.headers, what)
        try:
            sha = resp.json().get("sha")
        except (ValueError, AttributeError):
            sha = None
    return sha if isinstance(sha, str) and COMMIT_RE.match(sha) else None


def list_folder(url: str, ctx: Context) -> tuple[HubFile, str | None, list[TreeFile]]:
    """Every file under the folder `url` names (recursively, all pages): (folder, commit, files).

    The listing is taken at the commit the revision points at now, so the files
    are one consistent snapshot.
    """
    f = parse(url)
    if f is None:
        raise DownloadError(f"{redact(url)} is not a Hugging Face folder URL (hf://ORG/REPO[@REV]/DIR/)")
    what = ctx.label or (f"{f.repo_id}/{f.path}" if f.path else f.repo_id)
    commit = resolve_commit(ctx, f, what)
    folder = f.path.strip("/")
    files: list[TreeFile] = []
    for page in _tree_pages(ctx, f, commit or f.revision, what):
        for item in page:
            if not isinstance(item, dict) or item.get("type") != "file" or not isinstance(item.get("path"), str):
                continue
            path = item["path"]
            if folder and not path.startswith(folder + "/"):
                continue
            lfs = item.get("lfs") if isinstance(item.get("lfs"), dict) else None
            sha = lfs.get("oid") if lfs else None
            size = lfs.get("size") if lfs and isinstance(lfs.get("size"), int) else item.get("size")
            files.append(TreeFile(
                path, size if isinstance(size, int) and not isinstance(size, bool) else None,
                sha.lower() if isinstance(sha, str) and SHA256_RE.match(sha.lower()) else None,
                item.get("oid") if isinstance(item.get("oid"), str) else None,
            ))
    files.sort(key=lambda t: t.path)
    return f, commit, files


__all__ = ["HubFile", "HubSource", "TreeFile", "at_commit", "endpoint", "hub_cache_dir", "list_folder", "parse", "token"]
