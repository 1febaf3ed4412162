"""The `mimiclab` command. Thin: parse arguments, call the layers, print with rich.

Each command group lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import typer

from mimiclab import __version__

app = typer.Typer(
    name="mimiclab",
    help="MIMIC on your own machine: access, download, build, query, cohorts, workbench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mimiclab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """MIMIC on your own machine: access, download, build, query, cohorts, workbench."""


def _register() -> None:
    # Imported for their side effect of adding commands to `app`. Order = order in --help.
    import importlib

    for name in ("demo", "datasets", "build", "physionet", "synth", "api", "cohort", "web"):
        try:
            importlib.import_module(f"mimiclab.cli.{name}")
        except ModuleNotFoundError as exc:  # a command group not written yet
            if exc.name != f"mimiclab.cli.{name}":
                raise


_register()


def main() -> None:
    from mimiclab import config

    config.private_process()  # everything this command writes is private to the user (umask 077)
    app()
