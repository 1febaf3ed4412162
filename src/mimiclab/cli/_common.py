"""Shared CLI helpers: one console, one way to turn a mimiclab error into a clean message."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Expected failures (bad input, missing data, refused access) print one clear message and exit 1."""
    from mimiclab.errors import MimiclabError

    try:
        yield
    except MimiclabError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
