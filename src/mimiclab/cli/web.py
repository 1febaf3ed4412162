"""`mimiclab serve`: the local web workbench."""

from __future__ import annotations

import os
import sys

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, err_console, friendly_errors, scrub_argv


@app.command("serve")
def serve_cmd(
    targets: list[str] | None = typer.Argument(None, metavar="[URL]...",
                                               help="Datasets on a server to serve too: postgresql://user@host/db "
                                                    "(what `mimiclab publish` wrote) or bigquery://project/dataset."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset the pages open (default: first built)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback requires a token."),
    port: int = typer.Option(8765, "--port", "-p", help="Port to listen on."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser tab."),
    token: str | None = typer.Option(None, "--token", envvar="MIMICLAB_TOKEN", show_envvar=True,
                                     help="Access token (default: a new one each start). Prefer $MIMICLAB_TOKEN "
                                          "or --token-file: the command line is visible to every user in `ps`."),
    token_file: str | None = typer.Option(None, "--token-file", help="Read the access token from this file (mode 600)."),
    no_token: bool = typer.Option(False, "--no-token", help="No token (loopback only): every user of this machine can open it."),
) -> None:
    """Start the workbench: data dictionary, tables, patients, population, cohorts and SQL in your browser.

    With a URL, the dataset on that PostgreSQL server or BigQuery is served beside the local builds."""
    with friendly_errors():
        run_workbench(dataset=dataset, host=host, port=port, open_browser=not no_browser, token=token,
                      token_file=token_file, no_token=no_token, sources=targets or [])


def run_workbench(**kw) -> None:
    """`web.serve`; when the server cannot start, print why and exit 1 at once.

    After uvicorn fails to start (port in use), DuckDB's teardown at interpreter exit can abort the process
    ("terminate called ...") about every other time. The workbench only reads and its databases are closed
    by then, so the process leaves without that teardown, its message printed.
    """
    from mimiclab import web

    try:
        web.serve(echo=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True), **kw)
    except web.StartError as exc:
        err_console.print("[bold red]error:[/] ", end="", highlight=False, markup=True, soft_wrap=True)
        err_console.print(scrub_argv(str(exc)), highlight=False, markup=False, soft_wrap=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
