"""`mimiclab serve`: the local web workbench."""

from __future__ import annotations

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors


@app.command("serve")
def serve_cmd(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset the pages open (default: first built)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback requires a token."),
    port: int = typer.Option(8765, "--port", "-p", help="Port to listen on."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser tab."),
    token: str | None = typer.Option(None, "--token", help="Access token (generated when --host is not loopback)."),
) -> None:
    """Start the workbench: data dictionary, tables, patients, population, cohorts and SQL in your browser."""
    from mimiclab import web

    with friendly_errors():
        web.serve(dataset=dataset, host=host, port=port, open_browser=not no_browser, token=token,
                  echo=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
