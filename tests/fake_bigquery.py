"""A stand-in for `google.cloud.bigquery.Client` that runs on a local DuckDB build, so the BigQuery path is
tested without network and with real results, not only real syntax.

It receives exactly what BigQueryStore sends (the rendered BigQuery SQL and the QueryJobConfig), and holds it
to what BigQuery would: the SQL must parse in sqlglot's BigQuery dialect; every table must be fully qualified
(`physionet-data.<dataset>.<table>`: a name the store forgot to rewrite would be looked up in the billing
project and not found); every `@name` must have a typed parameter. It then translates the SQL back to
DuckDB (tables to the demo build's schema.table, `@name` to DuckDB parameters) and runs it. Dry runs report
`total_bytes_processed` (rows x 8 bytes x columns of each table scanned, or per-table overrides), and a job
above `maximum_bytes_billed` fails as BigQuery fails it.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from sqlglot import exp

PROJECT = "physionet-data"

# BigQuery types of DuckDB's, for INFORMATION_SCHEMA.COLUMNS as BigQuery reports it
_TYPES = {"BIGINT": "INT64", "INTEGER": "INT64", "SMALLINT": "INT64", "TINYINT": "INT64", "DOUBLE": "FLOAT64",
          "FLOAT": "FLOAT64", "VARCHAR": "STRING", "BOOLEAN": "BOOL", "TIMESTAMP": "DATETIME", "DATE": "DATE",
          "TIME": "TIME"}

# functions sqlglot can write for BigQuery that BigQuery does not have (a round trip through sqlglot
# would hide them: it reads them back as what it wrote)
NOT_BIGQUERY = {"TIME_TO_UNIX", "EPOCH", "LIST_CONTAINS", "TRY_CAST", "STRFTIME", "DATEDIFF", "CONCAT_WS"}


def views_of(*databases) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every table of the given build databases as a view under its own
    schema.table (cursors of it see them too, unlike tables reached through USE of an attached file)."""
    con = duckdb.connect(":memory:")
    for i, path in enumerate(databases):
        con.execute(f"ATTACH '{path}' AS db{i} (READ_ONLY)")
        for schema, table in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [f"db{i}"]).fetchall():
            con.execute(f'CREATE SCHEMA IF NOT EXISTS memory."{schema}"')
            con.execute(f'CREATE VIEW memory."{schema}"."{table}" AS SELECT * FROM db{i}."{schema}"."{table}"')
    return con


SUBDAY = {"MICROSECOND", "MILLISECOND", "SECOND", "MINUTE", "HOUR"}


@dataclass
class Call:
    sql: str
    config: Any
    dry_run: bool
    duckdb_sql: str = ""
    bytes: int = 0


class FakeJob:
    def __init__(self, client: FakeClient, call: Call, run, delay: float):
        self._client, self.call, self._run, self._delay = client, call, run, delay
        self.total_bytes_processed = call.bytes
        self.cancelled = False
        self._stop = threading.Event()

    def cancel(self) -> bool:
        self.cancelled = True
        self._stop.set()
        return True

    def done(self) -> bool:
        return not self._delay or self.cancelled

    def result(self, timeout: float | None = None, **kw) -> FakeRows:
        if self._delay:
            wait = self._delay if timeout is None else min(self._delay, timeout)
            if self._stop.wait(wait) or self.cancelled:
                raise gexc.BadRequest("Job execution was cancelled: User requested cancellation")
            if timeout is not None and timeout < self._delay:
                raise concurrent.futures.TimeoutError()
        return FakeRows(self._run())


class FakeRows:
    """The shape of RowIterator that the store uses."""

    def __init__(self, table: pa.Table):
        self._table = table
        self.total_rows = table.num_rows
        kinds = {pa.int64(): "INTEGER", pa.float64(): "FLOAT", pa.string(): "STRING", pa.bool_(): "BOOLEAN",
                 pa.timestamp("us"): "DATETIME", pa.date32(): "DATE"}
        self.schema = [bigquery.SchemaField(f.name, kinds.get(f.type, "STRING")) for f in table.schema]

    def to_arrow(self, create_bqstorage_client: bool = True, **kw) -> pa.Table:
        return self._table

    def to_arrow_iterable(self, **kw):
        return iter([b for b in self._table.to_batches(max_chunksize=50) if b.num_rows])


@dataclass
class FakeClient:
    """`datasets`: BigQuery dataset -> DuckDB schema of `con`. `table_bytes`: `dataset.table` -> bytes a scan
    of it costs in a dry run (default rows x 8 x columns)."""

    con: duckdb.DuckDBPyConnection
    datasets: dict[str, str]
    table_bytes: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0  # seconds each job takes (time limit and cancellation tests)
    calls: list[Call] = field(default_factory=list)
    listed: list[tuple[str, int | None]] = field(default_factory=list)  # list_rows calls (table, max_results)
    project: str = "my-lab-123456"

    def close(self) -> None:
        pass

    # -- BigQuery's checks
    def _check(self, sql: str, config) -> tuple[exp.Expression, dict | list | None]:
        if config is not None and not isinstance(config, bigquery.QueryJobConfig):
            raise TypeError(f"job_config must be a QueryJobConfig, not {type(config).__name__}")
        try:
            trees = sqlglot.parse(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
        except sqlglot.errors.SqlglotError as exc:
            raise gexc.BadRequest(f"Syntax error: {str(exc).splitlines()[0]}") from None
        trees = [t for t in trees if t is not None]
        if len(trees) != 1:
            raise gexc.BadRequest(f"fake: expected one statement, got {len(trees)}")
        tree = trees[0]
        for fn in tree.find_all(exp.Func):
            name = (fn.name if isinstance(fn, exp.Anonymous) else fn.sql("bigquery").split("(")[0]).upper()
            if name in NOT_BIGQUERY:
                raise gexc.BadRequest(f"Function not found: {name}")
            unit = fn.args.get("unit")
            if isinstance(fn, exp.DateDiff) and unit is not None and unit.name.upper() in SUBDAY:
                raise gexc.BadRequest(f"DATE_DIFF does not support the {unit.name.upper()} date part "
                                      "(BigQuery: DATE values, DAY or longer; use DATETIME_DIFF)")
        if any(True for _ in tree.find_all(exp.Escape)):  # BigQuery's LIKE escapes with a backslash, no clause
            raise gexc.BadRequest("Syntax error: Expected end of input but got keyword ESCAPE")
        for u in tree.find_all(exp.Unnest):
            if u.args.get("offset"):  # sqlglot reads it back as DuckDB's 1-based WITH ORDINALITY: results would lie
                raise NotImplementedError("fake: UNNEST ... WITH OFFSET cannot be translated to DuckDB faithfully")
        for sel in tree.find_all(exp.Select):
            if sel.args.get("qualify") and not any(sel.args.get(k) for k in ("where", "group", "having")):
                raise gexc.BadRequest("QUALIFY clause must be used in conjunction with WHERE or GROUP BY or HAVING clause")
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for t in tree.find_all(exp.Table):
            if not isinstance(t.this, exp.Identifier):
                continue  # UNNEST(...) and other table functions
            if not t.catalog and not t.db and t.name.lower() in ctes:
                continue
            if t.catalog != PROJECT:
                raise gexc.NotFound(f"Not found: Table {self.project}:{t.db or '(no dataset)'}.{t.name} "
                                    "(not in physionet-data: the store did not rewrite this name)")
            if t.db not in self.datasets:
                raise gexc.NotFound(f"Not found: Dataset {PROJECT}:{t.db}")
        params = list(config.query_parameters) if config is not None else []
        for p in params:
            if not isinstance(p, (bigquery.ScalarQueryParameter, bigquery.ArrayQueryParameter)):
                raise TypeError(f"unexpected parameter {p!r}")
        named = {p.name: p for p in params if p.name}
        used = {n.name for n in tree.find_all(exp.Parameter)}
        positional = list(tree.find_all(exp.Placeholder))
        if used - set(named):
            raise gexc.BadRequest(f"Query parameter '{sorted(used - set(named))[0]}' not found")
        if named and positional:
            raise gexc.BadRequest("Positional and named parameters cannot be mixed")
        if positional and len(positional) != len(params):
            raise gexc.BadRequest(f"{len(positional)} positional parameters in the query, {len(params)} given")
        for p in params:  # the declared type must hold the value (BigQuery checks it)
            kind = p.type_ if isinstance(p, bigquery.ScalarQueryParameter) else p.array_type
            values = p.values if isinstance(p, bigquery.ArrayQueryParameter) else [p.value]
            for v in values:
                if v is not None and not _fits(kind, v):
                    raise gexc.BadRequest(f"Query parameter {p.name}: {v!r} is not a {kind}")
        if positional:
            values = [p.values if isinstance(p, bigquery.ArrayQueryParameter) else p.value for p in params]
            return tree, values
        if named:
            return tree, {n: (p.values if isinstance(p, bigquery.ArrayQueryParameter) else p.value)
                          for n, p in named.items() if n in used}
        return tree, None

    # -- back to DuckDB
    def _to_duckdb(self, tree: exp.Expression) -> tuple[str, int]:
        tree = tree.copy()
        scanned = 0
        con = self.con.cursor()  # the real client is used from many threads at once; DuckDB wants a cursor each
        for t in list(tree.find_all(exp.Table)):
            if t.catalog != PROJECT:
                continue
            schema = self.datasets[t.db]
            alias = t.alias or t.name
            if t.name == "__TABLES__":
                rows = con.execute(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' "
                                        "AND table_catalog = current_database() "
                                        "ORDER BY table_name").fetchall()
                counts = " UNION ALL ".join(
                    f"SELECT '{r[0]}' AS table_id, (SELECT count(*) FROM \"{schema}\".\"{r[0]}\") AS row_count"
                    for r in rows) or "SELECT NULL::VARCHAR AS table_id, NULL::BIGINT AS row_count WHERE false"
                sub = f"({counts})"
                t.replace(exp.alias_(sqlglot.parse_one(sub, read="duckdb"), alias, table=True))
            elif t.name.upper() == "INFORMATION_SCHEMA.COLUMNS":
                cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _TYPES.items())
                sub = (f"(SELECT table_name, column_name, ordinal_position, CASE data_type {cases} ELSE data_type END "
                       f"AS data_type FROM information_schema.columns WHERE table_schema = '{schema}' "
                       "AND table_catalog = current_database())")
                t.replace(exp.alias_(sqlglot.parse_one(sub, read="duckdb"), alias, table=True))
            else:
                key = f"{t.db}.{t.name}"
                if key in self.table_bytes:
                    scanned += self.table_bytes[key]
                else:
                    try:
                        n, cols = con.execute(
                            f"SELECT (SELECT count(*) FROM \"{schema}\".\"{t.name}\"), (SELECT count(*) FROM "
                            f"information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{t.name}' "
                            f"AND table_catalog = current_database())"
                        ).fetchone()
                    except duckdb.CatalogException:
                        raise gexc.NotFound(f"Not found: Table {PROJECT}:{t.db}.{t.name}") from None
                    scanned += n * 8 * cols
                t.set("catalog", None)
                t.set("db", exp.to_identifier(schema))
                if not t.alias:
                    t.set("alias", exp.TableAlias(this=exp.to_identifier(t.name)))
        # BigQuery's LIKE takes a backslash as its escape; DuckDB's has none unless told
        for like in list(tree.find_all(exp.Like, exp.ILike)):
            like.replace(exp.Escape(this=like.copy(), expression=exp.Literal.string("\\")))
        return tree.sql("duckdb"), scanned

    def list_rows(self, table: str, max_results: int | None = None, **kw) -> FakeRows:
        """tabledata.list: the first rows of a table, free (no job, nothing billed)."""
        project, dataset, name = str(table).split(".")
        if project != PROJECT or dataset not in self.datasets:
            raise gexc.NotFound(f"Not found: Table {table}")
        self.listed.append((str(table), max_results))
        sql = f'SELECT * FROM "{self.datasets[dataset]}"."{name}"' + (f" LIMIT {int(max_results)}" if max_results else "")
        try:
            return FakeRows(_bigquery_types(self.con.cursor().sql(sql).to_arrow_table()))
        except duckdb.Error as exc:
            raise gexc.NotFound(f"Not found: Table {table}: {str(exc).splitlines()[0]}") from None

    def query(self, sql: str, job_config=None, location=None, **kw) -> FakeJob:
        tree, params = self._check(sql, job_config)
        duck, scanned = self._to_duckdb(tree)
        dry = bool(job_config is not None and job_config.dry_run)
        call = Call(sql, job_config, dry, duck, scanned)
        self.calls.append(call)
        cap = job_config.maximum_bytes_billed if job_config is not None else None
        if not dry and cap is not None and scanned > int(cap):
            raise gexc.BadRequest(f"Query exceeded limit for bytes billed: {cap}. {scanned} or higher required.")

        def run() -> pa.Table:
            cur = self.con.cursor()
            try:
                rel = cur.sql(duck, params=params) if params is not None else cur.sql(duck)
                t = rel.to_arrow_table()
            except duckdb.Error as exc:
                raise gexc.BadRequest(f"fake (DuckDB): {str(exc).splitlines()[0]}") from None
            return _bigquery_types(t)

        return FakeJob(self, call, (lambda: pa.table({})) if dry else run, 0.0 if dry else self.delay)


def _fits(kind: str, v: Any) -> bool:
    import datetime as dt
    import decimal

    return {"INT64": lambda: isinstance(v, int) and not isinstance(v, bool), "BOOL": lambda: isinstance(v, bool),
            "FLOAT64": lambda: isinstance(v, (float, int)) and not isinstance(v, bool),
            "STRING": lambda: isinstance(v, str), "NUMERIC": lambda: isinstance(v, decimal.Decimal),
            "DATETIME": lambda: isinstance(v, dt.datetime) and v.tzinfo is None,
            "TIMESTAMP": lambda: isinstance(v, dt.datetime),
            "DATE": lambda: isinstance(v, dt.date) and not isinstance(v, dt.datetime),
            "TIME": lambda: isinstance(v, dt.time), "BYTES": lambda: isinstance(v, bytes)}.get(kind, lambda: False)()


def _bigquery_types(t: pa.Table) -> pa.Table:
    """Arrow types as BigQuery returns them: INT64 and FLOAT64 only, microsecond DATETIME."""
    fields = []
    for f in t.schema:
        ty = f.type
        if pa.types.is_integer(ty):
            ty = pa.int64()
        elif pa.types.is_floating(ty):
            ty = pa.float64()
        elif pa.types.is_timestamp(ty):
            ty = pa.timestamp("us", tz=ty.tz)
        elif pa.types.is_large_string(ty):
            ty = pa.string()
        fields.append(pa.field(f.name, ty))
    return t.cast(pa.schema(fields))
