"""`ckptfetch completion SHELL` and the completers for manifest names, variants and `--only` targets.

Shell completion is click's: the script this command prints calls
`ckptfetch` back with `_CKPTFETCH_COMPLETE` set, and click asks the
completers below for the words.
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem

COMPLETE_VAR = "_CKPTFETCH_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def manifest_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of the manifests found (bundled, ./manifests/, CKPTFETCH_MANIFESTS), and .yaml files."""
    items: list[CompletionItem] = []
    if "/" not in incomplete and not incomplete.endswith((".yaml", ".yml")):
        try:
            from ..discovery import iter_manifest_files
            from ..manifest import manifest_stem

            names = sorted({manifest_stem(p) for p in iter_manifest_files()})
        except Exception:  # a broken folder must not break the shell
            names = []
        items = [CompletionItem(n) for n in names if n.startswith(incomplete)]
    return items + [CompletionItem(incomplete, type="file")]


def _manifest(ctx: click.Context) -> Any:
    name = ctx.params.get("manifest") or ctx.params.get("name")
    if not name:
        # Completing an option's value, click stops parsing at that option, before it gives the arguments their
        # parameters: the manifest typed before it is still among the leftover words.
        name = next((a for a in ctx.args if not a.startswith("-")), None)
    if not name:
        return None
    try:
        from ..discovery import resolve_manifest

        return resolve_manifest(str(name))
    except Exception:  # an unfinished or broken manifest: nothing to offer
        return None


def variant_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    m = _manifest(ctx)
    return [CompletionItem(v) for v in (m.variants if m else ()) if v.startswith(incomplete)]


def target_paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    m = _manifest(ctx)
    return [CompletionItem(p) for p in (m.files if m else ()) if p.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (manifest names, variants, --only targets).

    \b
    Examples:
      eval "$(ckptfetch completion bash)"                       # in ~/.bashrc
      eval "$(ckptfetch completion zsh)"                        # in ~/.zshrc
      ckptfetch completion fish > ~/.config/fish/completions/ckptfetch.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    # The group this command runs under (not imported: the group imports this module).
    click.echo(cls(ctx.find_root().command, {}, "ckptfetch", COMPLETE_VAR).source())


__all__ = ["COMPLETE_VAR", "completion", "manifest_names", "target_paths", "variant_names"]
