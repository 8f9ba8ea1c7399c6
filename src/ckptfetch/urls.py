"""URL helpers: mirror rewriting, hashed mirrors' object URLs, and redaction of secrets for display."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import UsageError

# Query parameters that carry secrets: tokens, passwords, signatures, credentials, API and access keys. Not every
# "key": Dropbox's `rlkey` is part of a public share link (anyone with the link has it), so it stays readable.
_SECRET_PARAMS = re.compile(
    r"(token|secret|signature|password|passwd|auth|credential|^sig$|^key$|api_?key|access_?key|private_?key|_key$)",
    re.IGNORECASE,
)

Mirror = tuple[str, str]


def redact(url: str) -> str:
    """`url` safe to print: no `user:pass@`, secret-looking query values hidden.

    >>> redact("https://u:p@host/x?token=abc&a=1")
    'https://***@host/x?token=***&a=1'
    >>> redact("https://www.dropbox.com/scl/fi/k/m.zip?rlkey=pub&dl=1")
    'https://www.dropbox.com/scl/fi/k/m.zip?rlkey=pub&dl=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unprintable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAMS.search(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_mirrors(specs: Iterable[str]) -> list[Mirror]:
    """`FROM=TO` strings as (from, to) pairs; a malformed one is a usage error."""
    mirrors: list[Mirror] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if "=" not in spec:
            raise UsageError(f"--mirror {spec!r} must look like FROM=TO, e.g. https://=http://127.0.0.1:8000/")
        src, dst = spec.split("=", 1)
        if not src or not dst:
            raise UsageError(f"--mirror {spec!r} must look like FROM=TO with both sides non-empty")
        mirrors.append((src, dst))
    return mirrors


def env_mirrors() -> list[Mirror]:
    """Mirrors from CKPTFETCH_MIRRORS (newline or `;` separated)."""
    raw = os.environ.get("CKPTFETCH_MIRRORS", "")
    return parse_mirrors(re.split(r"[;\n]", raw))


def env_offline() -> bool:
    """CKPTFETCH_OFFLINE: 1/true/yes/on means offline, 0/false/no/off or unset online; anything else is an error."""
    raw = os.environ.get("CKPTFETCH_OFFLINE", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"CKPTFETCH_OFFLINE={raw!r} is not a yes/no value; use 1 or 0")


def hashed_root(target: str) -> str:
    """A hashed mirror's root as a URL without a trailing slash: s3://, http(s)://, file://, or a local folder.

    >>> hashed_root("s3://models/mirror/"), hashed_root("/srv/mirror")
    ('s3://models/mirror', 'file:///srv/mirror')
    """
    text = target.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not text or (scheme and scheme not in ("s3", "http", "https", "file")):
        raise UsageError(f"--hashed-mirror {target!r} must be s3://BUCKET[/PREFIX], an http(s):// URL, a file:// "
                         "URL or a folder")
    if scheme == "s3" and not text[len("s3://"):].split("/", 1)[0]:
        raise UsageError(f"--hashed-mirror {target!r} names no bucket (s3://BUCKET[/PREFIX])")
    if not scheme:
        from pathlib import Path

        return Path(text).expanduser().absolute().as_uri().rstrip("/")
    return text.rstrip("/")


def parse_hashed(specs: Iterable[str]) -> list[str]:
    """Hashed mirror roots, normalised (`hashed_root`), blanks dropped, duplicates once."""
    return list(dict.fromkeys(hashed_root(s) for s in specs if s.strip()))


def env_hashed_mirrors() -> list[str]:
    """Hashed mirrors from CKPTFETCH_HASHED_MIRRORS (newline or `;` separated, as CKPTFETCH_MIRRORS)."""
    return parse_hashed(re.split(r"[;\n]", os.environ.get("CKPTFETCH_HASHED_MIRRORS", "")))


def hashed_urls(roots: Sequence[str], sha256: str | None) -> list[str]:
    """`ROOT/sha256/<hex>` on each hashed mirror, for a file whose full sha256 is known (else none).

    >>> hashed_urls(["s3://m/ckpt"], "ab" * 32) == ["s3://m/ckpt/sha256/" + "ab" * 32]
    True
    """
    if not sha256 or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return []
    return [f"{root}/sha256/{sha256}" for root in roots]


def candidates(
    urls: Sequence[str], mirrors: Sequence[Mirror], *, offline: bool = False,
    match_as: Callable[[str], str] | None = None, hashed: Sequence[str] = (),
) -> list[str]:
    """URLs to try in order: `hashed` mirrors' objects, mirror rewrites, the originals (offline: `file://` only).

    `match_as` gives the form a URL is matched against the mirrors in (an `hf://` URL as the Hub's
    `https://.../resolve/REV/PATH`, so a mirror of the Hub's host applies to it, revision kept).

    >>> candidates(["https://h/a.pt"], [("https://", "http://127.0.0.1:8000/")])
    ['http://127.0.0.1:8000/h/a.pt', 'https://h/a.pt']
    """
    out: list[str] = list(hashed)
    for url in urls:
        form = match_as(url) if match_as is not None else url
        for src, dst in mirrors:
            if form.startswith(src):
                out.append(dst + form[len(src):])
    out.extend(u for u in urls if not offline or u.startswith("file://"))
    return list(dict.fromkeys(out))
