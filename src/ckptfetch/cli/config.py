"""`ckptfetch config`: each setting's effective value and where it came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..config import KEYS, Key, effective, project_file, rows, user_file
from .common import emit_json, json_option


def _option(key: Key) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The key's own flag, so `ckptfetch config --jobs 4` shows what `get --jobs 4` would use."""
    assert key.flag is not None
    name = key.name.replace("-", "_")
    text = f"As for the commands that take {key.flag}."
    if key.default is False:
        return click.option(key.flag, name, is_flag=True, default=None, help=text)
    if isinstance(key.default, list):
        return click.option(key.flag, name, multiple=True, metavar="VALUE", help=text)
    return click.option(key.flag, name, metavar="VALUE", help=text)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value)) or "-"
    return str(value)


def _config(as_json: bool, **given: Any) -> None:
    """Show each setting's effective value and where it came from.

    Precedence: flag > environment > project ([tool.ckptfetch] in the nearest
    pyproject.toml) > user (config.toml in the user config dir, or
    $CKPTFETCH_CONFIG) > default.

    \b
    Examples:
      ckptfetch config
      ckptfetch config --jobs 4 --json
    """
    flags = {k.name: given.get(k.name.replace("-", "_")) for k in KEYS}
    settings = effective({k: (list(v) if isinstance(v, tuple) else v) for k, v in flags.items()})
    user, project = user_file(), project_file()
    if as_json:
        emit_json({"user": str(user), "user_exists": user.is_file(), "project": str(project) if project else None,
                   "settings": rows(settings.values())})
        return
    click.echo(f"user config: {user}" + ("" if user.is_file() else " (none)"))
    click.echo(f"project:     {project if project else '(no pyproject.toml with [tool.ckptfetch] here or above)'}")
    width = max(len(k.name) for k in KEYS)
    for s in settings.values():
        where = f" ({s.where})" if s.where else ""
        click.echo(f"{s.key.name:<{width}}  {_shown(s.value)}  [{s.origin}{where}]")


_decorated: Callable[..., Any] = json_option(_config)
for _key in reversed([k for k in KEYS if k.flag]):
    _decorated = _option(_key)(_decorated)
config: click.Command = click.command("config", help=_config.__doc__)(_decorated)

__all__ = ["config"]
