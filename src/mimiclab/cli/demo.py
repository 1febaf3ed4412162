"""`mimiclab demo`: download (or generate) the demo, build it, open the workbench."""

from __future__ import annotations

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors


@app.command("demo")
def demo_cmd(
    mirror: str = typer.Option(None, "--mirror", envvar="MIMICLAB_PHYSIONET_URL",
                               help="PhysioNet mirror URL, or a local folder laid out as <slug>/<version>/."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Skip PhysioNet; generate a synthetic demo."),
    patients: int = typer.Option(100, "--patients", help="Synthetic patients (with --synthetic or offline)."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the workbench when the build is done."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the workbench in a browser."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    no_token: bool = typer.Option(False, "--no-token", help="Serve without an access token (loopback only)."),
) -> None:
    """The MIMIC-IV demo (100 patients, open data) in the workbench, ready to explore."""
    from mimiclab.demo import prepare

    with friendly_errors():
        res = prepare(mirror=mirror, synthetic=synthetic, patients=patients,
                      say=lambda s: console.print(s, highlight=False))
        m = res.build.manifest
        rows = sum(e.rows for e in m.tables.values())
        flag = " [bold magenta]SYNTHETIC — not real patients[/]" if res.synthetic else ""
        console.print(f"[bold green]built[/] {res.slug} {res.version}: {len(m.loaded)} tables, {rows:,} rows"
                      f"{flag}\n  ({res.reason})")
        if m.not_loaded:
            console.print(f"  not loaded (no source file): {', '.join(e.qualified for e in m.not_loaded)}")
        console.print(f"  database: {res.build.database}", soft_wrap=True)
        console.print(f'  try:      mimiclab sql {res.slug} "SELECT gender, count(*) FROM mimiciv_hosp.patients GROUP BY 1"',
                      soft_wrap=True)
        console.print(f"            python -c \"import mimiclab; print(mimiclab.open('{res.slug}').tables)\"",
                      soft_wrap=True)
        if not serve:
            return
        from mimiclab.cli.web import run_workbench

        run_workbench(dataset=res.slug, host=host, port=port, open_browser=browser, no_token=no_token)
