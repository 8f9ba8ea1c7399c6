"""The `ckptfetch` console script: fast paths first, then the click CLI.

`--version` and a plain `verify DIR` (what CI runs on every build) are answered
without importing click, rich, yaml or requests, so they cost little more
than the interpreter's own start-up. Everything else goes to `cli.main`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost a third of the start-up
if TYPE_CHECKING:
    from typing import NoReturn

_VERIFY_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--strict": "strict", "--full": "full", "--json": "as_json",
                 "--record-only": "record_only"}


def _fast_verify(args: list[str]) -> NoReturn | None:
    """Run `verify DIR [-q] [--strict] [--full] [--json] [--record-only]`; None if args need the full CLI."""
    flags = {"quiet": False, "strict": False, "full": False, "as_json": False, "record_only": False}
    directory = None
    for arg in args:
        if arg in _VERIFY_FLAGS:
            flags[_VERIFY_FLAGS[arg]] = True
        elif arg.startswith("-") or directory is not None:
            return None  # --manifest, --help, --debug, two paths...: let click handle it
        else:
            directory = arg
    if directory is None:
        return None  # the default DIR may come from a config file (`dest`): the full CLI reads it
    if not (flags["strict"] or flags["full"] or flags["as_json"]):
        from . import fastverify

        # Nothing changed since the last verify (the CI case): answered from the cache, no library import.
        if fastverify.run(directory, flags["quiet"], flags["record_only"]):
            sys.exit(0)
    from .api import verify
    from .errors import CkptfetchError, ExitCode
    from .report import emit_json, print_verify

    try:
        result = verify(directory, strict=flags["strict"], full=flags["full"], record_only=flags["record_only"])
    except CkptfetchError as exc:
        if flags["as_json"]:
            emit_json({"ok": False, "error": str(exc), "exit_code": int(exc.exit_code)})
        sys.stderr.write(f"ckptfetch: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("ckptfetch: interrupted\n")
        sys.exit(ExitCode.INTERRUPTED)
    print_verify(result, flags["quiet"], flags["as_json"])
    sys.exit(ExitCode.OK if result.ok else ExitCode.FAILED)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run `ckptfetch ARGS` (default: the process's arguments) and exit with its code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from ._version import __version__

        sys.stdout.write(f"ckptfetch, version {__version__}\n")
        sys.exit(0)
    if args[:1] == ["verify"]:
        _fast_verify(args[1:])
    from .cli import main as cli_main

    cli_main(args)
