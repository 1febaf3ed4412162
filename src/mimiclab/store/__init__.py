"""The store: where built tables live and how SQL reaches them.

One small interface (`Store`) so that the layers above (API, cohorts, web) never care whether the data
sits in embedded DuckDB over Parquet (default), PostgreSQL, or PhysioNet's BigQuery. Only DuckDB is
implemented; a new backend implements `Store` and a `publish` step for build output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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

    @abstractmethod
    def columns(self, qualified: str) -> list[tuple[str, str]]:
        """(name, type) of a table's columns."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
