"""`ckptfetch key`: a cache key for CI (actions/cache and the like)."""

from __future__ import annotations

import click

from ..status import LAYOUTS
from .common import emit_json, json_option
from .completion import manifest_names, target_paths, variant_names


@click.command()
@click.argument("manifest", shell_complete=manifest_names)
@click.option("--minimal", is_flag=True, help="Same as --variant minimal.")
@click.option("--variant", "variants", multiple=True, metavar="V", shell_complete=variant_names, help="The files of variant V (repeatable), as for get.")
@click.option("--only", multiple=True, metavar="GLOB", shell_complete=target_paths, help="Only target paths matching GLOB (repeatable), as for get.")
@click.option("--exclude", multiple=True, metavar="GLOB", shell_complete=target_paths,
              help="Leave out files matching GLOB (repeatable), as for get.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None, help="The layout get is given, if any.")
@json_option
def key(manifest: str, minimal: bool, variants: tuple[str, ...], only: tuple[str, ...], exclude: tuple[str, ...],
        layout: str | None, as_json: bool) -> None:
    """Print a short cache key for the files `get` would install (same options as get).

    The key changes whenever a selected file's pin, path, layout or the
    variant changes, and is the same on every machine and run. Offline: only
    the manifest and its lock file are read.

    \b
    Examples:
      ckptfetch key sam-pt --minimal            # ckptfetch-sam-pt-<16 hex digits>
      echo "key=$(ckptfetch key sam-pt --minimal)" >> "$GITHUB_OUTPUT"
    """
    from ..cachekey import cache_key

    chosen = list(dict.fromkeys((["minimal"] if minimal else []) + list(variants)))
    result = cache_key(manifest, variants=chosen, only=only, exclude=exclude, layout=layout)
    if as_json:
        emit_json({"key": result.key, "described": result.described})
    else:
        click.echo(result.key)
