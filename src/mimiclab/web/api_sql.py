"""/api/.../sql: read-only SQL with a row cap and a time limit, plus example queries per schema family.

Statements run as typed, in the dataset's own dialect: DuckDB's for a local build, PostgreSQL's or BigQuery's
for a server (the page says which); the examples are given in that dialect.

Two walls: the statement check (store.sqlguard) refuses anything but one reading statement, and the
statement runs on the build's sandboxed store (read-only database, no file or network access, settings
locked, one statement per call). Results stream out of the store and stop at the row cap, so
`SELECT * FROM chartevents` costs only the rows shown; the run counts as heavy work (queued, time-limited,
stopped when the client leaves).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from mimiclab import catalog
from mimiclab.catalog import workbench as wbcat
from mimiclab.store import sqlguard
from mimiclab.web.api_data import csv_export, wb
from mimiclab.web.core import arrow_rows

router = APIRouter(prefix="/api", tags=["sql"])


class SqlIn(BaseModel):
    sql: str = Field(max_length=sqlguard.MAX_SQL_CHARS)
    max_rows: int | None = Field(None, ge=1, le=100_000)


def check(w, slug: str, sql: str) -> str:
    """The statement if it is one reading statement in the dataset's dialect (DuckDB's guard for a local build,
    PostgreSQL's for a server: each refuses what reaches files, settings or the network in its own database).
    BigQuery's store checks each statement itself, in BigQuery's dialect (backquoted project.dataset.table)."""
    dialect = dialect_of(w.build(slug))
    if dialect == "postgres":
        from mimiclab.store.postgres_store import check_pg

        return check_pg(sql)
    if dialect == "bigquery":
        from mimiclab.errors import QueryError

        text = (sql or "").strip().rstrip(";").rstrip()
        if not text:
            raise QueryError("the query is empty: write a SELECT statement.")
        if len(text) > sqlguard.MAX_SQL_CHARS:
            raise QueryError(f"the query is longer than {sqlguard.MAX_SQL_CHARS:,} characters.")
        return text
    return sqlguard.check(sql)


@router.post("/datasets/{slug}/sql", summary="Run one read-only statement; rows capped, time limited")
async def run_sql(request: Request, slug: str, body: SqlIn) -> dict:
    w = wb(request)
    cap = min(body.max_rows or w.limits.sql_rows, w.limits.sql_rows)
    checked = check(w, slug, body.sql)

    def run() -> dict:  # rows to JSON in the worker too: a large result must not hold up the event loop
        table, truncated, secs = w.store(slug).capped(checked, cap, max_bytes=w.limits.sql_bytes)
        out = arrow_rows(table)
        out.update({"row_count": table.num_rows, "truncated": truncated, "max_rows": cap,
                    "seconds": round(secs, 4), "time_limit": w.limits.sql_seconds})
        return out

    return await w.heavy(request, run, what="the query")


@router.get("/datasets/{slug}/sql.csv", summary="The same statement's result as CSV (row, size and time caps)")
async def sql_csv(request: Request, slug: str, sql: str = Query(..., max_length=sqlguard.MAX_SQL_CHARS)):
    checked = check(wb(request), slug, sql)
    return await csv_export(request, slug, (checked, None), f"{slug}-query.csv")


@router.get("/datasets/{slug}/sql/examples", summary="Example queries for this dataset's schema family")
def examples(request: Request, slug: str) -> dict:
    """The family's examples (catalog/workbench/<family>.yaml) as this dataset's store runs them: statements
    typed on the SQL page run as written, in the store's own dialect (`dialect`: duckdb, postgres, bigquery)."""
    w = wb(request)
    b = w.build(slug)
    fam = catalog.get(b.slug).family or ""
    dialect = dialect_of(b)
    lim = w.limits
    shown = [{"title": e.title, "sql": example_sql(e, dialect)} for e in wbcat.load(fam).examples]
    return {"family": fam, "dialect": dialect, "backend": b.backend, "examples": shown,
            "limits": {"rows": lim.sql_rows, "seconds": lim.sql_seconds, "csv_rows": lim.csv_rows,
                       "csv_mb": lim.csv_bytes // 2**20, "export_seconds": lim.export_seconds}}


DIALECTS = {"duckdb": "duckdb", "postgres": "postgres", "bigquery": "bigquery"}  # manifest backend -> sqlglot


def dialect_of(b) -> str:
    """The SQL dialect a dataset's store runs (sqlglot's name), from its backend: no connection needed."""
    return DIALECTS.get(b.backend, "duckdb")


def example_sql(e: wbcat.Example, dialect: str) -> str:
    """An example in `dialect`: its own spelling if the catalog has one, else written to run on DuckDB and
    PostgreSQL as is, else translated by sqlglot (laid out again, as the catalog's text is)."""
    if dialect in e.dialects or dialect in ("duckdb", "postgres"):
        return e.for_dialect(dialect)
    import sqlglot

    return ";\n".join(sqlglot.transpile(e.sql.rstrip().rstrip(";"), read="duckdb", write=dialect, pretty=True)) + ";"
