"""The store: where built tables live and how SQL reaches them.

One small interface (`Store`) so that the layers above (API, cohorts, web) never care whether the data
sits in embedded DuckDB over Parquet (default), PostgreSQL, or PhysioNet's BigQuery. Only DuckDB is
implemented; a new backend implements `Store` and a `publish` step for build output.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class TableRef:
    """A table as the database exposes it, with the Parquet file that backs it."""

    db_schema: str
    name: str
    parquet: str  # absolute path
    unqualified: bool = False  # also reachable without schema (OMOP: `FROM person`)

    @property
    def qualified(self) -> str:
        return f"{self.db_schema}.{self.name}"


class Store(ABC):
    """A read connection to one built dataset."""

    backend: str = "abstract"
    dialect: str = "duckdb"  # sqlglot dialect name of the SQL this store runs

    @abstractmethod
    def arrow(self, query: str, params: Sequence[Any] | dict | None = None) -> pa.Table:
        """Run a query, return an Arrow table (the common currency of the layers above)."""

    def df(self, query: str, params: Sequence[Any] | dict | None = None):
        return self.arrow(query, params).to_pandas()

    def scalar(self, query: str, params: Sequence[Any] | dict | None = None) -> Any:
        t = self.arrow(query, params)
        return t.column(0)[0].as_py() if t.num_rows else None

    @contextlib.contextmanager
    def stream(self, query: str, params: Sequence[Any] | dict | None = None,
               batch_rows: int = 8192) -> Iterator[pa.RecordBatchReader]:
        """Record batches of a query. Stores that can stream from the database override this."""
        t = self.arrow(query, params)
        yield pa.RecordBatchReader.from_batches(t.schema, t.to_batches(batch_rows))

    def capped(self, query: str, max_rows: int, params: Sequence[Any] | dict | None = None,
               max_bytes: int | None = None) -> tuple[pa.Table, bool, float]:
        """(first rows, whether there were more, seconds): reads only as far as `max_rows` rows and, if given,
        about `max_bytes` of Arrow data (a few huge values must not fill memory before the row cap)."""
        t0 = time.perf_counter()
        with self.stream(query, params, batch_rows=64 if max_bytes else 2048) as reader:
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
