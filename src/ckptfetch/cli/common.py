"""What every command shares: the consoles, the one JSON document, the mirror options."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


def consoles() -> tuple[Console, Console]:
    """stdout and stderr consoles; styles only on a terminal, and none at all (no colour, no bold) with NO_COLOR."""
    import os

    from rich.console import Console

    # rich's own NO_COLOR handling drops colours but keeps bold; no-color.org means no styling at all.
    # soft_wrap: long paths and digests are never folded or cut.
    if os.environ.get("NO_COLOR"):
        return (Console(soft_wrap=True, highlight=False, color_system=None),
                Console(stderr=True, soft_wrap=True, highlight=False, color_system=None))
    return Console(soft_wrap=True, highlight=False), Console(stderr=True, soft_wrap=True, highlight=False)


def emit_json(doc: Any) -> None:
    """The one JSON document a `--json` command prints on stdout."""
    from ..report import emit_json as emit

    emit(doc)


def mirror_option(f: F) -> F:
    """`--mirror FROM=TO`, repeatable."""
    return click.option("--mirror", "mirrors", multiple=True, metavar="FROM=TO",
                        help="Rewrite URLs starting with FROM to TO, tried first (repeatable; also CKPTFETCH_MIRRORS).")(f)


def hashed_mirror_option(f: F) -> F:
    """`--hashed-mirror TARGET`, repeatable."""
    return click.option("--hashed-mirror", "hashed_mirrors", multiple=True, metavar="TARGET",
                        help="Try TARGET/sha256/<hex> first for every file whose sha256 is known (pinned, or in a lock "
                             "file, or in TARGET/manifests/NAME.lock.yaml); TARGET is s3://BUCKET/PREFIX, an https:// "
                             "URL or a folder, as `mirror push` fills it (repeatable; also CKPTFETCH_HASHED_MIRRORS).")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def offline_option(f: F) -> F:
    """`--offline`: no request to an original host (CKPTFETCH_OFFLINE=1 does the same)."""
    return click.option("--offline", is_flag=True,
                        help="Use only mirrors (--mirror, --hashed-mirror) and local files: no request reaches an original host, the "
                             "Hub included; folder listings and Hub commits come from the lock file or the record "
                             "(also CKPTFETCH_OFFLINE=1).")(f)
