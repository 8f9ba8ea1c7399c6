"""`ckptfetch mirror push`: fill a hashed mirror (ROOT/sha256/<hex> and ROOT/manifests/NAME.lock.yaml)."""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode
from .common import consoles, emit_json, hashed_mirror_option, json_option, mirror_option, offline_option
from .completion import manifest_names


@click.group()
def mirror() -> None:
    """Content-addressed mirrors for clusters and air-gapped sites (README "Clusters and air-gapped sites").

    `mirror push` fills TARGET/sha256/<hex>; `get --hashed-mirror TARGET`
    reads it.

    \b
    Examples:
      ckptfetch mirror push sam-pt s3://models/ckpt
      ckptfetch mirror push models/ /nfs/mirror
    """


@mirror.command()
@click.argument("source", metavar="NAME|DIR", shell_complete=manifest_names)
@click.argument("target", metavar="TARGET")
@click.option("--dest", type=click.Path(file_okay=False),
              help="Where the manifest's files are (fetched there first if missing) [default: the manifest's root].")
@click.option("--minimal", is_flag=True, help="Same as --variant minimal.")
@click.option("--variant", "variants", multiple=True, metavar="V", help="Only the files of variant V (repeatable).")
@mirror_option
@hashed_mirror_option
@offline_option
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Files fetched, checked and uploaded at once.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@json_option
def push(source: str, target: str, dest: str | None, minimal: bool, variants: tuple[str, ...],
         mirrors: tuple[str, ...], hashed_mirrors: tuple[str, ...], offline: bool, jobs: int, no_progress: bool,
         as_json: bool) -> None:
    """Upload the verified files of NAME (or of install folder DIR) to TARGET/sha256/<hex>.

    NAME's files are fetched into --dest first, as `get` would (what is there
    and verified is not downloaded again); a DIR a `get` installed into is
    pushed from its record, each file verified before it is sent. TARGET is
    s3://BUCKET/PREFIX (the standard AWS settings) or a folder (local or NFS).
    Objects already there are not sent again, and
    TARGET/manifests/NAME.lock.yaml pins every pushed file, so a site can
    `get NAME --hashed-mirror TARGET --offline` with no other source.

    \b
    Examples:
      ckptfetch mirror push sam-pt s3://models/ckpt
      ckptfetch mirror push models/ /nfs/mirror
    """
    from ..mirroring import push as push_files
    from ..urls import env_mirrors, parse_hashed, parse_mirrors

    reporter = None
    if not (no_progress or as_json) and sys.stderr.isatty():
        from ..progress import TqdmReporter

        reporter = TqdmReporter(None, file=sys.stderr)
    chosen = list(dict.fromkeys((["minimal"] if minimal else []) + list(variants)))
    try:
        result = push_files(source, target, dest=dest, variants=chosen, mirrors=parse_mirrors(mirrors) + env_mirrors(),
                            hashed_mirrors=parse_hashed(hashed_mirrors) or None, offline=True if offline else None,
                            jobs=jobs, reporter=reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if as_json:
        emit_json(result.to_json())
    else:
        _print(result)
    if not result.ok:
        raise SystemExit(ExitCode.FAILED)


def _print(result: object) -> None:
    from rich.markup import escape

    from ..describe import human_size
    from ..mirroring import PushResult
    from ..status import Pushed

    assert isinstance(result, PushResult)
    out, err = consoles()
    for problem in result.problems:
        err.print(f"[red]not pushed:[/red] {escape(problem)}", highlight=False)
    for f in result.files:
        if f.status == Pushed.FAILED:
            err.print(f"[red]error:[/red] {escape(f.error or f.path)}", highlight=False)
    # Counted in objects: identical files are one object.
    up = {f.sha256: f.size for f in result.files if f.status == Pushed.UPLOADED}
    there = {f.sha256 for f in result.files if f.status == Pushed.PRESENT}
    out.print(f"{len(up)} uploaded ({human_size(sum(up.values()))}), {len(there)} already there, to {result.target} "
              f"({len(result.files)} files)", markup=False, highlight=False)
    for name, written in result.locks.items():
        what = "wrote" if written else "unchanged:"
        out.print(f"{what} {result.target}/manifests/{name}.lock.yaml", markup=False, highlight=False)
    if result.problems or not result.ok:
        err.print("the mirror's lock was left as it was; fix the files above and push again", highlight=False,
                  markup=False)
