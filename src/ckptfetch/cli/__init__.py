"""The `ckptfetch` command: a thin click skin over the library (one module per command, `app` ties them)."""

from .app import cli, main

__all__ = ["cli", "main"]
