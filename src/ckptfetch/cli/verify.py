"""`ckptfetch verify`: check a destination like `md5sum -c`."""

from __future__ import annotations

import click

from ..errors import ExitCode
from .common import json_option


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--manifest", "manifests", multiple=True, metavar="NAME", help="Check against this manifest instead of the record (repeatable).")
@click.option("--strict", is_flag=True, help="Also fail on files under DIR that no manifest lists.")
@click.option("--full", is_flag=True, help="Hash every file again, ignoring the verified-state cache.")
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Print only failures.")
def verify(directory: str | None, manifests: tuple[str, ...], strict: bool, full: bool, as_json: bool, quiet: bool) -> None:
    """Check the files in DIRECTORY (default: models) like `md5sum -c`."""
    from ..api import verify as verify_dir
    from ..report import print_verify

    result = verify_dir(directory, manifests=manifests, strict=strict, full=full)
    print_verify(result, quiet, as_json)
    if not result.ok:
        raise SystemExit(ExitCode.FAILED)
