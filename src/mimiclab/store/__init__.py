"""The store: where built tables live and how SQL reaches them.

One interface (`Store`) so that the layers above (API, cohorts, web) never care whether the data sits in
embedded DuckDB (default), PostgreSQL, or PhysioNet's BigQuery.

SQL is written once: every query mimiclab itself writes is spelled in DuckDB's dialect with `$name` (or `?`)
parameters and run with `portable=True`; the store renders it for its own dialect and parameter style
(sqlglot; cached, so a query is translated once per process). SQL a user typed is run as written
(`portable=False`, the default): on PostgreSQL it is PostgreSQL's SQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class TableRef:
    """A table as the database exposes it, with the Parquet file that backs it."""

    db_schema: str
    name: str
    parquet: str  # absolute path
    unqualified: bool = False  # also reachable without schema (OMOP: `FROM person`)
    lines: str | None = None  # absolute path of the row map when stored in patient-sorted windows

    @property
    def qualified(self) -> str:
        return f"{self.db_schema}.{self.name}"


# Native builds also hold each row map (load.arrowcsv.ParquetOut) as a DuckDB table, named after its file
# (content-addressed, so a table of that name is that map): a patient's lines from it took 10 ms against
# 27 ms from the Parquet file (chartevents, 44M rows), which reads every row group's footer entry.
ROW_MAP_SCHEMA = "mimiclab_rows"


def row_map_table(lines: str) -> str:
    """The row map's table name in ROW_MAP_SCHEMA, from its file's path."""
    return os.path.basename(lines).removesuffix(".parquet")


def row_map_key(lines: str) -> str:
    """The patient column a row map lists (its first column; the second is the line): the column the
    table's rows were sorted by."""
    import pyarrow.parquet as pq

    return pq.read_schema(lines).names[0]


@dataclass(frozen=True)
class Capabilities:
    """What a store can do beyond running a query; the layers above ask instead of checking the backend."""

    stream: bool = True  # stream() yields batches as the database produces them
    time_limit: bool = True  # queries stop at max_seconds / the current Work's deadline, and on cancel
    register_frames: bool = False  # register(name, table): a DataFrame/Arrow table becomes queryable by name
    fulltext: bool = False  # a text index makes word search over notes cheap
    dry_run: bool = False  # the bytes a query would scan are known before it runs (BigQuery)


Params = Sequence[Any] | dict | None


class Store(ABC):
    """A read connection to one dataset (or a workspace of linked ones)."""

    backend: str = "abstract"
    dialect: str = "duckdb"  # sqlglot dialect name of the SQL this store runs
    paramstyle: str = "dollar"  # how parameters are written after rendering: dollar ($name, ?), pyformat, at (@name)
    capabilities: Capabilities = Capabilities()
    max_seconds: float | None = None

    def render(self, query: str) -> str:
        """A query written in DuckDB's spelling, in this store's dialect and parameter style."""
        return render(query, self.dialect)

    @abstractmethod
    def arrow(self, query: str, params: Params = None, *, portable: bool = False) -> pa.Table:
        """Run a query, return an Arrow table (the common currency of the layers above). `portable`: the
        query is mimiclab's own, in DuckDB's spelling, to be rendered for this store."""

    def df(self, query: str, params: Params = None, *, portable: bool = False):
        return self.arrow(query, params, portable=portable).to_pandas()

    def scalar(self, query: str, params: Params = None, *, portable: bool = False) -> Any:
        t = self.arrow(query, params, portable=portable)
        return t.column(0)[0].as_py() if t.num_rows else None

    def register(self, name: str, table: pa.Table) -> None:
        """Make an Arrow table queryable as `name` on this thread's connection (capabilities.register_frames)."""
        raise NotImplementedError(f"the {self.backend} store cannot query a DataFrame directly")

    def unregister(self, name: str) -> None:
        raise NotImplementedError(f"the {self.backend} store cannot query a DataFrame directly")

    @contextlib.contextmanager
    def stream(self, query: str, params: Params = None, batch_rows: int = 8192, *,
               portable: bool = False) -> Iterator[pa.RecordBatchReader]:
        """Record batches of a query. Stores that can stream from the database override this."""
        t = self.arrow(query, params, portable=portable)
        yield pa.RecordBatchReader.from_batches(t.schema, t.to_batches(batch_rows))

    def capped(self, query: str, max_rows: int, params: Params = None,
               max_bytes: int | None = None, *, portable: bool = False) -> tuple[pa.Table, bool, float]:
        """(first rows, whether there were more, seconds): reads only as far as `max_rows` rows and, if given,
        about `max_bytes` of Arrow data (a few huge values must not fill memory before the row cap)."""
        t0 = time.perf_counter()
        with self.stream(query, params, batch_rows=64 if max_bytes else 2048, portable=portable) as reader:
            batches, n, size, more = [], 0, 0, False
            for batch in reader:
                if max_bytes is not None and size + batch.nbytes > max_bytes:
                    # keep the share of this batch that fits (rows of one batch are of similar size), at least one row
                    keep = max(0 if n else 1, batch.num_rows * (max_bytes - size) // max(batch.nbytes, 1))
                    batches.append(batch.slice(0, keep))
                    n += keep
                    more = True
                    break
                batches.append(batch)
                n += batch.num_rows
                size += batch.nbytes
                if n > max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        return table.slice(0, max_rows), more or table.num_rows > max_rows, time.perf_counter() - t0

    @abstractmethod
    def columns(self, qualified: str) -> list[tuple[str, str]]:
        """(name, type) of a table's columns."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_MATERIALIZED = re.compile(r"\bAS\s+MATERIALIZED\s*\(", re.IGNORECASE)


def _no_escape_clause(tree):
    """BigQuery's LIKE has no ESCAPE clause (a syntax error there) and escapes with a backslash already: `x LIKE
    p ESCAPE '\\'` is written as `x LIKE p`, which means the same."""
    import sqlglot

    def drop(node):
        if isinstance(node, sqlglot.exp.Escape) and node.expression.name == "\\":
            return node.this
        return node

    return tree.transform(drop)


@lru_cache(maxsize=4096)
def render(query: str, dialect: str) -> str:
    """`query` (DuckDB spelling, `$name`/`?` parameters) in `dialect`: PostgreSQL gets `%(name)s`/`%s`,
    BigQuery `@name`/`?`. Cached: the layers above send the same few hundred texts over and over."""
    if dialect == "duckdb":
        return query
    import sqlglot

    if dialect == "bigquery":  # no materialization hint in BigQuery; it plans CTEs itself
        query = _MATERIALIZED.sub("AS (", query)
    try:
        trees = sqlglot.parse(query, read="duckdb")
        if dialect == "bigquery":
            trees = [_no_escape_clause(t) for t in trees if t is not None]
        out = [t.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE) for t in trees if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        from mimiclab.errors import QueryError

        raise QueryError(f"this query cannot be written for {dialect}: {str(exc).splitlines()[0]}") from None
    return ";\n".join(out)
