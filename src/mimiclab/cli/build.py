"""`mimiclab build`, `mimiclab info`, `mimiclab sql`."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from mimiclab.cli import app
from mimiclab.cli._build_progress import BuildProgress
from mimiclab.cli._common import console, err_console, friendly_errors


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _human(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("build")
def build_cmd(
    slug: str = typer.Argument(..., help="Dataset slug, e.g. mimic-iv-demo (see `mimiclab datasets`)."),
    version: str = typer.Option(None, "--version", "-v", help="Dataset version (default: with --source, decided "
                                "from the folder's files, or asked for; else the catalog's latest)."),
    source: Path = typer.Option(None, "--source", help="Folder in PhysioNet's layout (default: mimiclab's download folder)."),
    modules: str = typer.Option(None, "--modules", help="Comma-separated modules, e.g. hosp,icu."),
    tables: str = typer.Option(None, "--tables", help="Comma-separated tables, e.g. admissions,patients."),
    force: bool = typer.Option(False, "--force", help="Rebuild tables even if their source file is unchanged."),
    storage: str = typer.Option("native", "--storage", help="native: DuckDB tables (fast lookups, 2x disk); "
                                "views: views over the Parquet files only."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help="Empty tables whose source file is gone "
                                      "(default: keep the rows an earlier build loaded, with a warning)."),
    backend: str = typer.Option("duckdb", "--backend", help="duckdb: the local database only; postgres: then "
                                "load it into PostgreSQL too (--postgres), as `mimiclab publish` does."),
    postgres: str = typer.Option(None, "--postgres", envvar="MIMICLAB_POSTGRES_DSN",
                                 help="With --backend postgres: connection string, e.g. postgresql://user@host/mimic"),
) -> None:
    """Build a typed local database (Parquet + DuckDB) from csv files in PhysioNet's layout."""
    from mimiclab.errors import MimiclabError
    from mimiclab.load import build

    with friendly_errors():
        if backend not in ("duckdb", "postgres"):
            raise MimiclabError(f"unknown --backend {backend!r}: use duckdb or postgres")
        if backend == "postgres" and not postgres:
            raise MimiclabError("--backend postgres needs --postgres postgresql://user@host/db "
                                "(or MIMICLAB_POSTGRES_DSN)")
        with BuildProgress(console) as progress:
            result = build(slug, version=version, source=source, modules=_split(modules),
                           tables=_split(tables), force=force, progress=progress, storage=storage,
                           drop_missing=drop_missing)
        m = result.manifest
        for w in result.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
        console.print(
            f"[bold]{m.dataset} {m.version}[/]: {len(result.loaded)} loaded, {len(result.skipped)} unchanged, "
            f"{len(result.missing)} not loaded (no source file), "
            + (f"{len(result.gone)} kept (source file gone), " if result.gone else "")
            + f"{len(result.failed)} failed"
            + (" [magenta](synthetic data)[/]" if m.synthetic else "")
        )
        # soft_wrap: paths and commands stay on one line, whole, so they can be copied
        console.print(f"database: {result.database}", soft_wrap=True)
        console.print(f'query it: mimiclab sql {m.dataset} "SELECT count(*) FROM {next(iter(m.tables))}"',
                      soft_wrap=True)
        if result.failed:
            raise typer.Exit(1)
        if backend == "postgres":
            _publish(m.dataset, m.version, postgres)


def _publish(slug: str, version: str | None, dsn: str) -> None:
    """Load a finished build into PostgreSQL, printing each table and what the user should know."""
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import find
    from mimiclab.store.postgres_store import redact

    with console.status(f"loading into {redact(dsn)}"):
        counts = to_postgres(find(slug, version), dsn,
                             progress=lambda key, n: console.print(f"  [green]loaded[/] {key}: {n:,} rows"),
                             notes=lambda text: err_console.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True))
    console.print(f"[bold]{len(counts)} tables[/] in {redact(dsn)}, {sum(counts.values()):,} rows", soft_wrap=True)


@app.command("info")
def info_cmd(
    slug: str = typer.Argument(None, help="Show one dataset's tables (default: every build)."),
    version: str = typer.Option(None, "--version", "-v"),
) -> None:
    """What is built, where, how big, with row counts and not-loaded tables flagged."""
    from mimiclab import config
    from mimiclab.load import remove_leftovers
    from mimiclab.sources.registry import builds, find

    with friendly_errors():
        for folder in (config.home() / "db").glob("*/*/"):
            remove_leftovers(folder)  # what killed builds left; skipped where a build is running
        if slug is None:
            all_builds = builds()
            console.print(f"MIMICLAB_HOME: {config.home()}")
            if not all_builds:
                console.print("nothing built yet: run `mimiclab demo` or `mimiclab build <slug> --source DIR`")
                return
            t = RichTable("dataset", "version", "tables", "not loaded", "rows", "size", "built", "data")
            # the name is what the user types next: never truncated; in a narrow terminal the other columns
            # fold (wrap mid-word) rather than lose characters to an ellipsis
            t.columns[0].no_wrap, t.columns[0].min_width = True, max(len(b.manifest.dataset) for b in all_builds)
            for col in t.columns[1:]:
                col.overflow = "fold"
            for b in all_builds:
                m = b.manifest
                t.add_row(m.dataset, m.version, str(len(m.loaded)), str(len(m.not_loaded)),
                          f"{sum(e.rows for e in m.tables.values()):,}", _human(b.size_bytes()), m.built_at,
                          "[magenta]synthetic[/]" if m.synthetic else "real")
            console.print(t)
            return
        b = find(slug, version)
        m = b.manifest
        console.print(f"[bold]{m.title or m.dataset}[/] ({m.dataset} {m.version})"
                      + ("  [magenta]SYNTHETIC DATA — not real patients[/]" if m.synthetic else ""))
        console.print(f"database: {b.database} ({m.storage} tables)\nsource:   {m.source}\n"
                      f"built:    {m.built_at} with mimiclab {m.mimiclab_version}\nmanifest: {m.digest()}",
                      soft_wrap=True)
        t = RichTable("table", "status", "rows", "expected", "parquet size")
        for key, e in m.tables.items():
            st = {"loaded": "[green]loaded[/]", "not_loaded": "[yellow]not loaded[/]", "failed": "[red]failed[/]"}[e.status]
            if e.source_missing:
                st += " [yellow](source file gone)[/]"
            size = (b.build_dir / e.parquet).stat().st_size if (b.build_dir / e.parquet).exists() else None
            t.add_row(key, st, f"{e.rows:,}", "" if e.expected_rows is None else f"{e.expected_rows:,}", _human(size))
        console.print(t)


@app.command("sql")
def sql_cmd(
    slug: str = typer.Argument(..., help="Built dataset slug, postgresql://... or bigquery://<billing>/<slug>-<version>."),
    query: str = typer.Argument(..., help="SQL in the backend's dialect (DuckDB for a local build), mimic-code's schema names."),
    version: str = typer.Option(None, "--version", "-v"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json"),
    limit: int = typer.Option(1000, "--limit", help="Rows shown in table format (0 = all)."),
    published: str = typer.Option(None, "--published", help="A postgresql:// database holding several published "
                                                            "datasets: which one (its schemas come first)."),
) -> None:
    """Run SQL on a dataset (a local build, or one on PostgreSQL or BigQuery) and print the result."""
    from mimiclab.errors import MimiclabError
    from mimiclab.sources import open_source

    with friendly_errors():
        if fmt not in ("table", "csv", "json"):
            raise MimiclabError(f"unknown --format {fmt!r}: use table, csv or json")
        with open_source(slug, version, **({"dataset": published} if published else {})).open() as store:
            result = store.arrow(query)
        from mimiclab import cells

        names = result.column_names
        # by position: a join's columns may share a name (MIMIC-III's row_id in every table)
        data = [result.column(i).to_pylist() for i in range(result.num_columns)]
        rows = [[col[r] for col in data] for r in range(result.num_rows)]
        if fmt == "csv":
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(names)
            w.writerows([[cells.text(v) for v in r] for r in rows])
        elif fmt == "json":  # objects when the names are unique, else [names, rows] so that no column is lost
            vals = [[cells.jsonable(v, safe_ints=False) for v in r] for r in rows]
            out: object = ([dict(zip(names, r, strict=True)) for r in vals] if len(set(names)) == len(names)
                           else {"columns": names, "rows": vals})
            sys.stdout.write(json.dumps(out, indent=1, allow_nan=False) + "\n")
        else:
            from rich.text import Text

            t = RichTable(*(escape(n) for n in names))
            for r in rows[: limit or None]:  # Text: values as they are, never markup ("[second degree]" had vanished)
                t.add_row(*(Text(cells.text(v)) for v in r))
            console.print(t)
            if limit and len(rows) > limit:
                console.print(f"[dim]{len(rows):,} rows, {limit:,} shown (--limit 0 for all, or --format csv)[/]")


@app.command("publish")
def publish_cmd(
    slug: str = typer.Argument(..., help="Built dataset slug."),
    postgres: str = typer.Option(..., "--postgres", envvar="MIMICLAB_POSTGRES_DSN",
                                 help="PostgreSQL connection string, e.g. postgresql://user@host/mimic"),
    version: str = typer.Option(None, "--version", "-v"),
) -> None:
    """Copy a built dataset into PostgreSQL (mimic-code's schema, table and type names). Re-publishing replaces
    only mimiclab's tables; users' views, indexes, grants and other tables are kept."""
    with friendly_errors():
        _publish(slug, version, postgres)
