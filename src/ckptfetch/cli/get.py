"""`ckptfetch get`: plan, fetch, extract, verify, and say what happened."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import ExitCode
from ..status import LAYOUTS, LINKS
from .common import consoles, emit_json, mirror_option

if TYPE_CHECKING:
    from rich.console import Console

    from ..results import FetchResult, Plan


def _print_plan(out: Console, p: Plan) -> None:
    from ..api import relies_on_nothing
    from ..describe import ORIGIN_PHRASE, human_size

    present = [i for i in p.items if i.action == "present"]
    fetch = p.to_fetch
    manual = [i for i in p.items if i.action == "manual"]
    size = p.bytes_to_fetch()
    local = sum(1 for i in fetch if i.origin != "network")
    what = f"{len(fetch) - local} to fetch" + (f" ({human_size(size)})" if size is not None and len(fetch) > local else "")
    what += f", {local} found on this machine" if local else ""
    unpinned = sum(1 for i in fetch if relies_on_nothing(i.entry))
    n = len(p.items)
    out.print(f"[bold]{p.manifest.name}[/bold] → {p.dest}/: {n} file{'' if n == 1 else 's'}, {len(present)} present, {what}"
              + (f", {len(manual)} manual" if manual else "")
              + (f" ({unpinned} unpinned)" if unpinned else ""))
    for i in p.items:
        if i.action == "present":
            continue
        tag = {"fetch": "[cyan]fetch[/cyan]", "manual": "[yellow]manual[/yellow]", "failed": "[red]cannot list[/red]"}[i.action]
        if i.action == "fetch" and i.origin != "network":
            tag = f"[green]{ORIGIN_PHRASE[i.origin]}[/green]"
        why = f" ({i.reason})" if i.reason and i.reason not in ("missing",) and i.action != "failed" else ""
        size_text = human_size(i.entry.integrity.size) if i.entry.integrity.size is not None else ""
        out.print(f"  {tag} {i.entry.path}{why}  {size_text}".rstrip(), highlight=False)


def _print_summary(out: Console, err: Console, r: FetchResult) -> None:
    counts: dict[str, int] = {}
    for f in r.files:
        counts[f.status] = counts.get(f.status, 0) + 1
    for f in r.files:
        if f.status == "failed":
            err.print(f"[red]error:[/red] {f.error}", highlight=False)
        elif f.status == "manual":
            from rich.markup import escape

            from ..urls import redact

            err.print(f"[yellow]manual:[/yellow] {escape(f'{f.error}: {f.manual}')}", highlight=False)
            if f.manual_url:
                err.print(f"  get it from {redact(f.manual_url)}", highlight=False, markup=False)
            err.print(f"  put it at {r.dest / f.path}, then run the same command again.", highlight=False, markup=False)
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
@click.argument("manifest")
@click.option("--minimal", is_flag=True, help="Same as --variant minimal.")
@click.option("--variant", "variants", multiple=True, metavar="V", help="Only the files of variant V (repeatable).")
@click.option("--only", multiple=True, metavar="GLOB", help="Only target paths matching GLOB (repeatable).")
@click.option("--dest", type=click.Path(file_okay=False), help="Destination folder [default: the manifest's root].")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Files fetched at once (many small files gain most from many parallel requests).")
@click.option("--connections", type=click.IntRange(1, 32), default=None,
              help="Connections per large file when the server takes byte ranges [default: 8; CKPTFETCH_CONNECTIONS].")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@mirror_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
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
def get(manifest: str, minimal: bool, variants: tuple[str, ...], only: tuple[str, ...], dest: str | None,
        jobs: int, connections: int | None, dry_run: bool, mirrors: tuple[str, ...], no_progress: bool, as_json: bool,
        force: bool, layout: str | None, cache_dir: str | None, no_cache: bool, link: str,
        reuse_from: tuple[str, ...]) -> None:
    """Fetch, extract and verify the files of MANIFEST (a name or a .yaml path).

    Hugging Face files (hf://ORG/REPO[@REV]/PATH) use HF_TOKEN, or the token
    file `hf auth login` writes, and HF_ENDPOINT. A lock file NAME.lock.yaml
    beside the manifest is enforced.

    Files this machine already has (in the store, huggingface_hub's or torch's
    cache, a --reuse-from DIR) are verified and linked instead of downloaded:

    \b
    ckptfetch get sam-pt --minimal --dest ../other-checkout/models
    """
    from ..api import fetch
    from ..urls import env_mirrors, parse_mirrors

    chosen = list(dict.fromkeys((["minimal"] if minimal else []) + list(variants)))
    mirror_list = parse_mirrors(mirrors) + env_mirrors()
    out, err = consoles()
    if as_json:
        out = err  # stdout carries the JSON document only
    reporter = None
    if not (no_progress or as_json or dry_run) and sys.stderr.isatty():
        from ..progress import TqdmReporter

        reporter_holder: list[Any] = []

        def on_plan(p: Plan) -> None:
            _print_plan(out, p)
            reporter_holder.append(TqdmReporter(p.bytes_to_fetch(), file=sys.stderr))

        class _Lazy:
            def __getattr__(self, name: str) -> Any:
                return getattr(reporter_holder[0], name) if reporter_holder else (lambda *a, **k: None)

        reporter = _Lazy()
    else:
        def on_plan(p: Plan) -> None:
            _print_plan(out, p)

    try:
        result = fetch(manifest, dest, variants=chosen, only=only, jobs=jobs, connections=connections, force=force,
                       mirrors=mirror_list, layout=layout, dry_run=dry_run, reporter=reporter, on_plan=on_plan,
                       cache_dir=cache_dir, no_cache=no_cache, link=link, reuse_from=reuse_from)
    finally:
        if reporter is not None and getattr(reporter, "close", None):
            reporter.close()
    if as_json:
        emit_json(result.to_json())
    if not dry_run:
        _print_summary(out, err, result)
    if not result.ok and not dry_run:
        raise SystemExit(ExitCode.FAILED)
