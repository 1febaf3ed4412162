"""PhysioNet's BigQuery (`physionet-data`) as a store: full MIMIC with no download, billed to the user.

Queries keep mimic-code's schema names (`mimiciv_hosp.admissions`) whatever the backend; this store rewrites
each such table reference (sqlglot table nodes, not text) to the version-pinned BigQuery dataset the catalog
names (`physionet-data.mimiciv_3_1_hosp.admissions`). That holds for mimiclab's own (portable, DuckDB-spelled)
SQL and for SQL a user typed in BigQuery's dialect, so published mimic-code SQL runs as written.

Every query is dry-run first: BigQuery bills by bytes scanned, and a query that would scan more than
`maximum_bytes_billed` is refused with the estimate before it costs anything (the cap also goes to the job,
so BigQuery itself enforces it). `google-cloud-bigquery` is an optional extra, imported on first use.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as _dt
import decimal
import os
import re
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from mimiclab import catalog
from mimiclab.errors import QueryError
from mimiclab.store import Capabilities, Params, Store
from mimiclab.store import render as _render_dialect
from mimiclab.store import work as _work

DEFAULT_MAX_BYTES = int(float(os.environ.get("MIMICLAB_BIGQUERY_MAX_GB", "10")) * 1e9)
GB = 1e9


class BigQueryError(QueryError):
    """BigQuery refused a query, or the store cannot reach it (credentials, access, extra missing)."""


class BigQueryAccessError(BigQueryError):
    """A dataset or table is not there for this user: not found, or access not granted (HTTP 403/404)."""


def bigquery_module():
    """`google.cloud.bigquery`, imported on first use: it is an optional extra, and slow to import."""
    import importlib

    try:
        bigquery = importlib.import_module("google.cloud.bigquery")
    except ImportError:
        raise BigQueryError("BigQuery needs the optional extra: pip install 'mimiclab[bigquery]' "
                            "(it installs google-cloud-bigquery).") from None
    return bigquery


# ---------------------------------------------------------------------------------------------- names


def workspace(slug: str, version: str | None = None,
              linked: Sequence[str] | None = None) -> tuple[catalog.BigQueryDataset, ...]:
    """The BigQuery datasets one store reads: those of `slug`'s version, then those of its linked modules
    (by default the rest of its population in catalog/links.yaml, e.g. mimic-iv-ed and mimic-iv-note for
    mimiciv), so `mimiciv_ed.edstays JOIN mimiciv_hosp.admissions` works in one query."""
    ds = catalog.get(slug)
    own = ds.bigquery_datasets(version)
    if not own:
        raise BigQueryError(f"{slug} is not on PhysioNet's BigQuery; datasets that are: "
                            f"{', '.join(d.slug for d in catalog.datasets() if d.bigquery)}.")
    if linked is None:  # the rest of its population (catalog/links.yaml) that PhysioNet serves on BigQuery
        from mimiclab.catalog.links import population

        linked = [s for s in population(slug) if s != slug and catalog.get(s).bigquery]
    out = list(own)
    for other in linked:
        for d in catalog.get(other).bigquery_datasets():
            if not any(o.db_schema == d.db_schema and o.tables == d.tables for o in out):
                out.append(d)
    return tuple(out)


def _names(datasets: Sequence[catalog.BigQueryDataset]) -> tuple[tuple[str, str, str, str], ...]:
    """(db_schema, table or '', project, dataset), table-specific entries first: hashable, for the cache."""
    rows = [(d.db_schema, t, d.project, d.dataset) for d in datasets for t in (d.tables or ())]
    rows += [(d.db_schema, "", d.project, d.dataset) for d in datasets if not d.tables]
    return tuple(rows)


def _target(names: tuple[tuple[str, str, str, str], ...], schema: str, table: str) -> tuple[str, str] | None:
    schema, table = schema.lower(), table.lower()
    for s, t, project, dataset in names:
        if s == schema and t in ("", table):
            return project, dataset
    return None


@lru_cache(maxsize=4096)
def rewrite(query: str, names: tuple[tuple[str, str, str, str], ...], read: str = "bigquery") -> str:
    """`query` (in dialect `read`) as BigQuery SQL with every `schema.table` of a known schema pointing at
    its BigQuery dataset. Fully qualified and unknown references are left as written (a user's own dataset
    in the billing project stays reachable). Cached: the layers above send the same texts over and over."""
    import sqlglot
    from sqlglot import exp

    try:
        trees = sqlglot.parse(query, read=read)
    except sqlglot.errors.SqlglotError as exc:
        raise QueryError(f"this query cannot be read as {read} SQL: {str(exc).splitlines()[0]}") from None
    out = []
    for tree in trees:
        if tree is None:
            continue
        for node in tree.find_all(exp.Table):
            if node.args.get("catalog") or not node.args.get("db") or not isinstance(node.this, exp.Identifier):
                continue
            hit = _target(names, node.db, node.name)
            if hit is not None:
                node.set("catalog", exp.to_identifier(hit[0]))
                node.set("db", exp.to_identifier(hit[1]))
        out.append(tree.sql("bigquery"))
    return ";\n".join(out)


@lru_cache(maxsize=4096)
def preview_of(sql: str) -> tuple[str, int | None] | None:
    """(`project.dataset.table`, row limit or None) when BigQuery SQL `sql` is only `SELECT * FROM <table>
    [LIMIT n]`: such a preview is read with tabledata.list, which is free, where the query would be billed
    for the whole table (BigQuery bills the columns scanned; LIMIT does not reduce it)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or len(tree.expressions) != 1 or not isinstance(tree.expressions[0], exp.Star):
        return None
    if set(k for k, v in tree.args.items() if v) - {"expressions", "from_", "limit", "kind"} or tree.args.get("kind"):
        return None
    frm = tree.args.get("from_")
    table = frm.this if frm is not None else None
    if not isinstance(table, exp.Table) or not table.catalog or not table.db or table.alias or table.args.get("joins"):
        return None
    if table.name.upper().startswith(("INFORMATION_SCHEMA", "__")):
        return None
    limit = tree.args.get("limit")
    n = None
    if limit is not None:
        lit = limit.expression
        if not (isinstance(lit, exp.Literal) and not lit.is_string and str(lit.this).isdigit()):
            return None
        n = int(lit.this)
    return f"{table.catalog}.{table.db}.{table.name}", n


@lru_cache(maxsize=4096)
def bigquery_spelling(query: str) -> str:
    """DuckDB constructs whose sqlglot rendering BigQuery would reject, respelled in DuckDB first so the
    shared rendering gives valid BigQuery with the same meaning:

    * `concat_ws(sep, a, b)` becomes `array_to_string([a, b], sep)`: BigQuery has no CONCAT_WS (sqlglot
      writes it anyway, with COALESCE(x, '') that would also keep the separators of NULL parts); both
      engines' ARRAY_TO_STRING skip NULL elements, as concat_ws does.
    * `date_diff(unit, a, b)` becomes `DATETIME_DIFF(b, a, unit)`: sqlglot writes BigQuery's DATE_DIFF, which
      takes DATE values and day-or-longer units only, while mimiclab diffs times in seconds and hours. MIMIC's
      times are DATETIME on BigQuery, and DATE values coerce to DATETIME, so DATETIME_DIFF fits both.
    * `QUALIFY` gets `WHERE true` where the SELECT has no WHERE, GROUP BY or HAVING, which BigQuery requires.
    """
    low = query.lower()
    if "concat_ws" not in low and "date_diff" not in low and "qualify" not in low:
        return query
    import sqlglot
    from sqlglot import exp

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.ConcatWs):
            sep, *parts = node.expressions
            return exp.Anonymous(this="ARRAY_TO_STRING", expressions=[exp.Array(expressions=parts), sep])
        if isinstance(node, exp.Select) and node.args.get("qualify") and not any(
                node.args.get(k) for k in ("where", "group", "having")):
            return node.where("true", copy=False)
        if isinstance(node, exp.DateDiff) and isinstance(node.args.get("unit"), exp.Var):
            return exp.Anonymous(this="DATETIME_DIFF", expressions=[
                node.this, node.expression, exp.column(node.args["unit"].name.upper())])
        return node

    try:
        trees = sqlglot.parse(query, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return query  # the shared rendering reports it
    return ";\n".join(t.transform(fix).sql("duckdb") for t in trees if t is not None)


# ---------------------------------------------------------------------------------------------- parameters

_SCALAR = ((bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"), (decimal.Decimal, "NUMERIC"), (str, "STRING"),
           (bytes, "BYTES"), (_dt.datetime, "DATETIME"), (_dt.date, "DATE"), (_dt.time, "TIME"))


def _type_of(value: Any, where: str) -> str:
    for py, bq in _SCALAR:  # bool before int, datetime before date: subclasses first
        if isinstance(value, py):
            if isinstance(value, _dt.datetime) and value.tzinfo is not None:
                return "TIMESTAMP"
            return bq
    raise QueryError(f"parameter {where}: BigQuery has no type for a {type(value).__name__} value ({value!r:.40}).")


def query_parameters(params: Params) -> list:
    """Named (`@name`, from a dict) or positional (`?`, from a sequence) BigQuery parameters from Python
    values; lists and tuples become ARRAY parameters typed by their first non-null element (MIMIC's
    datetimes are DATETIME, not TIMESTAMP, in BigQuery: naive datetimes are sent as DATETIME)."""
    if params is None:
        return []
    bq = bigquery_module()
    items = params.items() if isinstance(params, dict) else ((None, v) for v in params)
    out = []
    for i, (name, value) in enumerate(items):
        where = f"@{name}" if name is not None else f"#{i + 1}"
        if isinstance(value, (list, tuple, set, frozenset)):
            values = list(value)
            first = next((v for v in values if v is not None), None)
            kind = _type_of(first, where) if first is not None else "STRING"
            for v in values:
                if v is not None and _type_of(v, where) != kind:
                    raise QueryError(f"parameter {where}: a BigQuery array holds one type; got {kind} and "
                                     f"{_type_of(v, where)}.")
            out.append(bq.ArrayQueryParameter(name, kind, values))
        else:
            out.append(bq.ScalarQueryParameter(name, _type_of(value, where) if value is not None else "STRING",
                                               value))
    return out


# ---------------------------------------------------------------------------------------------- the store

_BQ_TO_DUCKDB = {"INT64": "BIGINT", "FLOAT64": "DOUBLE", "STRING": "VARCHAR", "BOOL": "BOOLEAN",
                 "DATETIME": "TIMESTAMP", "TIMESTAMP": "TIMESTAMP WITH TIME ZONE", "NUMERIC": "DECIMAL(38,9)",
                 "BIGNUMERIC": "DECIMAL(38,9)", "BYTES": "BLOB", "DATE": "DATE", "TIME": "TIME", "JSON": "JSON"}


_ARROW = {"INTEGER": pa.int64(), "INT64": pa.int64(), "FLOAT": pa.float64(), "FLOAT64": pa.float64(),
          "BOOLEAN": pa.bool_(), "BOOL": pa.bool_(), "STRING": pa.string(), "BYTES": pa.binary(),
          "DATETIME": pa.timestamp("us"), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(),
          "TIME": pa.time64("us"), "NUMERIC": pa.decimal128(38, 9)}


def _gb(n: int | float | None) -> str:
    return f"{(n or 0) / GB:,.2f} GB"


class BigQueryStore(Store):
    """One MIMIC version (and its linked modules) on PhysioNet's BigQuery, billed to `billing_project`."""

    backend = "bigquery"
    dialect = "bigquery"
    paramstyle = "at"
    capabilities = Capabilities(stream=True, time_limit=True, register_frames=False, fulltext=False, dry_run=True)

    def __init__(self, billing_project: str, dataset_slug: str = "mimiciv", version: str | None = None, *,
                 client: Any = None, maximum_bytes_billed: int | None = None, max_seconds: float | None = None,
                 linked: Sequence[str] | None = None, location: str | None = None):
        if not billing_project or not re.fullmatch(r"[a-z][a-z0-9.:-]{4,61}[a-z0-9]", billing_project):
            raise BigQueryError(f"{billing_project!r} is not a Google Cloud project id (the billing project is "
                                "yours, e.g. my-lab-123456; physionet-data only holds the data).")
        ds = catalog.get(dataset_slug)
        self.billing_project = billing_project
        self.slug, self.version = ds.slug, ds.version(version).version
        self.datasets = workspace(ds.slug, self.version, linked)
        self._names = _names(self.datasets)
        self.maximum_bytes_billed = int(maximum_bytes_billed if maximum_bytes_billed is not None else DEFAULT_MAX_BYTES)
        self.max_seconds = max_seconds
        self.location = location
        self.last_dry_run_bytes: int | None = None
        self._client = client
        self._own_client = client is None  # close() closes only a client this store made
        self.unavailable: dict[str, str] = {}  # BigQuery dataset -> why tables() could not read it

    # -- connection
    @property
    def client(self):
        """The google-cloud-bigquery Client, made on first use from Application Default Credentials."""
        if self._client is None:
            bq = bigquery_module()
            try:
                self._client = bq.Client(project=self.billing_project, location=self.location)
            except Exception as exc:  # google.auth's DefaultCredentialsError and friends; never show a token
                if type(exc).__name__ == "DefaultCredentialsError":
                    raise BigQueryError("no Google credentials found: run `gcloud auth application-default "
                                        "login` (see docs/bigquery.md).") from None
                raise BigQueryError(f"cannot start a BigQuery client for {self.billing_project}: "
                                    f"{type(exc).__name__}") from None
        return self._client

    def render(self, query: str) -> str:
        """mimiclab's DuckDB-spelled SQL in BigQuery's dialect (`$name` -> `@name`), tables rewritten."""
        return rewrite(_render_dialect(bigquery_spelling(query), "bigquery"), self._names)

    def prepare(self, query: str, *, portable: bool = False) -> str:
        """The BigQuery SQL this store sends for `query`; a user's query must be one reading statement
        (the billing project is writable: no DDL or DML through mimiclab)."""
        sql = self.render(query) if portable else rewrite(query, self._names)
        if not portable:
            self._one_reading_statement(sql)
        return sql

    @staticmethod
    def _one_reading_statement(sql: str) -> None:
        import sqlglot
        from sqlglot import exp

        trees = [t for t in sqlglot.parse(sql, read="bigquery") if t is not None]
        if len(trees) != 1:
            raise QueryError(f"one statement at a time (found {len(trees)}).")
        if not isinstance(trees[0], exp.Query):
            raise QueryError(f"{trees[0].key.upper()} statements are not allowed here: this connection is read-only.")

    # -- running
    def _error(self, exc: Exception) -> QueryError:
        """A google.api_core error as a QueryError: BigQuery's own message, the step to take where known."""
        msg = getattr(exc, "message", None) or str(exc)
        msg = str(msg).splitlines()[0].strip()
        code = getattr(exc, "code", None)
        if code == 403 or "Access Denied" in msg:
            return BigQueryAccessError(f"BigQuery refused access: {msg}. PhysioNet's datasets need your Google account "
                                 "linked on physionet.org and access requested on the dataset's page; billing "
                                 f"needs bigquery.jobs.create on {self.billing_project} (docs/bigquery.md).")
        if code == 404:
            return BigQueryAccessError(f"not found on BigQuery: {msg}")
        return BigQueryError(msg)

    def dry_run(self, query: str, params: Params = None, *, portable: bool = False) -> int:
        """Bytes the query would scan (BigQuery's estimate; free, nothing is billed)."""
        sql = self.prepare(query, portable=portable)
        return self._dry_run(sql, query_parameters(params))

    def _dry_run(self, sql: str, qparams: list) -> int:
        bq = bigquery_module()
        config = bq.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=qparams)
        try:
            job = self.client.query(sql, job_config=config, location=self.location)
        except QueryError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        n = int(job.total_bytes_processed or 0)
        self.last_dry_run_bytes = n
        return n

    @contextlib.contextmanager
    def _job(self, query: str, params: Params, portable: bool) -> Iterator[Any]:
        """Dry run, cap check, then the job; yields its finished RowIterator. Time limit and the current
        Work's cancellation stop the job on BigQuery's side too (job.cancel), not just the wait for it."""
        sql = self.prepare(query, portable=portable)
        qparams = query_parameters(params)
        limit, w = _work.budget(self.max_seconds)
        estimate = self._dry_run(sql, qparams)
        if estimate > self.maximum_bytes_billed:
            raise BigQueryError(
                f"this query would scan {_gb(estimate)}, above the {_gb(self.maximum_bytes_billed)} cap "
                "(maximum_bytes_billed); select fewer columns, filter on fewer tables, or raise the cap "
                "(BigQueryStore(maximum_bytes_billed=...) or MIMICLAB_BIGQUERY_MAX_GB).")
        bq = bigquery_module()
        config = bq.QueryJobConfig(query_parameters=qparams, maximum_bytes_billed=self.maximum_bytes_billed)
        if limit is not None:
            config.job_timeout_ms = max(int(limit * 1000), 1)
        try:
            job = self.client.query(sql, job_config=config, location=self.location)
        except Exception as exc:
            raise self._error(exc) from None
        try:
            with (w.interruptible(job.cancel) if w is not None else contextlib.nullcontext()):
                try:
                    rows = job.result(timeout=limit) if limit is not None else job.result()
                except concurrent.futures.TimeoutError:
                    with contextlib.suppress(Exception):
                        job.cancel()
                    raise _work.stopped(w, limit) from None
                except QueryError:
                    raise
                except Exception as exc:
                    if w is not None and w.reason:
                        raise _work.Cancelled(w.reason) from None
                    raise self._error(exc) from None
                yield rows
        except _work.Cancelled:
            with contextlib.suppress(Exception):
                job.cancel()
            raise

    def _preview(self, query: str, portable: bool, max_rows: int | None = None) -> pa.Table | None:
        """The rows of a bare `SELECT * FROM table [LIMIT n]` from tabledata.list (free, no job), else None."""
        hit = preview_of(self.prepare(query, portable=portable))
        if hit is None or (hit[1] is None and max_rows is None):
            return None
        n = hit[1] if max_rows is None else min(hit[1] if hit[1] is not None else max_rows, max_rows)
        limit, _w = _work.budget(self.max_seconds)
        try:
            rows = self.client.list_rows(hit[0], max_results=n, timeout=limit)
            return rows.to_arrow(create_bqstorage_client=False)
        except QueryError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    def arrow(self, query: str, params: Params = None, *, portable: bool = False) -> pa.Table:
        if not params:
            preview = self._preview(query, portable)
            if preview is not None:
                return preview
        with self._job(query, params, portable) as rows:
            try:
                return rows.to_arrow(create_bqstorage_client=False)
            except Exception as exc:
                raise self._error(exc) from None

    @contextlib.contextmanager
    def stream(self, query: str, params: Params = None, batch_rows: int = 8192, *,
               portable: bool = False) -> Iterator[pa.RecordBatchReader]:
        """Record batches page by page (BigQuery's result pages), so `capped()` stops reading early."""
        with self._job(query, params, portable) as rows:
            batches = rows.to_arrow_iterable()
            first = next(iter(batches), None)
            if first is None:  # no rows: the schema from the result's fields (the pages are used up)
                schema = pa.schema([(f.name, _ARROW.get(f.field_type, pa.string())) for f in (rows.schema or ())])
                yield pa.RecordBatchReader.from_batches(schema, [])
                return

            def more():
                yield first
                yield from batches

            yield pa.RecordBatchReader.from_batches(first.schema, more())

    def capped(self, query: str, max_rows: int, params: Params = None,
               max_bytes: int | None = None, *, portable: bool = False) -> tuple[pa.Table, bool, float]:
        """As Store.capped; a bare `SELECT * FROM table` (the SQL page's first look at a table) is read
        free with tabledata.list instead of being billed for the whole table."""
        if not params and not max_bytes:
            t0 = time.perf_counter()
            preview = self._preview(query, portable, max_rows + 1)
            if preview is not None:
                return preview.slice(0, max_rows), preview.num_rows > max_rows, time.perf_counter() - t0
        return super().capped(query, max_rows, params, max_bytes, portable=portable)

    # -- metadata (free: INFORMATION_SCHEMA and __TABLES__ scan no table data)
    def _dataset_of(self, qualified: str) -> tuple[str, str, str]:
        schema, _, name = qualified.rpartition(".")
        hit = _target(self._names, schema, name)
        if hit is None:
            known = sorted({d.db_schema for d in self.datasets})
            raise BigQueryError(f"no BigQuery dataset for schema {schema or '(none)'!r} in {self.slug} "
                                f"{self.version}; known: {', '.join(known)}.")
        return hit[0], hit[1], name

    def columns(self, qualified: str) -> list[tuple[str, str]]:
        """(name, type) from INFORMATION_SCHEMA.COLUMNS, types spelled as DuckDB's (as the other stores do)."""
        project, dataset, name = self._dataset_of(qualified)
        t = self.arrow(f"SELECT column_name, data_type FROM `{project}.{dataset}`.INFORMATION_SCHEMA.COLUMNS "
                       "WHERE table_name = @table ORDER BY ordinal_position", {"table": name})
        return [(c, _BQ_TO_DUCKDB.get(str(d).upper(), str(d))) for c, d in
                zip(t.column("column_name").to_pylist(), t.column("data_type").to_pylist(), strict=True)]

    def tables(self) -> dict[str, int]:
        """`schema.table` -> row count of every table this store maps (from `__TABLES__`: metadata only).
        A dataset the user cannot see (no access granted, or not published) is left out and its reason kept
        in `unavailable`, so one missing module does not hide the others."""
        out: dict[str, int] = {}
        self.unavailable = {}
        for d in self.datasets:
            try:
                t = self.arrow(f"SELECT table_id, row_count FROM `{d.project}.{d.dataset}.__TABLES__` ORDER BY table_id")
            except BigQueryAccessError as exc:
                self.unavailable[d.path] = str(exc)
                continue
            for name, n in zip(t.column("table_id").to_pylist(), t.column("row_count").to_pylist(), strict=True):
                if d.tables is None or name.lower() in d.tables:
                    out.setdefault(f"{d.db_schema}.{name.lower()}", int(n))
        return out

    def close(self) -> None:
        if not self._own_client:
            return
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def __repr__(self) -> str:
        return f"BigQueryStore({self.billing_project!r}, {self.slug!r}, {self.version!r})"


# ---------------------------------------------------------------------------------------------- URLs

_URL = re.compile(r"bigquery://(?P<project>[^/?#]+)/(?P<rest>[^?#]+?)/?(?:\?(?P<query>[^#]*))?$")


def parse_url(url: str) -> tuple[str, str, str | None]:
    """(billing project, dataset slug, version) from `bigquery://<project>/<slug>-<version>` or
    `bigquery://<project>/<slug>/<version>` (version optional: the catalog's default)."""
    m = _URL.match(url.strip())
    if not m:
        raise BigQueryError(f"not a BigQuery URL: {url!r}; expected bigquery://<billing-project>/<dataset>-<version>, "
                            "e.g. bigquery://my-lab-123456/mimiciv-3.1")
    project, rest = m["project"], m["rest"]
    slugs = {d.slug for d in catalog.datasets()}
    if "/" in rest:
        slug, _, version = rest.partition("/")
        return project, slug, version or None
    if rest in slugs:
        return project, rest, None
    slug, sep, version = rest.rpartition("-")
    if sep and slug in slugs:
        return project, slug, version
    catalog.get(rest)  # raises CatalogError with close matches
    raise AssertionError("unreachable")


def open_bigquery(url: str, **kw: Any) -> BigQueryStore:
    """A BigQueryStore from a `bigquery://` URL; keyword arguments go to BigQueryStore (client,
    maximum_bytes_billed, max_seconds, linked, location). `?max_gb=N` in the URL sets the byte cap."""
    project, slug, version = parse_url(url)
    query = _URL.match(url.strip())["query"]  # type: ignore[index]
    if query:
        from urllib.parse import parse_qs

        for key, values in parse_qs(query).items():
            if key == "max_gb" and "maximum_bytes_billed" not in kw:
                try:
                    kw["maximum_bytes_billed"] = int(float(values[-1]) * GB)
                except ValueError:
                    raise BigQueryError(f"max_gb must be a number of GB, not {values[-1]!r}") from None
            else:
                raise BigQueryError(f"unknown option {key!r} in {url!r}; known: max_gb")
    return BigQueryStore(project, slug, version, **kw)


__all__ = [
    "BigQueryError",
    "BigQueryStore",
    "open_bigquery",
    "parse_url",
    "query_parameters",
    "rewrite",
    "workspace",
]
