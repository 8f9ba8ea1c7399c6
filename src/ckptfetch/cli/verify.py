"""`ckptfetch verify`: check a destination like `md5sum -c`."""

from __future__ import annotations

import click

from ..errors import ExitCode, UsageError
from .common import json_option
from .completion import manifest_names


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--manifest", "manifests", multiple=True, metavar="NAME", shell_complete=manifest_names,
              help="Check against this manifest instead of the record (repeatable).")
@click.option("--strict", is_flag=True, help="Also fail on files under DIR that no manifest lists.")
@click.option("--full", is_flag=True, help="Hash every file again, ignoring the verified-state cache.")
@click.option("--record-only", is_flag=True,
              help="Check against the record alone, even where the manifest it came from has changed since.")
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Print only failures; nothing at all when every file is OK.")
@click.option("--format", "fmt", type=click.Choice(["text", "github"]), default="text", show_default=True,
              help="github: also print a workflow annotation (::error file=MANIFEST,line=N::) per failed file.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a JUnit XML report (one test case per file) to FILE.")
def verify(directory: str | None, manifests: tuple[str, ...], strict: bool, full: bool, record_only: bool,
           as_json: bool, quiet: bool, fmt: str, junit: str | None) -> None:
    """Check the files in DIRECTORY (default: the configured dest, else models) like `md5sum -c`.

    Without --manifest, DIRECTORY's record says what each file must be, and
    the manifest it came from is read again: a file whose pins changed since
    is FAILED, a file added since is MISSING (so a cache restored in CI never
    passes stale weights).

    \b
    Examples:
    ckptfetch verify models/                CI: exit 0 only if every file is right
    ckptfetch verify models/ -q             print only what is wrong
    ckptfetch verify models/ --strict       also fail on files nobody lists
    ckptfetch verify models/ --format github --junit reports/checkpoints.xml
    """
    from ..api import verify as verify_dir
    from ..report import print_verify

    if as_json and fmt == "github":
        raise UsageError("--json prints one JSON document; it cannot be combined with --format github")
    result = verify_dir(directory, manifests=manifests, strict=strict, full=full, record_only=record_only)
    print_verify(result, quiet, as_json)
    if fmt == "github" or junit:
        from ..cireport import github_annotations, junit_xml, origins, write_junit

        found = origins(result, manifests)
        if fmt == "github":
            for line in github_annotations(result, found):
                click.echo(line)
        if junit:
            write_junit(junit, junit_xml(result, found))
    if not result.ok:
        raise SystemExit(ExitCode.FAILED)
