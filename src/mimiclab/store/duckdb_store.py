"""Embedded DuckDB over Parquet: the default store.

The database file holds only views (`mimiciv_hosp.admissions` -> read_parquet(...)), so it is tiny, is
rebuilt in a second, and can be swapped atomically: a crashed build never leaves a half-built database.
A *sandboxed* connection (web SQL endpoint) may read only the build's Parquet folder and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mimiclab.errors import QueryError
from mimiclab.store import Store, TableRef


def _lit(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


STORAGE = ("native", "views")


def write_database(path: Path, tables: Iterable[TableRef], extra_schemas: Iterable[str] = (),
                   storage: str = "native", memory_limit: str = "1500MB") -> None:
    """Create the database at a temporary name, then rename it over `path` (atomic on POSIX).

    `native` copies each Parquet file into a DuckDB table: per-patient lookups and joins run several times
    faster than on Parquet (DuckDB skips within its own row groups, not within Parquet's), at the cost of
    a second copy on disk. `views` only points at the Parquet files: a tiny file, for low disk space.
    """
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {STORAGE}, not {storage!r}")
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    for p in (tmp, Path(str(tmp) + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    try:
        con = duckdb.connect(str(tmp), config={"memory_limit": memory_limit, "preserve_insertion_order": True})
        con.execute("SET enable_progress_bar=false")
        try:
            made: set[str] = set()
            for schema in extra_schemas:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
            for t in tables:
                if t.db_schema not in made:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(t.db_schema)}")
                    made.add(t.db_schema)
                kind = "TABLE" if storage == "native" else "VIEW"
                con.execute(
                    f"CREATE OR REPLACE {kind} {_ident(t.db_schema)}.{_ident(t.name)} AS "
                    f"SELECT * FROM read_parquet({_lit(t.parquet)})"
                )
                if t.unqualified:
                    con.execute(
                        f"CREATE OR REPLACE VIEW main.{_ident(t.name)} AS "
                        f"SELECT * FROM {_ident(t.db_schema)}.{_ident(t.name)}"
                    )
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    finally:
        for p in (tmp, Path(str(tmp) + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


class DuckDBStore(Store):
    backend = "duckdb"
    dialect = "duckdb"

    def __init__(self, path: Path, *, sandbox_dir: Path | None = None, max_seconds: float | None = None,
                 threads: int | None = None, memory_limit: str | None = None):
        """Open read-only. With `sandbox_dir`, file access is limited to that folder and settings are locked."""
        self.path = Path(path)
        self.max_seconds = max_seconds
        config: dict[str, Any] = {"access_mode": "READ_ONLY"}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        try:
            if sandbox_dir is None:
                self._con = duckdb.connect(str(self.path), read_only=True, config=config)
            else:
                # A private in-memory instance with the file attached: DuckDB shares one instance per file
                # within a process, so locking settings on that shared instance would also sandbox every
                # other (unsandboxed) connection to the same build, and a second sandbox could not open.
                config.pop("access_mode")
                self._con = duckdb.connect(":memory:", config=config)
                self._con.execute(f"ATTACH {_lit(self.path)} AS {_ident(self.path.stem)} (READ_ONLY)")
                self._con.execute(f"USE {_ident(self.path.stem)}")
                self._con.execute("DETACH memory")
        except duckdb.Error as exc:
            raise QueryError(f"cannot open the database {self.path}: {exc}") from None
        # Parquet footers are read once per file instead of once per query: per-patient lookups touch
        # dozens of files and would otherwise spend most of their time re-reading metadata.
        self._con.execute("SET parquet_metadata_cache=true")
        if sandbox_dir is not None:
            self._con.execute(f"SET allowed_directories=[{_lit(str(Path(sandbox_dir).resolve()) + os.sep)}]")
            self._con.execute("SET enable_external_access=false")
            self._con.execute("SET autoinstall_known_extensions=false")
            self._con.execute("SET autoload_known_extensions=false")
            self._con.execute("SET lock_configuration=true")
        self._local = threading.local()

    def _cursor(self):
        """One cursor per thread: DuckDB connections are not shared across threads."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._con.cursor()
        return cur

    @property
    def connection(self):
        """This thread's DuckDB connection, for relational-API use (lazy relations, .pl(), .arrow())."""
        return self._cursor()

    def arrow(self, query: str, params: Sequence[Any] | dict | None = None) -> pa.Table:
        cur = self._cursor()
        timer = None
        if self.max_seconds:
            timer = threading.Timer(self.max_seconds, cur.interrupt)
            timer.start()
        try:
            rel = cur.sql(query, params=params) if params is not None else cur.sql(query)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.InterruptException:
            raise QueryError(f"query cancelled after {self.max_seconds:g} s time limit") from None
        except duckdb.Error as exc:
            raise QueryError(str(exc).split("\n\n")[0]) from None
        finally:
            if timer is not None:
                timer.cancel()

    def columns(self, qualified: str) -> list[tuple[str, str]]:
        schema, _, name = qualified.rpartition(".")
        rows = self._cursor().execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema or "main", name],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()
