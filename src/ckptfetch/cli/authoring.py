"""Commands for writing manifests: `hash`, `add`, `import`, `lint`, `schema`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ExitCode, UsageError
from ..hashing import ALGORITHMS
from .common import consoles, emit_json, json_option, mirror_option
from .completion import manifest_names


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--algo", "algos", multiple=True, type=click.Choice(list(ALGORITHMS)),
              help="Digest to print [default: md5; with --yaml: md5 and sha256] (repeatable with --yaml).")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print manifest `files:` entries (digests and size).")
@click.option("--root", type=click.Path(file_okay=False), help="With --yaml: keys relative to this folder.")
def hash_cmd(paths: tuple[str, ...], algos: tuple[str, ...], as_yaml: bool, root: str | None) -> None:
    """Hash files (folders: every file under them, sorted) like md5sum, or as manifest entries.

    \b
    Examples:
      ckptfetch hash models/ > MD5SUMS && md5sum -c MD5SUMS
      ckptfetch hash --algo sha256 weights.pth
      ckptfetch hash --yaml --root models models/sam_ckpts
    """
    from ..hashlist import hash_paths, line, walk, yaml_entries

    if len(algos) > 1 and not as_yaml:
        raise UsageError("one --algo per hash list (md5sum -c reads one algorithm); use --yaml for several")
    chosen = list(algos) or (["md5", "sha256"] if as_yaml else ["md5"])
    files = list(walk(paths))
    try:
        hashed = hash_paths(files, chosen)
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if as_yaml:
        try:
            sys.stdout.write(yaml_entries(hashed, Path(root) if root else None))
        except ValueError:
            raise UsageError(f"every path must be under --root {root}") from None
        return
    for h in hashed:
        click.echo(line(h.digests[chosen[0]], str(h.path)))


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("url")
@click.option("--path", "target", metavar="TARGET", help="Target path in the manifest [default: the URL's file name].")
@click.option("--variant", metavar="V", help="Also add the file to variant V (created if needed).")
@click.option("--dest", type=click.Path(file_okay=False), help="Where to put the file [default: the manifest's root].")
@click.option("--replace", is_flag=True, help="Pin an entry the manifest already has again, from URL.")
@mirror_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@json_option
def add(manifest: str, url: str, target: str | None, variant: str | None, dest: str | None, replace: bool,
        mirrors: tuple[str, ...], no_progress: bool, as_json: bool) -> None:
    """Fetch URL once and add it to MANIFEST (a .yaml path, created if missing) with md5, sha256 and size.

    The file lands where `get` would put it, so `get` finds it in place. A
    Hugging Face URL is written pinned to the commit it resolved to. The
    manifest keeps its comments and order.

    \b
    Examples:
      ckptfetch add manifests/mine.yaml https://example.org/releases/model-v2.pth --variant minimal
      ckptfetch add manifests/mine.yaml hf://org/repo/weights.safetensors --path backbone/weights.safetensors
    """
    from ..adding import add as add_entry
    from ..urls import env_mirrors, parse_mirrors

    reporter = None
    if not (no_progress or as_json) and sys.stderr.isatty():
        from ..progress import TqdmReporter

        reporter = TqdmReporter(None, file=sys.stderr)
    try:
        r = add_entry(manifest, url, path=target, variant=variant, dest=dest, replace=replace,
                      mirrors=parse_mirrors(mirrors) + env_mirrors(), reporter=reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if as_json:
        emit_json({"manifest": str(r.manifest), "key": r.key, "url": r.url, "size": r.size, **r.digests,
                   "commit": r.commit, "created": r.created, "replaced": r.replaced, "variant": r.variant,
                   "at": str(r.at), "note": r.note})
        return
    verb = "created" if r.created else "updated"
    click.echo(f"{verb} {r.manifest}: {r.key} ({r.size} bytes, md5 {r.digests['md5']})")
    if r.commit and r.url != url:
        click.echo(f"  pinned to commit {r.commit}: {r.url}")
    click.echo(f"  file at {r.at}")
    if r.note:
        click.echo(f"note: {r.note}", err=True)


@click.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Manifest name [default: from --output, else from SOURCE's file name].")
@click.option("--base-url", metavar="URL", help="For a hash list: the URL its paths are relative to.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the manifest here [default: stdout].")
@click.option("--force", is_flag=True, help="Overwrite --output when it exists.")
@json_option
def import_cmd(source: str, name: str | None, base_url: str | None, output: str | None, force: bool,
               as_json: bool) -> None:
    """Draft a manifest from a README, a shell script or an md5sum/sha256sum list.

    Reads wget/curl/gdown/hf download lines, tar/unzip of what they fetched,
    mkdir/cd for folders, and hash lists for pins. Everything it cannot
    translate is listed (on stderr, and as comments in the draft): nothing is
    guessed silently.

    \b
    Examples:
      ckptfetch import docs/checkpoints.md --name sam-pt -o manifests/sam-pt.yaml
      ckptfetch import MD5SUMS --base-url https://example.org/releases/v1/ --name mymodels
    """
    from ..importing import import_text

    if output and Path(output).exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it (or `ckptfetch add` to add to it)")
    text = Path(source).read_text(encoding="utf-8", errors="replace")
    result = import_text(text, name=name or _name_from(output, source), base_url=base_url, source=source)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(result.text, encoding="utf-8")
    if as_json:
        emit_json({"manifest": output, "files": len(result.files), "untranslated": [
            {"line": n.line, "text": n.text, "reason": n.reason} for n in result.untranslated],
            **({} if output else {"text": result.text})})
    elif not output:
        sys.stdout.write(result.text)
    sys.stdout.flush()
    _, err = consoles()
    for note in result.untranslated:
        err.print(f"not translated: {source}:{note.line}: {note.text}  ({note.reason})", markup=False, highlight=False)
    if not as_json:
        n = len(result.untranslated)
        err.print(f"{len(result.files)} files drafted" + (f" into {output}" if output else "")
                  + f", {n} line{'' if n == 1 else 's'} not translated", markup=False, highlight=False)


def _name_from(output: str | None, source: str) -> str:
    import re

    stem = Path(output or source).name
    stem = re.sub(r"\.(ya?ml|md|txt|sh|rst)$", "", stem).lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "models"


@click.command()
@click.argument("manifest", shell_complete=manifest_names)
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning.")
@json_option
def lint(manifest: str, strict: bool, as_json: bool) -> None:
    """Warn about what makes MANIFEST fragile (unpinned files, Hub branches, one-host mirrors, ...).

    \b
    Examples:
      ckptfetch lint manifests/mine.yaml
      ckptfetch lint sam-pt --strict      # in CI: exit 1 on any warning
    """
    from ..linting import lint as lint_manifest

    result = lint_manifest(manifest)
    if as_json:
        emit_json(result.to_json())
    else:
        for f in result.findings:
            where = f"{result.manifest}:{f.line}" if f.line else str(result.manifest)
            click.echo(f"{where}: warning: [{f.code}] {f.key}: {f.message}")
        n = len(result.findings)
        click.echo(f"{result.manifest}: {n} warning{'' if n == 1 else 's'}", err=True)
    if strict and not result.ok:
        raise SystemExit(ExitCode.FAILED)


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the schema here [default: stdout].")
def schema(output: str | None) -> None:
    """Print the JSON Schema of the manifest format (for editors and validators).

    Editors using the YAML language server check a manifest whose first line
    is `# yaml-language-server: $schema=PATH-OR-URL-OF-THE-SCHEMA`.

    \b
    Examples:
      ckptfetch schema > manifest.schema.json
      ckptfetch schema -o schema/manifest.schema.json
    """
    from ..schema import render

    if output:
        Path(output).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())


__all__ = ["add", "hash_cmd", "import_cmd", "lint", "schema"]
