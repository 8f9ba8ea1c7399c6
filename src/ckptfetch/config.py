"""Settings from a user config file and the project's pyproject.toml, with a declarative table of keys.

Each key is one row of `KEYS`: its name in the files, its type, the
environment variable and command-line flag that set it, and its default. The
effective value comes from the first of: the flag, the environment, the
project (`[tool.ckptfetch]` in the nearest pyproject.toml from the current
folder upwards), the user file (`config.toml` in platformdirs' user config
dir, or `CKPTFETCH_CONFIG`), the default.

The CLI applies project and user values as click defaults (`default_map`) for
every command that has the key's flag, so the commands themselves read no
file; the library's first-use `path()` asks `effective()` directly.

>>> parse_bool("yes", "offline", "test")
True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

USER_FILE = "config.toml"
ENV_FILE = "CKPTFETCH_CONFIG"
Origin = str  # "flag" | "environment" | "project" | "user" | "default"


def parse_bool(value: Any, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"{where}: `{key}` must be true or false, got {value!r}")


def parse_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or str(value).strip().isdigit()):
        raise UsageError(f"{where}: `{key}` must be a whole number, got {value!r}")
    return int(value)


def parse_str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value.strip()


def parse_list(value: Any, key: str, where: str) -> list[str]:
    """A TOML list of strings; from the environment, `;`- or newline-separated (as CKPTFETCH_MIRRORS)."""
    if isinstance(value, str):
        import re

        return [v.strip() for v in re.split(r"[;\n]", value) if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: `{key}` must be a list of strings, got {value!r}")
    return [v.strip() for v in value if v.strip()]


@dataclass(frozen=True)
class Key:
    """One setting: its name in the files, how to read it, and what else sets it."""

    name: str
    parse: Callable[[Any, str, str], Any]
    env: str | None
    flag: str | None
    default: Any
    help: str
    path: bool = False  # a folder: relative values in pyproject.toml are relative to the project
    also: tuple[str, ...] = ()  # "command.param" that take the value too (an argument, not the flag)


KEYS: tuple[Key, ...] = (
    Key("mirrors", parse_list, "CKPTFETCH_MIRRORS", "--mirror", [], "URL rewrites FROM=TO, tried first"),
    Key("hashed-mirrors", parse_list, "CKPTFETCH_HASHED_MIRRORS", "--hashed-mirror", [],
        "content-addressed mirrors (ROOT/sha256/<hex>), tried before any other source"),
    Key("jobs", parse_int, "CKPTFETCH_JOBS", "--jobs", 16, "files fetched at once"),
    Key("dest", parse_str, "CKPTFETCH_DEST", "--dest", None, "destination folder (default: the manifest's root)",
        path=True, also=("verify.directory",)),
    Key("offline", parse_bool, "CKPTFETCH_OFFLINE", "--offline", False, "never use the network"),
    Key("link", parse_str, "CKPTFETCH_LINK", "--link", None, "how files come out of the store (link mode)"),
    Key("cache-dir", parse_str, "CKPTFETCH_CACHE", "--cache-dir", None, "the content-addressed store",
        path=True),
)
"""Every key the files may hold. A new setting is one more row."""

BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class Setting:
    """An effective value and where it came from (`where`: the file or variable)."""

    key: Key
    value: Any
    origin: Origin
    where: str = ""


def user_file() -> Path:
    """The user config file: $CKPTFETCH_CONFIG, else config.toml in platformdirs' user config dir."""
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE]).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("ckptfetch", appauthor=False)) / USER_FILE


def project_file(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml from `start` (the current folder) upwards that has [tool.ckptfetch]."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            table = _read_toml(candidate).get("tool", {})
            if isinstance(table, dict) and "ckptfetch" in table:
                return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def _table(path: Path, project: bool) -> dict[str, Any]:
    data = _read_toml(path)
    table = data.get("tool", {}).get("ckptfetch", {}) if project else data
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.ckptfetch] must be a table")
    for name in table:
        if name not in BY_NAME:
            import difflib

            close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.5)
            maybe = f" (did you mean `{close[0]}`?)" if close else ""
            raise UsageError(f"{path}: unknown key `{name}`{maybe} (keys: {', '.join(BY_NAME)})")
    return table


def _from_file(key: Key, raw: Any, path: Path, project: bool) -> Any:
    value = key.parse(raw, key.name, str(path))
    if key.path and isinstance(value, str):
        folder = Path(value).expanduser()
        value = str(path.parent / folder) if project and not folder.is_absolute() else str(folder)
    return value


def effective(flags: Mapping[str, Any] | None = None, *, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> dict[str, Setting]:
    """Every key's value and origin: flag > environment > project > user > default.

    `flags` maps key names to values given on the command line (None: not given).
    """
    env = os.environ if env is None else env
    layers: list[tuple[Origin, Path, dict[str, Any]]] = []
    project = project_file(cwd)
    if project is not None:
        layers.append(("project", project, _table(project, True)))
    user = user_file()
    if user.is_file():
        layers.append(("user", user, _table(user, False)))
    out: dict[str, Setting] = {}
    for key in KEYS:
        given = (flags or {}).get(key.name)
        if given is not None and given != () and given != []:
            out[key.name] = Setting(key, key.parse(given, key.name, key.flag or key.name), "flag", key.flag or "")
        elif key.env and env.get(key.env, "").strip():
            out[key.name] = Setting(key, key.parse(env[key.env], key.name, key.env), "environment", key.env)
        else:
            found = next(((o, p, t[key.name]) for o, p, t in layers if key.name in t), None)
            out[key.name] = (Setting(key, _from_file(key, found[2], found[1], found[0] == "project"), found[0],
                                     str(found[1])) if found else Setting(key, key.default, "default"))
    return out


def default_map(commands: Mapping[str, Any], settings: Mapping[str, Setting] | None = None) -> dict[str, dict[str, Any]]:
    """click defaults per command for every setting not left at its default (the flag still wins).

    A command takes a key when one of its options is spelled like the key's flag,
    or when the key names it in `also`.
    """
    settings = effective() if settings is None else settings
    out: dict[str, dict[str, Any]] = {}
    for setting in settings.values():
        if setting.origin in ("default", "flag"):
            continue
        key = setting.key
        for cmd_name, command in commands.items():
            for param in getattr(command, "params", ()):
                named = f"{cmd_name}.{param.name}" in key.also
                if named or (key.flag and key.flag in getattr(param, "opts", ())):
                    value = list(setting.value) if isinstance(setting.value, list) else setting.value
                    out.setdefault(cmd_name, {})[param.name] = value
    return out


def rows(settings: Iterable[Setting]) -> list[dict[str, Any]]:
    """`ckptfetch config --json`: one row per key."""
    return [{"key": s.key.name, "value": s.value, "origin": s.origin, "where": s.where, "env": s.key.env,
             "flag": s.key.flag} for s in settings]


__all__ = ["BY_NAME", "KEYS", "Key", "Setting", "default_map", "effective", "project_file", "rows", "user_file"]
