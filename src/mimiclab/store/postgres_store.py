"""PostgreSQL: the same tables, for groups that share one server.

`publish_postgres` copies a finished build (its typed Parquet files) into PostgreSQL with mimic-code's
schema and table names and column types (TIMESTAMP(0), SMALLINT, ...), so mimic-code's PostgreSQL concept
scripts run unchanged. Each schema is loaded under a staging name and swapped in one transaction: readers
see the old tables or the new ones, never a half-loaded schema. `PostgresStore` is the read side.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mimiclab import redact as _redact
from mimiclab.errors import MimiclabError, QueryError
from mimiclab.store import Store, TableRef

PG_TYPES = {
    "INTEGER": "INTEGER", "BIGINT": "BIGINT", "SMALLINT": "SMALLINT", "DOUBLE": "DOUBLE PRECISION",
    "VARCHAR": "TEXT", "TIMESTAMP": "TIMESTAMP(0)", "DATE": "DATE", "TIME": "TIME", "BOOLEAN": "BOOLEAN",
}
_STAGING = "__mimiclab_new"
_OLD = "__mimiclab_old"


def _psycopg():
    try:
        import psycopg
    except ImportError:  # optional dependency
        raise MimiclabError("PostgreSQL support needs psycopg: pip install 'mimiclab[postgres]'") from None
    return psycopg


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def redact(dsn: str) -> str:
    """The DSN without its password, for messages (parsed by libpq's rules: see mimiclab.redact)."""
    return _redact.dsn(dsn)


def _error_text(exc: BaseException, dsn: str) -> str:
    """A driver message with every spelling of the DSN's password taken out."""
    return _redact.scrub(str(exc).strip(), *_redact.dsn_secrets(dsn))


def connect(dsn: str):
    psycopg = _psycopg()
    if _redact.conninfo(dsn) is None:
        # libpq's parse errors quote the text around the problem, which may be part of a password
        raise MimiclabError(
            "the PostgreSQL connection string could not be parsed (not shown: it may hold a password). Use "
            "key=value pairs with values containing spaces or quotes in single quotes (password='a b\\'c'), "
            "or a postgresql://user:password@host/db URL with special characters percent-encoded.")
    try:
        return psycopg.connect(dsn)
    except psycopg.Error as exc:
        raise MimiclabError(f"cannot connect to PostgreSQL at {redact(dsn)}: {_error_text(exc, dsn)}") from None


def publish_postgres(dsn: str, tables: Iterable[tuple[TableRef, list[tuple[str, str]]]],
                     progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Load each (table, [(column, duckdb type)]) from its Parquet file; return rows per qualified name."""
    psycopg = _psycopg()
    by_schema: dict[str, list[tuple[TableRef, list[tuple[str, str]]]]] = {}
    for ref, cols in tables:
        by_schema.setdefault(ref.db_schema, []).append((ref, cols))
    counts: dict[str, int] = {}
    with connect(dsn) as con:
        for schema, items in by_schema.items():
            staging = schema + _STAGING
            try:
                with con.transaction():
                    con.execute(f"DROP SCHEMA IF EXISTS {_ident(staging)} CASCADE")
                    con.execute(f"CREATE SCHEMA {_ident(staging)}")
                    for ref, cols in items:
                        counts[ref.qualified] = _load_table(con, staging, ref, cols)
                        if progress:
                            progress(ref.qualified, counts[ref.qualified])
                with con.transaction():  # the swap: old schema out, new one in, atomically
                    con.execute(f"DROP SCHEMA IF EXISTS {_ident(schema + _OLD)} CASCADE")
                    if con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone():
                        con.execute(f"ALTER SCHEMA {_ident(schema)} RENAME TO {_ident(schema + _OLD)}")
                    con.execute(f"ALTER SCHEMA {_ident(staging)} RENAME TO {_ident(schema)}")
                    con.execute(f"DROP SCHEMA IF EXISTS {_ident(schema + _OLD)} CASCADE")
            except psycopg.Error as exc:
                raise MimiclabError(f"loading schema {schema} into PostgreSQL failed: {_error_text(exc, dsn)}; "
                                    f"the previous tables are unchanged") from None
    return counts


def _load_table(con, schema: str, ref: TableRef, cols: list[tuple[str, str]]) -> int:
    ddl = ", ".join(f"{_ident(c)} {PG_TYPES[t.split('(')[0].upper()]}" for c, t in cols)
    target = f"{_ident(schema)}.{_ident(ref.name)}"
    con.execute(f"CREATE TABLE {target} ({ddl})")
    names = [c for c, _ in cols]
    rows = 0
    pf = pq.ParquetFile(ref.parquet)
    copy_sql = f"COPY {target} ({', '.join(_ident(c) for c in names)}) FROM STDIN (FORMAT csv, NULL '\\N')"
    with con.cursor().copy(copy_sql) as copy:
        for batch in pf.iter_batches(batch_size=65_536, columns=names):
            buf = io.BytesIO()
            # "\N" marks NULL so that an empty string stays an empty string
            opts = pacsv.WriteOptions(include_header=False, null_string="\\N", quoting_style="needed")
            pacsv.write_csv(pa.Table.from_batches([batch]), buf, opts)
            copy.write(buf.getvalue())
            rows += batch.num_rows
    return rows


class PostgresStore(Store):
    backend = "postgres"
    dialect = "postgres"

    def __init__(self, dsn: str, *, read_only: bool = True, max_seconds: float | None = None):
        self._dsn = _redact.Secret(dsn, redact(dsn))  # repr, vars() and tracebacks show the masked form
        self._con = connect(dsn)
        self._con.autocommit = True
        if read_only:
            self._con.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        if max_seconds:
            self._con.execute(f"SET statement_timeout = {int(max_seconds * 1000)}")

    def arrow(self, query: str, params: Sequence[Any] | dict | None = None) -> pa.Table:
        psycopg = _psycopg()
        try:
            cur = self._con.execute(query, params)
        except psycopg.Error as exc:
            raise QueryError(_error_text(exc, self._dsn.reveal()).splitlines()[0]) from None
        if cur.description is None:
            return pa.table({})
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        # from_arrays keeps duplicate column names (SELECT count(a), count(b) names both "count")
        return pa.Table.from_arrays([pa.array([r[i] for r in rows]) for i in range(len(names))], names=names)

    def columns(self, qualified: str) -> list[tuple[str, str]]:
        schema, _, name = qualified.rpartition(".")
        t = self.arrow("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                       "AND table_name = %s ORDER BY ordinal_position", [schema or "public", name])
        return list(zip(t.column("column_name").to_pylist(), t.column("data_type").to_pylist(), strict=True))

    @property
    def dsn(self) -> str:
        """The connection string with its password masked (the real one is not kept in a readable attribute)."""
        return str(self._dsn)

    def __repr__(self) -> str:
        return f"PostgresStore({self.dsn!r})"

    def close(self) -> None:
        self._con.close()
