"""The `ckptfetch` group and `main`, the one boundary that turns errors into exit codes.

Each command (a module of its own in this package) parses its options, calls
one library function and renders the result.
Heavy modules (requests, rich, tqdm) are imported inside the commands so that
`--version` and `--help` start fast.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

import click

from .._version import __version__
from ..errors import CkptfetchError, ExitCode, Interrupted
from .authoring import add, hash_cmd, import_cmd, lint, schema
from .cache import cache
from .ci import key
from .common import emit_json
from .completion import completion
from .config import config
from .get import get
from .listing import list_cmd, show
from .lock import lock
from .mirror import mirror
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="ckptfetch")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fetch and verify machine-learning checkpoints from YAML manifests.

    \b
    ckptfetch get sam-pt --minimal          fetch a model set into ./models
    ckptfetch verify models/                check it (exit 0 only if all is well)
    ckptfetch add manifests/mine.yaml URL   pin a new checkpoint in a manifest
    ckptfetch cache du                      what the machine's store holds and shares
    """
    # --debug is read by `main`, the error boundary, before click runs; declared here for --help.
    if ctx.resilient_parsing:
        return  # shell completion: no config file may stop it
    from ..config import default_map

    # Settings from the project's pyproject.toml and the user's config.toml become the commands' defaults
    # (not `config`'s: its flags show what a flag given to a command would do).
    ctx.default_map = default_map({n: c for n, c in cli.commands.items() if n != "config"})


for _command in (list_cmd, show, get, lock, verify, mirror, hash_cmd, add, import_cmd, lint, schema, key, cache,
                 config, completion):
    cli.add_command(_command)


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
        if as_json:  # --json promised one JSON document on stdout, usage errors included
            emit_json({"ok": False, "error": exc.format_message(), "exit_code": int(ExitCode.USAGE)})
        exc.show()
        sys.exit(ExitCode.USAGE)
    except (click.Abort, KeyboardInterrupt):
        click.echo("ckptfetch: interrupted.", err=True)  # before any download began (an interrupted run says more)
        sys.exit(ExitCode.INTERRUPTED)
    except Interrupted as exc:
        click.echo(f"ckptfetch: {exc}", err=True)
        sys.exit(exc.exit_code)
    except CkptfetchError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if as_json:
            emit_json({"ok": False, "error": str(exc), "exit_code": int(exc.exit_code)})
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
