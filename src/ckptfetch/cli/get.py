"""`ckptfetch get`: plan, fetch, extract, verify, and say what happened."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import ExitCode
from ..status import LAYOUTS, LINKS
from .common import consoles, emit_json, hashed_mirror_option, mirror_option, offline_option
from .completion import manifest_names, target_paths, variant_names

if TYPE_CHECKING:
    from rich.console import Console

    from ..results import FetchResult, Plan


def _print_plan(out: Console, p: Plan) -> None:
    from ..api import relies_on_nothing
    from ..describe import ORIGIN_PHRASE, human_size

    present = [i for i in p.items if i.action == "present"]
    fetch = p.to_fetch
    manual = [i for i in p.items if i.action == "manual"]
    local = sum(1 for i in fetch if i.origin != "network")
    n = len(p.items)
    unpinned = sum(1 for i in fetch if relies_on_nothing(i.entry))
    out.print(f"[bold]{p.manifest.name}[/bold] → {p.dest}/: {n} file{'' if n == 1 else 's'}, {len(present)} present, "
              f"{len(fetch) - local} to fetch{_cost(p) if len(fetch) > local else ''}"
              + (f", {local} found on this machine" if local else "")
              + (f", {len(manual)} manual" if manual else "")
              + (f" ({unpinned} unpinned)" if unpinned else ""))
    for name, (size, here) in p.archives.items():
        out.print(f"  [cyan]download[/cyan] {name} (archive)  {_size(size, here)}", highlight=False)
    for i in p.items:
        if i.action == "present":
            continue
        tag = {"fetch": "[cyan]fetch[/cyan]", "manual": "[yellow]manual[/yellow]", "failed": "[red]cannot list[/red]"}[i.action]
        if i.action == "fetch" and i.origin != "network":
            tag = f"[green]{ORIGIN_PHRASE[i.origin]}[/green]"
        why = f" ({i.reason})" if i.reason and i.reason not in ("missing",) and i.action != "failed" else ""
        size_text = "" if i.entry.archive or i.action == "failed" else _size(i.size, i.resume)
        if i.entry.archive and i.action == "fetch":
            size_text = f"from {i.entry.archive}" + (f", {human_size(i.size)}" if i.size is not None else "")
        out.print(f"  {tag} {i.entry.path}{why}  {size_text}".rstrip(), highlight=False)


def _size(size: int | None, here: int) -> str:
    """"477 MiB", "size unknown", or "477 MiB (resume: 386 MiB here)"."""
    from ..describe import human_size

    text = human_size(size)
    return f"{text} (resume: {human_size(here)} here)" if here else text


def _cost(p: Plan) -> str:
    """" (2.4 GiB)", " (at least 2.4 GiB; 3 sizes unknown)", " (2.1 GiB to download; 386 MiB already here)"."""
    from ..describe import human_size

    c = p.cost()
    if c.unknown and not c.download:
        return f" ({c.unknown} size{'' if c.unknown == 1 else 's'} unknown)"
    text = ("at least " if c.unknown else "") + human_size(c.download) + (" to download" if c.here else "")
    if c.here:
        text += f"; {human_size(c.here)} already here"
    if c.unknown:
        text += f"; {c.unknown} size{'' if c.unknown == 1 else 's'} unknown"
    return f" ({text})"


def _print_summary(out: Console, err: Console, r: FetchResult, quiet: bool = False) -> None:
    from rich.markup import escape

    counts: dict[str, int] = {}
    for f in r.files:
        counts[f.status] = counts.get(f.status, 0) + 1
    for f in r.files:
        if f.status == "failed":
            # Escaped: a message may hold brackets (`pip install 'ckptfetch[s3]'`) that are not markup.
            err.print(f"[red]error:[/red] {escape(f.error or '')}", highlight=False)
        elif f.status == "manual":
            from ..urls import redact

            err.print(f"[yellow]manual:[/yellow] {escape(f'{f.error}: {f.manual}')}", highlight=False)
            if f.manual_url:
                err.print(f"  get it from {redact(f.manual_url)}", highlight=False, markup=False)
            err.print(f"  put it at {r.dest / f.path}, then run the same command again.", highlight=False, markup=False)
    if quiet:
        return
    from ..describe import ORIGIN_DONE

    for note in r.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    parts = [f"{counts.get(k, 0)} {k}" for k in ("fetched", "present", "failed", "manual") if counts.get(k)]
    reused: dict[str, int] = {}
    for f in r.files:
        if f.status == "fetched" and f.origin not in (None, "network"):
            reused[ORIGIN_DONE[f.origin]] = reused.get(ORIGIN_DONE[f.origin], 0) + 1
    if reused and parts and parts[0].endswith("fetched"):
        parts[0] += " (" + ", ".join(f"{n} {how}" for how, n in reused.items()) + ")"
    colour = "green" if r.ok else "red"
    out.print(f"[{colour}]{'done' if r.ok else 'incomplete'}:[/{colour}] {', '.join(parts)} in {r.dest}/")


@click.command()
@click.argument("manifest", shell_complete=manifest_names)
@click.option("--minimal", is_flag=True, help="Same as --variant minimal.")
@click.option("--variant", "variants", multiple=True, metavar="V", shell_complete=variant_names,
              help="Only the files of variant V (repeatable).")
@click.option("--only", multiple=True, metavar="GLOB", shell_complete=target_paths,
              help="Only files matching GLOB: a glob over target paths, a folder (with or without its `/`) or a "
                   "bare file name (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", shell_complete=target_paths,
              help="Leave out files matching GLOB, as --only matches (repeatable; as in `hf download`).")
@click.option("--dest", type=click.Path(file_okay=False), help="Destination folder [default: the manifest's root].")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Files fetched at once (many small files gain most from many parallel requests).")
@click.option("--connections", type=click.IntRange(1, 32), default=None,
              help="Connections per large file when the server takes byte ranges [default: 16; CKPTFETCH_CONNECTIONS].")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@mirror_option
@hashed_mirror_option
@offline_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only (no plan, no bars, no summary).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
@click.option("--force", is_flag=True, help="Fetch again even files that are present and correct.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Place files as listed (plain), as huggingface_hub's cache (hf-cache) or as torch hub's "
                   "(torch-hub); overrides the manifest's default `layout:`. Without --dest, hf-cache goes to the "
                   "Hub cache (HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) and torch-hub to "
                   "$TORCH_HOME/hub (else ~/.cache/torch/hub).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="The store of files already fetched on this machine [default: CKPTFETCH_CACHE, else the user "
                   "cache dir, e.g. ~/.cache/ckptfetch].")
@click.option("--no-cache", is_flag=True,
              help="Bypass the store and the Hugging Face and torch caches: download everything not in DEST.")
@click.option("--link", type=click.Choice(LINKS), default="auto", show_default=True,
              help="How files reach DEST from the store: auto tries reflink, then hardlink, then copy; "
                   "symlink only on request.")
@click.option("--reuse-from", "reuse_from", multiple=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Also take files from DIR, an earlier destination of `ckptfetch get` (repeatable).")
def get(manifest: str, minimal: bool, variants: tuple[str, ...], only: tuple[str, ...], exclude: tuple[str, ...],
        dest: str | None, jobs: int, connections: int | None, dry_run: bool, mirrors: tuple[str, ...],
        hashed_mirrors: tuple[str, ...], offline: bool, no_progress: bool, quiet: bool, as_json: bool, force: bool,
        layout: str | None, cache_dir: str | None, no_cache: bool, link: str, reuse_from: tuple[str, ...]) -> None:
    """Fetch, extract and verify the files of MANIFEST (a name or a .yaml path).

    Hugging Face files (hf://ORG/REPO[@REV]/PATH) use HF_TOKEN, or the token
    file `hf auth login` writes, and HF_ENDPOINT. S3 objects (s3://BUCKET/KEY,
    with `pip install 'ckptfetch[s3]'`) use the standard AWS settings
    (AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/...). A lock file NAME.lock.yaml
    beside the manifest is enforced.

    Files this machine already has (in the store, huggingface_hub's or torch's
    cache, a --reuse-from DIR) are verified and linked instead of downloaded.

    \b
    Examples:
      ckptfetch get sam-pt --minimal
      ckptfetch get manifests/mine.yaml --dest /data/models --only sam_ckpts --quiet
      ckptfetch get sam-pt --minimal --dest ../other-checkout/models   # links what the store has
      ckptfetch get sam-pt --offline --hashed-mirror s3://models/ckpt
    """
    from ..api import fetch
    from ..urls import env_mirrors, parse_hashed, parse_mirrors

    chosen = list(dict.fromkeys((["minimal"] if minimal else []) + list(variants)))
    mirror_list = parse_mirrors(mirrors) + env_mirrors()
    out, err = consoles()
    if as_json:
        out = err  # stdout carries the JSON document only
    reporter = None
    if not (no_progress or quiet or as_json or dry_run) and sys.stderr.isatty():
        from ..progress import TqdmReporter

        reporter_holder: list[Any] = []

        def on_plan(p: Plan) -> None:
            _print_plan(out, p)
            if p.to_fetch:  # nothing to fetch: no empty bar
                reporter_holder.append(TqdmReporter(p.bytes_to_fetch(), file=sys.stderr))

        class _Lazy:
            def __getattr__(self, name: str) -> Any:
                return getattr(reporter_holder[0], name) if reporter_holder else (lambda *a, **k: None)

        reporter = _Lazy()
    else:
        def on_plan(p: Plan) -> None:
            if not quiet:
                _print_plan(out, p)

    try:
        result = fetch(manifest, dest, variants=chosen, only=only, exclude=exclude, jobs=jobs, connections=connections,
                       force=force, mirrors=mirror_list, layout=layout, hashed_mirrors=parse_hashed(hashed_mirrors) or None,
                       dry_run=dry_run, reporter=reporter, on_plan=on_plan, offline=True if offline else None,
                       cache_dir=cache_dir, no_cache=no_cache, link=link, reuse_from=reuse_from)
    finally:
        if reporter is not None and getattr(reporter, "close", None):
            reporter.close()
    if as_json:
        emit_json(result.to_json())
    if dry_run:
        # A plan that could not be completed (a folder that cannot be listed) is a failed dry run.
        for f in result.files:
            if f.status == "failed":
                err.print(f"[red]error:[/red] {f.error}", highlight=False)
        if any(f.status == "failed" for f in result.files):
            raise SystemExit(ExitCode.FAILED)
        return
    _print_summary(out, err, result, quiet)
    if not result.ok:
        raise SystemExit(ExitCode.FAILED)
