"""`ckptfetch lock`: pin every file of a manifest in NAME.lock.yaml."""

from __future__ import annotations

import sys

import click

from .common import consoles, emit_json, json_option, mirror_option, offline_option
from .completion import manifest_names


@click.command()
@click.argument("manifest", shell_complete=manifest_names)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Where to write [default: NAME.lock.yaml beside the manifest].")
@mirror_option
@offline_option
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, help="Files hashed at once.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@json_option
def lock(manifest: str, output: str | None, mirrors: tuple[str, ...], offline: bool, jobs: int, no_progress: bool,
         as_json: bool) -> None:
    """Pin every file of MANIFEST (sha256, size, Hub commit) in NAME.lock.yaml.

    Hashes come from the Hub's metadata when it declares them (LFS files),
    otherwise from the bytes, downloaded to a temporary folder (under TMPDIR)
    and hashed as they stream. Folder entries are pinned file by file. `get` and `verify`
    then enforce the lock. Locking unchanged files again changes nothing.

    \b
    Examples:
      ckptfetch lock sam-3d-objects
      ckptfetch lock manifests/mine.yaml --output manifests/mine.lock.yaml
    """
    from ..api import make_lock
    from ..urls import env_mirrors, parse_mirrors

    reporter = None
    if not (no_progress or as_json) and sys.stderr.isatty():
        from ..progress import TqdmReporter

        reporter = TqdmReporter(None, file=sys.stderr)
    try:
        result = make_lock(manifest, output, mirrors=parse_mirrors(mirrors) + env_mirrors(), jobs=jobs, reporter=reporter,
                           offline=True if offline else None)
    finally:
        if reporter is not None:
            reporter.close()
    if as_json:
        emit_json({"lock": str(result.path), "changed": result.changed, "from_metadata": result.from_metadata,
                    "from_bytes": result.from_bytes, "skipped": result.skipped,
                    "files": {k: {"sha256": p.sha256, "size": p.size, **({"commit": p.commit} if p.commit else {})}
                              for k, p in result.files.items()}})
        return
    out, err = consoles()
    for key in result.skipped:
        err.print(f"[yellow]not locked:[/yellow] {key} is a manual file with no sha256 and size in the manifest",
                  highlight=False)
    what = "wrote" if result.changed else "unchanged:"
    out.print(f"{what} {result.path} ({len(result.files)} files: {len(result.from_metadata)} pinned from declared "
              f"hashes, {len(result.from_bytes)} hashed from their bytes)", markup=False)
