"""The `ckptfetch` command: a thin click skin over `ckptfetch.api`.

Each command parses its options, calls one library function and renders the
result; `main` is the single boundary that turns errors into exit codes.
Heavy modules (requests, rich, tqdm) are imported inside the commands so that
`--version` and `--help` start fast.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ._version import __version__
from .errors import CkptfetchError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from .api import FetchResult, Plan


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    # soft_wrap: long paths and digests are never folded or cut.
    return Console(soft_wrap=True, highlight=False), Console(stderr=True, soft_wrap=True, highlight=False)


def _human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _emit_json(doc: Any) -> None:
    from .report import emit_json

    emit_json(doc)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="ckptfetch")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fetch and verify machine-learning checkpoints from YAML manifests.

    \b
    ckptfetch get sam-pt --minimal     fetch a model set into ./models
    ckptfetch verify models/           check it (exit 0 only if all is well)
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --- list ---------------------------------------------------------------------------


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_cmd(as_json: bool) -> None:
    """List the bundled and found manifests with sizes and variants."""
    from .api import relies_on_nothing
    from .manifest import bundled_dir, iter_manifest_files, load_manifest

    rows: list[dict[str, Any]] = []
    for path in iter_manifest_files():
        try:
            m = load_manifest(path)
        except CkptfetchError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
            continue
        rows.append({
            "name": m.name, "path": str(path), "bundled": path.parent.resolve() == bundled_dir(),
            "files": len(m.files), "size": m.total_size(m.files.values()), "variants": list(m.variants),
            "unpinned": sum(1 for f in m.files.values() if relies_on_nothing(f)),
            "description": m.description,
        })
    if as_json:
        _emit_json({"manifests": rows})
        return
    out, err = _consoles()
    if not rows:
        err.print("No manifests found. Put NAME.yaml files in ./manifests/ or a folder named in CKPTFETCH_MANIFESTS.")
        return
    for r in rows:
        if "error" in r:
            out.print(f"[bold]{r['name']}[/bold]  [red]invalid:[/red] {r['error']}", markup=True)
            continue
        size = _human_size(r["size"]) if r["size"] is not None else "size not pinned"
        variants = ", ".join(r["variants"]) or "-"
        unpinned = f", {r['unpinned']} unpinned" if r["unpinned"] else ""
        out.print(f"[bold]{r['name']}[/bold]  {r['files']} files{unpinned}, {size}  variants: {variants}")
        if r["description"]:
            out.print(f"    {r['description']}", markup=False)
        out.print(f"    {r['path']}", style="dim", markup=False)


# --- show ---------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), help="Where to look for installed files [default: the manifest's root].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def show(name: str, dest: str | None, as_json: bool) -> None:
    """Show a manifest's files, sizes, sources, hashes and installed state."""
    from pathlib import Path

    from .api import check_entry, describe_pin, describe_source
    from .manifest import resolve_manifest
    from .state import VerifiedCache
    from .urls import redact

    m = resolve_manifest(name)
    root = Path(dest or m.root)
    cache = VerifiedCache(root) if (root / ".ckptfetch").is_dir() else None
    files: list[dict[str, Any]] = []
    for e in m.files.values():
        status, detail = check_entry(root, e, cache)
        state = {"OK": "installed", "MISSING": "missing", "FAILED": "corrupt", "FOLDER": "folder"}[status]
        files.append({
            "path": e.path, "source": describe_source(e), "kind": e.kind, "size": e.integrity.size,
            "hashes": e.integrity.hashes, "pinned": e.integrity.pinned, "pin": e.integrity.pin_level,
            "pin_detail": describe_pin(e), "weak_sha256": e.integrity.weak, "state": state,
            "variants": [v for v in m.variants if e in m.select([v])], "manual": e.manual, "manual_url": e.manual_url,
            "layout": e.layout, "folder": e.folder, "include": list(e.include),
        })
    if cache is not None:
        cache.close()
    if as_json:
        _emit_json({"name": m.name, "description": m.description, "homepage": m.homepage, "root": m.root,
                    "manifest": str(m.source), "variants": {k: list(v) for k, v in m.variants.items()},
                    "archives": {a.name: {"urls": [redact(u) for u in a.urls], "hashes": a.integrity.hashes,
                                          "size": a.integrity.size}
                                 for a in m.archives.values()},
                    "files": files})
        return
    out, _ = _consoles()
    out.print(f"[bold]{m.name}[/bold]: {m.description}" if m.description else f"[bold]{m.name}[/bold]")
    if m.homepage:
        out.print(f"homepage: {m.homepage}", markup=False)
    out.print(f"manifest: {m.source}", markup=False)
    out.print(f"root:     {m.root}  (state checked in {root})", markup=False)
    for v, _patterns in m.variants.items():
        n = len(m.select([v]))
        out.print(f"variant {v}: {n} file{'' if n == 1 else 's'}", markup=False)
    styles = {"installed": "green", "missing": "yellow", "corrupt": "red", "folder": "cyan"}
    for f in files:
        out.print()
        out.print(f"[bold]{f['path']}[/bold]  [{styles[f['state']]}]{f['state']}[/]", highlight=False)
        out.print(f"  source: {f['source']}", markup=False)
        if f["manual"]:
            out.print(f"  manual: {f['manual']}", markup=False)
            if f["manual_url"]:
                out.print(f"  page: {f['manual_url']}", markup=False)
        if f["layout"] != "plain":
            out.print(f"  layout: {f['layout']}", markup=False)
        if f["folder"]:
            out.print("  folder: every file under it, listed from the Hub when fetched"
                      + (f"; include {', '.join(f['include'])}" if f["include"] else ""), markup=False)
            continue
        for algo, digest in f["hashes"].items():
            out.print(f"  {algo}: {digest}", markup=False)
        if f["pin"] == "weak":
            out.print(f"  {f['pin_detail']}: {f['weak_sha256']}", style="yellow", markup=False)
        elif f["pin"] == "unpinned":
            out.print(f"  {f['pin_detail']}", style="yellow", markup=False)
        out.print(f"  size: {f['size'] if f['size'] is not None else 'unknown'}", markup=False)
    for a in m.archives.values():
        out.print()
        out.print(f"archive {a.name}: {', '.join(redact(u) for u in a.urls)}", markup=False)


# --- get ----------------------------------------------------------------------------


def _print_plan(out: Console, p: Plan) -> None:
    from .api import relies_on_nothing

    present = [i for i in p.items if i.action == "present"]
    fetch = p.to_fetch
    manual = [i for i in p.items if i.action == "manual"]
    size = p.bytes_to_fetch()
    what = f"{len(fetch)} to fetch" + (f" ({_human_size(size)})" if size is not None and fetch else "")
    unpinned = sum(1 for i in fetch if relies_on_nothing(i.entry))
    n = len(p.items)
    out.print(f"[bold]{p.manifest.name}[/bold] → {p.dest}/: {n} file{'' if n == 1 else 's'}, {len(present)} present, {what}"
              + (f", {len(manual)} manual" if manual else "")
              + (f" ({unpinned} unpinned)" if unpinned else ""))
    for i in p.items:
        if i.action == "present":
            continue
        tag = {"fetch": "[cyan]fetch[/cyan]", "manual": "[yellow]manual[/yellow]", "failed": "[red]cannot list[/red]"}[i.action]
        why = f" ({i.reason})" if i.reason and i.reason not in ("missing",) and i.action != "failed" else ""
        size_text = _human_size(i.entry.integrity.size) if i.entry.integrity.size is not None else ""
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

            from .urls import redact

            err.print(f"[yellow]manual:[/yellow] {escape(f'{f.error}: {f.manual}')}", highlight=False)
            if f.manual_url:
                err.print(f"  get it from {redact(f.manual_url)}", highlight=False, markup=False)
            err.print(f"  put it at {r.dest / f.path}, then run the same command again.", highlight=False, markup=False)
    parts = [f"{counts.get(k, 0)} {k}" for k in ("fetched", "present", "failed", "manual") if counts.get(k)]
    colour = "green" if r.ok else "red"
    out.print(f"[{colour}]{'done' if r.ok else 'incomplete'}:[/{colour}] {', '.join(parts)} in {r.dest}/")


@cli.command()
@click.argument("manifest")
@click.option("--minimal", is_flag=True, help="Same as --variant minimal.")
@click.option("--variant", "variants", multiple=True, metavar="V", help="Only the files of variant V (repeatable).")
@click.option("--only", multiple=True, metavar="GLOB", help="Only target paths matching GLOB (repeatable).")
@click.option("--dest", type=click.Path(file_okay=False), help="Destination folder [default: the manifest's root].")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Files fetched at once (many small files gain most from many parallel requests).")
@click.option("--connections", type=click.IntRange(1, 32), default=None,
              help="Connections per large file when the server takes byte ranges [default: 16; CKPTFETCH_CONNECTIONS].")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--mirror", "mirrors", multiple=True, metavar="FROM=TO", help="Rewrite URLs starting with FROM to TO, tried first (repeatable; also CKPTFETCH_MIRRORS).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
@click.option("--force", is_flag=True, help="Fetch again even files that are present and correct.")
@click.option("--layout", type=click.Choice(["plain", "hf-cache", "torch-hub"]), default=None,
              help="Place files as listed (plain), as huggingface_hub's cache (hf-cache) or as torch hub's "
                   "(torch-hub); overrides the manifest's default `layout:`. Without --dest, hf-cache goes to the "
                   "Hub cache (HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) and torch-hub to "
                   "$TORCH_HOME/hub (else ~/.cache/torch/hub).")
def get(manifest: str, minimal: bool, variants: tuple[str, ...], only: tuple[str, ...], dest: str | None,
        jobs: int, connections: int | None, dry_run: bool, mirrors: tuple[str, ...], no_progress: bool, as_json: bool,
        force: bool, layout: str | None) -> None:
    """Fetch, extract and verify the files of MANIFEST (a name or a .yaml path).

    Hugging Face files (hf://ORG/REPO[@REV]/PATH) use HF_TOKEN, or the token
    file `hf auth login` writes, and HF_ENDPOINT. A lock file NAME.lock.yaml
    beside the manifest is enforced.
    """
    from .api import fetch
    from .urls import env_mirrors, parse_mirrors

    chosen = list(dict.fromkeys((["minimal"] if minimal else []) + list(variants)))
    mirror_list = parse_mirrors(mirrors) + env_mirrors()
    out, err = _consoles()
    if as_json:
        out = err  # stdout carries the JSON document only
    reporter = None
    if not (no_progress or as_json or dry_run) and sys.stderr.isatty():
        from .progress import TqdmReporter

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
                       mirrors=mirror_list, layout=layout,
                       dry_run=dry_run, reporter=reporter, on_plan=on_plan)
    finally:
        if reporter is not None and getattr(reporter, "close", None):
            reporter.close()
    if as_json:
        _emit_json(result.to_json())
    if not dry_run:
        _print_summary(out, err, result)
    if not result.ok and not dry_run:
        raise SystemExit(ExitCode.FAILED)


# --- lock -----------------------------------------------------------------------------


@cli.command()
@click.argument("manifest")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Where to write [default: NAME.lock.yaml beside the manifest].")
@click.option("--mirror", "mirrors", multiple=True, metavar="FROM=TO", help="Rewrite URLs starting with FROM to TO, tried first (repeatable; also CKPTFETCH_MIRRORS).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, help="Files hashed at once.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def lock(manifest: str, output: str | None, mirrors: tuple[str, ...], jobs: int, no_progress: bool, as_json: bool) -> None:
    """Pin every file of MANIFEST (sha256, size, Hub commit) in NAME.lock.yaml.

    Hashes come from the Hub's metadata when it declares them (LFS files),
    otherwise from the bytes, downloaded to a temporary folder (under TMPDIR)
    and hashed as they stream. Folder entries are pinned file by file. `get` and `verify`
    then enforce the lock. Locking unchanged files again changes nothing.
    """
    from .lock import make_lock
    from .urls import env_mirrors, parse_mirrors

    reporter = None
    if not (no_progress or as_json) and sys.stderr.isatty():
        from .progress import TqdmReporter

        reporter = TqdmReporter(None, file=sys.stderr)
    try:
        result = make_lock(manifest, output, mirrors=parse_mirrors(mirrors) + env_mirrors(), jobs=jobs, reporter=reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if as_json:
        _emit_json({"lock": str(result.path), "changed": result.changed, "from_metadata": result.from_metadata,
                    "from_bytes": result.from_bytes, "skipped": result.skipped,
                    "files": {k: {"sha256": p.sha256, "size": p.size, **({"commit": p.commit} if p.commit else {})}
                              for k, p in result.files.items()}})
        return
    out, err = _consoles()
    for key in result.skipped:
        err.print(f"[yellow]not locked:[/yellow] {key} is a manual file with no sha256 and size in the manifest",
                  highlight=False)
    what = "wrote" if result.changed else "unchanged:"
    out.print(f"{what} {result.path} ({len(result.files)} files: {len(result.from_metadata)} pinned from declared "
              f"hashes, {len(result.from_bytes)} hashed from their bytes)", markup=False)


# --- verify ---------------------------------------------------------------------------


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--manifest", "manifests", multiple=True, metavar="NAME", help="Check against this manifest instead of the record (repeatable).")
@click.option("--strict", is_flag=True, help="Also fail on files under DIR that no manifest lists.")
@click.option("--full", is_flag=True, help="Hash every file again, ignoring the verified-state cache.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures.")
def verify(directory: str | None, manifests: tuple[str, ...], strict: bool, full: bool, as_json: bool, quiet: bool) -> None:
    """Check the files in DIRECTORY (default: models) like `md5sum -c`."""
    from .api import verify as verify_dir
    from .report import print_verify

    result = verify_dir(directory, manifests=manifests, strict=strict, full=full)
    print_verify(result, quiet, as_json)
    if not result.ok:
        raise SystemExit(ExitCode.FAILED)


# --- the one error boundary -------------------------------------------------------------


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every outcome to an exit code."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    args = sys.argv[1:] if argv is None else argv
    # `--debug` is a group option, but people add it at the end of a command line: accept it anywhere
    # before a `--` (after which arguments are arguments).
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut] or os.environ.get("CKPTFETCH_DEBUG") == "1"
    if "--debug" in args[:cut]:
        args = ["--debug", *[a for a in args[:cut] if a != "--debug"], *args[cut:]]
    as_json = "--json" in args
    try:
        cli.main(args=args, prog_name="ckptfetch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except (click.Abort, KeyboardInterrupt):
        click.echo("ckptfetch: interrupted; partial files were kept, run the same command again to resume.", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except CkptfetchError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if as_json:
            _emit_json({"ok": False, "error": str(exc), "exit_code": int(exc.exit_code)})
        click.echo(f"ckptfetch: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(ExitCode.FAILED)
    except Exception as exc:  # a bug: say so plainly, traceback only with --debug
        if debug:
            raise
        click.echo(f"ckptfetch: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(ExitCode.FAILED)
    sys.exit(ExitCode.OK)
