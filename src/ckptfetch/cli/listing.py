"""`ckptfetch list` and `ckptfetch show`: what manifests there are and what a manifest holds."""

from __future__ import annotations

from typing import Any

import click

from ..errors import CkptfetchError
from ..status import Layout
from .common import consoles, emit_json, json_option
from .completion import manifest_names


@click.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List the bundled and found manifests with sizes and variants.

    \b
    Examples:
      ckptfetch list
      ckptfetch list --json
    """
    from ..describe import count_unpinned, human_size, total_size
    from ..discovery import bundled_dir, iter_manifest_files
    from ..manifest import load_manifest

    rows: list[dict[str, Any]] = []
    for path in iter_manifest_files():
        try:
            m = load_manifest(path)
        except CkptfetchError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
            continue
        rows.append({
            "name": m.name, "path": str(path), "bundled": path.parent.resolve() == bundled_dir(),
            "files": len(m.files), "size": total_size(m), "variants": list(m.variants),
            "unpinned": count_unpinned(m),
            "description": m.description,
        })
    if as_json:
        emit_json({"manifests": rows})
        return
    out, err = consoles()
    if not rows:
        err.print("No manifests found. Put NAME.yaml files in ./manifests/ or a folder named in CKPTFETCH_MANIFESTS.")
        return
    for r in rows:
        if "error" in r:
            out.print(f"[bold]{r['name']}[/bold]  [red]invalid:[/red] {r['error']}", markup=True)
            continue
        size = human_size(r["size"]) if r["size"] is not None else "size not pinned"
        variants = ", ".join(r["variants"]) or "-"
        unpinned = f", {r['unpinned']} unpinned" if r["unpinned"] else ""
        out.print(f"[bold]{r['name']}[/bold]  {r['files']} files{unpinned}, {size}  variants: {variants}")
        if r["description"]:
            out.print(f"    {r['description']}", markup=False)
        out.print(f"    {r['path']}", style="dim", markup=False)


# --- show ---------------------------------------------------------------------------


@click.command()
@click.argument("name", shell_complete=manifest_names)
@click.option("--dest", type=click.Path(file_okay=False), help="Where to look for installed files [default: the manifest's root].")
@json_option
def show(name: str, dest: str | None, as_json: bool) -> None:
    """Show a manifest's files, sizes, sources, hashes and installed state.

    \b
    Examples:
      ckptfetch show sam-pt
      ckptfetch show manifests/mine.yaml --dest /data/models --json
    """
    from pathlib import Path

    from ..api import check_entry, describe_pin, describe_source
    from ..describe import human_size, known_sizes
    from ..discovery import resolve_manifest
    from ..state import VerifiedCache
    from ..status import SHOW_STATE
    from ..urls import redact

    m = resolve_manifest(name)
    root = Path(dest or m.root)
    cache = VerifiedCache(root) if (root / ".ckptfetch").is_dir() else None
    sizes = known_sizes(m)
    files: list[dict[str, Any]] = []
    for e in m.files.values():
        status, detail = check_entry(root, e, cache)
        state = SHOW_STATE[status]
        files.append({
            "path": e.path, "source": describe_source(e), "kind": e.kind, "size": sizes.get(e.path),
            "hashes": e.integrity.hashes, "pinned": e.integrity.pinned, "pin": e.integrity.pin_level,
            "pin_detail": describe_pin(e), "weak_sha256": e.integrity.weak, "state": state,
            "variants": [v for v in m.variants if e in m.select([v])], "manual": e.manual, "manual_url": e.manual_url,
            "layout": e.layout, "folder": e.folder, "include": list(e.include),
        })
    if cache is not None:
        cache.close()
    if as_json:
        emit_json({"name": m.name, "description": m.description, "homepage": m.homepage, "root": m.root,
                    "manifest": str(m.source), "variants": {k: list(v) for k, v in m.variants.items()},
                    "archives": {a.name: {"urls": [redact(u) for u in a.urls], "hashes": a.integrity.hashes,
                                          "size": a.integrity.size}
                                 for a in m.archives.values()},
                    "files": files})
        return
    out, _ = consoles()
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
        if f["layout"] != Layout.PLAIN:
            out.print(f"  layout: {f['layout']}", markup=False)
        if f["folder"]:
            where = "out of its archive" if f["kind"] == "archive" else "listed from the Hub"
            out.print(f"  folder: every file under it, {where} when fetched"
                      + (f"; include {', '.join(f['include'])}" if f["include"] else "")
                      + (f"; {human_size(f['size'])} by its lock file" if f["size"] is not None else ""), markup=False)
            continue
        for algo, digest in f["hashes"].items():
            out.print(f"  {algo}: {digest}", markup=False)
        if f["pin"] == "weak":
            out.print(f"  {f['pin_detail']}: {f['weak_sha256']}", style="yellow", markup=False)
        elif f["pin"] == "unpinned":
            out.print(f"  {f['pin_detail']}", style="yellow", markup=False)
        size = f"{human_size(f['size'])} ({f['size']} bytes)" if f["size"] is not None else "unknown"
        out.print(f"  size: {size}", markup=False)
    for a in m.archives.values():
        out.print()
        out.print(f"archive {a.name}: {', '.join(redact(u) for u in a.urls)}", markup=False)
