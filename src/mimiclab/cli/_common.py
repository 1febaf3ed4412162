"""Shared CLI helpers: one console, one way to turn a mimiclab error into a clean message."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from rich.console import Console


class _Console(Console):
    """A rich Console that wraps text to the width of a terminal, and never elsewhere: in a log, a CI job or a
    pipe, rich would assume 80 columns and break every longer message mid-sentence (or mid-path)."""

    @property
    def soft_wrap(self) -> bool:  # print()'s default; checked per call: stdout may change (redirects, tests)
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


console = _Console()
err_console = _Console(stderr=True)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Expected failures (bad input, missing data, refused access) print one clear message and exit 1."""
    from mimiclab.errors import MimiclabError

    try:
        yield
    except MimiclabError as exc:
        err_console.print("[bold red]error:[/] ", end="", highlight=False, markup=True, soft_wrap=True)
        # the message as text, never markup ('mimiclab[postgres]' had printed as 'mimiclab'), and without any
        # password given on the command line, whichever layer quoted it (`info postgresql://u:pw@...`)
        err_console.print(scrub_argv(str(exc)), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def scrub_argv(text: str) -> str:
    """`text` without the passwords of any connection string or URL on this command line or in
    $MIMICLAB_POSTGRES_DSN (which options read), in every spelling."""
    import os

    from mimiclab import redact

    given = [*sys.argv[1:], os.environ.get("MIMICLAB_POSTGRES_DSN", "")]
    secrets = [x for arg in given if arg for x in redact.dsn_secrets(arg)]
    if any(len(x) < 4 and x in text for x in secrets):
        # masking a password of 1-3 characters wherever it occurs garbles the message and shows, by where the
        # masks fall, what the password is
        return "the message is not shown: it may contain the password given on the command line."
    return redact.scrub(text, *secrets)
