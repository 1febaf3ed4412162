"""`mimiclab datasets` and `mimiclab datasets show <slug>`: what PhysioNet publishes, from the catalog."""

from __future__ import annotations

import typer
from rich.table import Table as RichTable

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors

datasets_app = typer.Typer(
    name="datasets",
    help="List the MIMIC datasets mimiclab knows, or show one in detail.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(datasets_app, name="datasets")

OPEN_ACCESS = "Open access: no PhysioNet account or login needed."
CREDENTIALED_STEPS = (
    "Credentialed access. You need, in this order:",
    "  1. a PhysioNet account (https://physionet.org/register/)",
    "  2. credentialing: apply at https://physionet.org/settings/credentialing/ (identity + reference check)",
    "  3. CITI 'Data or Specimens Only Research' training, its completion report (not the certificate) uploaded at https://physionet.org/settings/training/",
    "  4. signing the data use agreement on this dataset's page: {page}",
    "Then `mimiclab login` stores your PhysioNet username/password and `mimiclab access {slug}` checks them.",
)


def _human(n: float | None, approx: bool = False) -> str:
    if n is None:
        return "?"
    prefix = "~" if approx else ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{prefix}{n:.0f} {unit}" if unit == "B" else f"{prefix}{n:.1f} {unit}"
        n /= 1000
    return f"{prefix}{n}"


def _rows(n: int | None, approx: bool = False) -> str:
    if n is None:
        return "?"
    return f"{'~' if approx else ''}{n:,}"


def access_text(ds) -> list[str]:
    """What a user must have to download `ds`, as lines of plain text."""
    if ds.access == "local":
        return ["Generated on this machine (mimiclab synth, or mimiclab demo offline): nothing to download."]
    if ds.access == "open":
        return [OPEN_ACCESS]
    return [line.format(page=ds.page, slug=ds.slug) for line in CREDENTIALED_STEPS]


@datasets_app.callback()
def datasets_cmd(ctx: typer.Context) -> None:
    """List every dataset: slug, title, versions, access and size of the default version."""
    if ctx.invoked_subcommand is not None:
        return
    from mimiclab import catalog

    with friendly_errors():
        table = RichTable(title="MIMIC datasets on PhysioNet", title_justify="left")
        table.add_column("slug", style="bold cyan", no_wrap=True)
        table.add_column("title")
        table.add_column("versions", no_wrap=True)
        table.add_column("access", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        for ds in catalog.datasets():
            versions = ", ".join(
                f"[bold]{v.version}[/]" if v.version == ds.default_version else v.version for v in ds.versions
            )
            access = {"open": "[green]open[/]", "local": "[magenta]local[/]"}.get(ds.access, "[yellow]credentialed[/]")
            v = ds.version()
            approx = any(f.approx_size for f in v.files.values()) or not v.files
            table.add_row(ds.slug, ds.title, versions, access, _human(v.size_bytes, approx))
        console.print(table)
        console.print("[dim]Default version in bold; ~ = approximate. Details: mimiclab datasets show <slug>[/]")


@datasets_app.command("show")
def show_cmd(
    slug: str = typer.Argument(..., help="Dataset slug, e.g. mimiciv or mimic-iv-demo."),
    version: str = typer.Option(None, "--version", "-v", help="Version to show (default: the catalog's default)."),
) -> None:
    """Modules, tables (rows, sizes), database schemas and access requirements of one dataset."""
    from mimiclab import catalog

    with friendly_errors():
        ds = catalog.get(slug)
        v = ds.version(version)
        console.print(f"[bold]{ds.title}[/] ({ds.slug} {v.version})", highlight=False)
        if ds.description:
            console.print(ds.description, highlight=False)
        console.print(f"Page: {ds.page}   License: {ds.license}", highlight=False)
        others = [x.version for x in ds.versions if x.version != v.version]
        line = f"Published: {v.published or '?'}   Size: {_human(v.size_bytes, True)}"
        if others:
            line += f"   Other versions: {', '.join(others)}"
        console.print(line, highlight=False)
        if ds.demo_of:
            console.print(f"Demo of: {ds.demo_of}", highlight=False)
        if v.notes:
            console.print(f"[dim]{v.notes}[/]", highlight=False)

        console.print()
        for line in access_text(ds):
            console.print(line, highlight=False, markup=False)

        fam = ds.schema_family()
        bq = ds.bigquery_for(v.version)
        if fam is not None:
            console.print()
            mods = RichTable(title="Modules", title_justify="left")
            mods.add_column("module", style="bold")
            mods.add_column("database schema")
            mods.add_column("BigQuery (physionet-data)")
            mods.add_column("description")
            for m in ds.modules_for(v.version):
                mod = fam.module(m)
                mods.add_row(m, mod.db_schema + (" (+ unqualified)" if mod.unqualified else ""), bq.get(m, "-"),
                             mod.description)
            console.print(mods)

            tables = RichTable(title="Tables", title_justify="left")
            tables.add_column("table", style="cyan", no_wrap=True)
            tables.add_column("kind")
            tables.add_column("rows", justify="right")
            tables.add_column("size", justify="right")
            tables.add_column("description")
            for t in ds.tables(v.version):
                info = next((f for p, f in v.files.items() if p.rsplit(".csv", 1)[0] == t.file), None)
                rows = _rows(info.rows, info.approx_rows) if info else "?"
                size = _human(info.size, info.approx_size) if info else "?"
                tables.add_row(f"{fam.module(t.module).db_schema}.{t.name}", t.kind, rows, size, t.description)
            console.print(tables)
        elif v.files:
            console.print()
            files = RichTable(title="Files (no tables in the catalog for this dataset)", title_justify="left")
            files.add_column("file", style="cyan")
            files.add_column("rows", justify="right")
            files.add_column("size", justify="right")
            for p, f in v.files.items():
                files.add_row(p, _rows(f.rows, f.approx_rows) if f.rows is not None else "", _human(f.size, f.approx_size))
            console.print(files)
