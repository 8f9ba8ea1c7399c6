"""`ckptfetch cache ls | du | verify | gc`: look after the store of files already fetched on this machine."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ExitCode
from .common import consoles, emit_json, json_option

if TYPE_CHECKING:
    from rich.console import Console

    from ..store import Store

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """"10G" / "10GiB" (powers of 1024), "10GB" (of 1000), "512M", or bytes.

    >>> parse_size("1.5GiB"), parse_size("2GB"), parse_size("100")
    (1610612736, 2000000000, 100)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size such as 500M, 10G, 10GB or 1073741824")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_age(text: str) -> float:
    """"30d", "12h", "2w", "90m", "45s" (a bare number is days).

    >>> parse_age("2w") == 14 * 86400
    True
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not an age such as 30d, 12h, 2w or 90m")
    return float(m.group(1)) * _AGES[m.group(2) or "d"]


def cache_dir_option(f: F) -> F:
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                        help="The store [default: CKPTFETCH_CACHE, else the user cache dir].")(f)


def _open(cache_dir: str | None) -> Store:
    from ..api import open_store

    return open_store(cache_dir)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _table(out: Console, header: Sequence[str], rows: list[list[str]], right: Sequence[int] = ()) -> None:
    """A rich table on a terminal; aligned plain text (one line per row) elsewhere."""
    if out.is_terminal:
        from rich.table import Table

        t = Table(*header, box=None, header_style="bold")
        for n in right:
            t.columns[n].justify = "right"
        for r in rows:
            t.add_row(*r)
        out.print(t)
        return
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for r in [list(header), *rows]:
        cells = [c.rjust(w) if n in right else c.ljust(w) for n, (c, w) in enumerate(zip(r, widths, strict=False))]
        out.print("  ".join(cells).rstrip(), markup=False, highlight=False)


@click.group("cache")
def cache() -> None:
    """Look after the store: every verified file once, linked into each destination.

    \b
    Examples:
      ckptfetch cache du                       what the store holds and what is shared
      ckptfetch cache gc --max-size 50G        evict least recently used files
    """


@cache.command("ls")
@cache_dir_option
@json_option
def ls(cache_dir: str | None, as_json: bool) -> None:
    """List the store's files: digest, size, destinations using each, last use.

    \b
    Examples:
      ckptfetch cache ls
      ckptfetch cache ls --json --cache-dir /scratch/ckptfetch
    """
    from ..describe import human_size
    from ..housekeeping import survey

    store = _open(cache_dir)
    objs = survey(store)
    if as_json:
        emit_json({"store": str(store.root), "objects": [o.to_json() for o in objs]})
        return
    out, err = consoles()
    if not objs:
        err.print(f"The store at {store.root} is empty.", markup=False)
        return
    rows = [[o.sha256[:16], human_size(o.size), str(len(o.uses)), _when(o.used),
             f"{o.uses[0].dest}/{o.uses[0].path}" if o.uses else "-"] for o in reversed(objs)]
    _table(out, ["sha256", "size", "uses", "last used", "used at"], rows, right=(1, 2))


@cache.command("du")
@cache_dir_option
@json_option
def du(cache_dir: str | None, as_json: bool) -> None:
    """Disk used by the store, per destination, and what linking shares between destinations.

    \b
    Examples:
      ckptfetch cache du
    """
    from ..describe import human_size as hs
    from ..housekeeping import usage

    u = usage(_open(cache_dir))
    if as_json:
        emit_json(u.to_json())
        return
    out, _ = consoles()
    out.print(f"store {u.store}: {u.objects} files, {hs(u.size)} ({hs(u.disk)} on disk)", markup=False)
    saved = f"{hs(u.saved)} saved by sharing" if u.saved >= 0 else f"{hs(-u.saved)} more than separate copies"
    out.print(f"destinations hold {hs(u.in_destinations)} in files from the store ({hs(u.linked)} linked, the rest "
              f"copies); {saved}; {hs(u.shared)} of the store is used by two or more destinations", markup=False)
    out.print(f"only in the store (gc frees it): {hs(u.only_in_store)}", markup=False)
    if u.destinations:
        rows = [[d["dest"], str(d["files"]), hs(d["size"]), hs(d["shared"]),
                 ", ".join(f"{n} {k}" for k, n in sorted(d["links"].items()))] for d in u.destinations]
        _table(out, ["destination", "files", "size", "shared", "placed by"], rows, right=(1, 2, 3))


@cache.command("verify")
@cache_dir_option
@json_option
def verify(cache_dir: str | None, as_json: bool) -> None:
    """Re-hash every file in the store; damaged ones are evicted (exit 1).

    \b
    Examples:
      ckptfetch cache verify
    """
    from ..housekeeping import verify_store

    store = _open(cache_dir)
    checks = verify_store(store)
    bad = [c for c in checks if not c.ok]
    if as_json:
        emit_json({"store": str(store.root), "ok": not bad, "objects": [c.__dict__ for c in checks]})
    else:
        out, err = consoles()
        for c in bad:
            out.print(f"{c.sha256}: FAILED ({c.detail})" + ("; evicted" if c.evicted else "; could not be evicted"),
                      markup=False)
            for p in c.uses:
                err.print(f"  {p} shares these bytes: run `ckptfetch get` for its destination again", markup=False)
        err.print(f"{len(checks) - len(bad)} OK, {len(bad)} FAILED in {store.root}", markup=False)
    if bad:
        raise SystemExit(ExitCode.FAILED)


@cache.command("gc")
@click.option("--max-size", type=str, default=None, metavar="SIZE",
              help="Evict least recently used files until the store holds at most SIZE (500M, 50G, 50GB).")
@click.option("--older-than", type=str, default=None, metavar="AGE",
              help="Only files not used for AGE (90m, 12h, 30d, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be evicted, evict nothing.")
@cache_dir_option
@json_option
def gc(max_size: str | None, older_than: str | None, dry_run: bool, cache_dir: str | None, as_json: bool) -> None:
    """Evict files no destination uses (and, for --max-size, the least recently used).

    Destinations keep their files: a hardlinked file stays whole when the
    store's name for it goes. A file a destination reaches by symlink is
    never evicted.

    \b
    Examples:
      ckptfetch cache gc --older-than 30d --dry-run
      ckptfetch cache gc --max-size 50G
    """
    from ..describe import human_size
    from ..housekeeping import collect

    size = parse_size(max_size) if max_size is not None else None
    age = parse_age(older_than) if older_than is not None else None
    result = collect(_open(cache_dir), max_size=size, older_than=age, dry_run=dry_run)
    if as_json:
        emit_json(result.to_json())
        return
    out, err = consoles()
    verb = "would evict" if dry_run else "evicted"
    for o in result.evicted:
        out.print(f"{verb} {o.sha256}  {human_size(o.size)}" + (f"  (used by {len(o.uses)})" if o.uses else ""),
                  markup=False)
    err.print(f"{verb} {len(result.evicted)} files, {human_size(sum(o.size for o in result.evicted))} "
              f"({human_size(result.freed)} of disk); {result.kept} kept", markup=False)
