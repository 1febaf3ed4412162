"""Embedded DuckDB over Parquet: the default store.

The database file holds DuckDB tables (default) or views over the build's Parquet files
(`mimiciv_hosp.admissions` -> read_parquet(...)); either way it is written under a temporary name and
swapped in atomically, so a crashed build never leaves a half-built database.
A *sandboxed* connection (web SQL endpoint) may read only the build's Parquet folder and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mimiclab import arrowbuckets
from mimiclab.errors import QueryError
from mimiclab.sqltext import exact_path
from mimiclab.sqltext import ident as _ident
from mimiclab.sqltext import lit as _lit
from mimiclab.store import ROW_MAP_SCHEMA, Capabilities, Store, TableRef, row_map_key, row_map_table
from mimiclab.store import work as _work

STORAGE = ("native", "views")

# A forked child (DataLoader workers, multiprocessing) inherits the parent's objects but not its threads: if
# the child's garbage collector finalized an inherited DuckDB connection or Arrow buffer caught in a reference
# cycle, it would run C++ destructors for threads that do not exist there (seen: a segfault in the child's
# first gc pass). Inherited objects are frozen out of the child's collector instead; they are the parent's.
if hasattr(os, "register_at_fork"):
    import gc as _gc

    os.register_at_fork(after_in_child=_gc.freeze)


def no_progress_bar(con) -> None:
    """Turn off DuckDB's own progress bar where it is on (plain Python: a text bar on the terminal, which
    would garble the CLI's rich progress). In a Jupyter kernel it is off already, and any SET of it raises
    there unless ipywidgets is installed (DuckDB checks for its widget first), so it is left alone."""
    if con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]:
        con.execute("SET enable_progress_bar=false")


def insert_native(con: duckdb.DuckDBPyConnection, into: str, parquet: str | os.PathLike,
                  lines: str | os.PathLike | None = None) -> None:
    """INSERT INTO `into` (a table with the file's columns) the rows of its Parquet file, in patient order.

    A file with a row map (`lines`) came from a csv not in patient order, as PhysioNet's are. The build
    writes such a file sorted whole by patient (load.arrowcsv.ParquetOut), and it is copied as it is. A
    file written by an earlier mimiclab is sorted only window by window: a window holds rows of nearly
    every patient, so a lookup would visit a row group per window (hundreds at full scale). Such a file is
    sorted whole on the way in, by patient and then by its place in the file, so each patient's rows keep
    their order and stay paired with their map entries (api/seed.py pairs per patient); a row map is
    sorted the same way (`parquet` = `lines`). The sort goes through patient-range buckets on disk
    (arrowbuckets.SortedRanges): one ORDER BY over labevents at full scale had spilled 37 GB, unfinished.
    """
    path = Path(parquet)
    key = row_map_key(str(lines)) if lines is not None else None
    if key is None or _in_order(path, key):
        con.execute(f"INSERT INTO {into} SELECT * FROM read_parquet({_lit(exact_path(path))})")
        return
    ranges, schema = _patient_ranges(con, path, key)
    sorted_pieces = ranges.sorted()
    failed: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for piece in sorted_pieces:
                yield from piece.to_batches()
        except BaseException as exc:  # DuckDB would report it as a bad stream: keep it to raise as it is
            failed.append(exc)
            raise

    try:
        view = f"mimiclab_sorted_{os.getpid()}_{threading.get_ident()}"
        con.register(view, pa.RecordBatchReader.from_batches(schema, batches()))
        try:
            con.execute(f"INSERT INTO {into} SELECT * FROM {_ident(view)}")
        except duckdb.Error:
            if failed:  # e.g. a full disk while sorting: that error, not a stream error naming no file
                raise failed[0] from None
            raise
        finally:
            con.unregister(view)
    finally:
        sorted_pieces.close()  # a failed insert leaves it suspended: its thread and files go now
        ranges.discard()


def _patient_ranges(con: duckdb.DuckDBPyConnection, path: Path, key: str) -> tuple[arrowbuckets.SortedRanges, pa.Schema]:
    """The Parquet file's rows in patient-range buckets beside it (`*.tmp-<pid>`, so a killed build's are
    removed by the next: load._remove_stale_temps), ranges from DuckDB's approximate quantiles of `key`.
    The file is read a batch at a time: a pre-buffered reader kept every row group read (2.7 GB)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, pre_buffer=False)
    meta = pf.metadata
    width = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) // max(meta.num_rows, 1)
    count, bucket_rows = arrowbuckets.bucket_plan(meta.num_rows, width)
    bounds = np.array([])
    if count > 1:
        qs = ", ".join(str(i / count) for i in range(1, count))
        (found,), = con.execute(f"SELECT approx_quantile({_ident(key)}, [{qs}]) FROM read_parquet({_lit(exact_path(path))})").fetchall()
        bounds = np.unique(np.array([b for b in found or [] if b is not None]))
    ranges = arrowbuckets.SortedRanges(lambda k: path.with_name(f"{path.name}.range{k:05d}.tmp-{os.getpid()}"),
                                       key, bounds, bucket_rows)
    try:
        for batch in pf.iter_batches(batch_size=1 << 18):
            ranges.append(batch)
    except BaseException:
        ranges.discard()
        raise
    return ranges, pf.schema_arrow


def _in_order(parquet: str | os.PathLike, key: str) -> bool:
    """Whether the file's rows are in `key` order, rows without a key last, from its footer: every row
    group sorted by `key` (true of what ParquetOut writes: windows of whole row groups, or the whole file),
    their ranges ascending, and once a group holds a NULL, every later group only NULLs."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(parquet)
    names = meta.schema.to_arrow_schema().names
    if key not in names:
        return False
    col, last, nulls = names.index(key), None, False
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(col).statistics
        if stats is None or not stats.has_null_count:
            return False
        if nulls:  # after the first NULL: nothing but NULLs
            if stats.null_count != group.num_rows:
                return False
            continue
        if stats.null_count == group.num_rows:
            nulls = True
            continue
        if not stats.has_min_max or (last is not None and stats.min < last):
            return False
        last, nulls = stats.max, stats.null_count > 0
    return True


class DatabaseWriter:
    """The next database file of a build, written under a temporary name; `commit()` renames it into place.

    `native` storage holds DuckDB tables (per-patient lookups and joins run several times faster than on
    Parquet: DuckDB skips within its own row groups, not within Parquet's), at the cost of a second copy
    on disk; `views` only points at the Parquet files. A native build starts from a copy of the previous
    database (`base`), so reloading one table rewrites that table only, not every other table from its
    Parquet file. Until `commit()`, the previous database is untouched and readers keep using it.
    """

    def __init__(self, path: Path, storage: str = "native", base: Path | None = None,
                 memory_limit: str = "1GB", threads: int | None = None, temp_dir: Path | None = None):
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}, not {storage!r}")
        self.path, self.storage = Path(path), storage
        self.tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}")
        # The buffer pool fills with the table being loaded until it hits this limit: the build's peak memory
        # levels off here (about 1.2 GB RSS) instead of growing with the file (measured to 60M rows).
        self._config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": memory_limit, "preserve_insertion_order": True,
                        "threads": threads or os.cpu_count() or 2}
        self._temp_dir = temp_dir
        self._remove_tmp()
        self.con = None
        self.from_base = False
        if base is not None and storage == "native" and Path(base).exists():
            try:
                copy_file(Path(base), self.tmp)
                self.con = self._connect()
                self.from_base = True
            except (OSError, duckdb.Error):  # unreadable or from another DuckDB version: start afresh
                self.abort()
        if self.con is None:
            self.con = self._connect()
        self._schemas: set[str] = set()

    def _connect(self):
        con = duckdb.connect(str(self.tmp), config=self._config)
        no_progress_bar(con)
        if self._temp_dir is not None:
            con.execute(f"SET temp_directory={_lit(self._temp_dir)}")
        return con

    @property
    def _open(self) -> duckdb.DuckDBPyConnection:
        """The connection of the database being written (an error after commit or abort)."""
        if self.con is None:
            raise RuntimeError("this database writer is closed (committed or aborted)")
        return self.con

    def _schema(self, db_schema: str) -> None:
        if db_schema not in self._schemas:
            self._open.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(db_schema)}")
            self._schemas.add(db_schema)

    def table_name(self, db_schema: str, name: str) -> str:
        """Quoted `schema.table` to load into, with its schema created."""
        self._schema(db_schema)
        return f"{_ident(db_schema)}.{_ident(name)}"

    def commit(self, tables: Iterable[TableRef], current: AbstractSet[str] = frozenset(),
               extra_schemas: Iterable[str] = ()) -> None:
        """Make the database hold exactly `tables`, then rename it over `path` (atomic on POSIX).

        `current` names (`schema.table`) already hold their data in this file (loaded by this build or
        kept from the base); every other native table is copied from its Parquet file.
        """
        con = self._open
        try:
            for schema in extra_schemas:
                self._schema(schema)
            want: set[tuple[str, str]] = set()
            have = {(r[0], r[1]) for r in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
            for t in tables:
                target = self.table_name(t.db_schema, t.name)
                if t.lines is not None and self.storage == "native":
                    row_map = (ROW_MAP_SCHEMA, row_map_table(t.lines))
                    want.add(row_map)
                    if row_map not in have:  # named by content: one of that name is this map already
                        self._schema(ROW_MAP_SCHEMA)
                        name = f"{_ident(row_map[0])}.{_ident(row_map[1])}"
                        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet({_lit(exact_path(t.lines))}) LIMIT 0")
                        insert_native(con, name, t.lines, t.lines)
                want.add((t.db_schema, t.name))
                if self.storage == "views":
                    con.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM read_parquet({_lit(exact_path(t.parquet))})")
                elif t.qualified not in current:
                    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM read_parquet({_lit(exact_path(t.parquet))}) LIMIT 0")
                    insert_native(con, target, t.parquet, t.lines)
                if t.unqualified:
                    want.add(("main", t.name))
                    con.execute(f"CREATE OR REPLACE VIEW main.{_ident(t.name)} AS SELECT * FROM {target}")
            # a base database may hold tables or views this build no longer has
            rows = con.execute(
                "SELECT schema_name, table_name, 'TABLE' FROM duckdb_tables() WHERE database_name = current_database() "
                "UNION ALL SELECT schema_name, view_name, 'VIEW' FROM duckdb_views() "
                "WHERE database_name = current_database() AND NOT internal").fetchall()
            for schema, name, kind in rows:
                if (schema, name) not in want:
                    con.execute(f"DROP {kind} IF EXISTS {_ident(schema)}.{_ident(name)}")
            con.execute("CHECKPOINT")
            con.close()
            self.con = None
            os.replace(self.tmp, self.path)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close and delete the temporary file; the previous database stays as it was."""
        if self.con is not None:
            with contextlib.suppress(Exception):
                self.con.close()
            self.con = None
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        for p in (self.tmp, Path(str(self.tmp) + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def copy_file(src: Path, dst: Path) -> None:
    """Copy in the kernel (copy_file_range: a reflink on filesystems that share blocks), else by reading."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = os.fstat(fi.fileno()).st_size
        try:
            while left > 0:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), left)
                if n == 0:
                    break
                left -= n
        except (OSError, AttributeError):
            left = -1
    if left != 0:
        shutil.copyfile(src, dst)


def _attach(con, path: Path, linked: Sequence[tuple[str, Path, Sequence[str]]]) -> str:
    """Attach the build's database (read-only, as the default catalog) and the linked builds' to `con`, an
    in-memory instance; the build's catalog name. Before file access may be switched off: ATTACH reads."""
    con.execute(f"ATTACH {_lit(Path(path))} AS {_ident(Path(path).stem)} (READ_ONLY)")
    con.execute(f"USE {_ident(Path(path).stem)}")
    con.execute("DETACH memory")
    for alias, db, _ in linked:
        con.execute(f"ATTACH {_lit(Path(db))} AS {_ident(alias)} (READ_ONLY)")
    return con.execute("SELECT current_database()").fetchone()[0]


# Late materialization (the rows of a sorted LIMIT fetched by rowid after the sort, instead of every column
# of every matching row carried through it) is DuckDB's for LIMITs up to 50 only. A filtered, sorted page of
# 100 labevents rows (the 10% set, 15.8M rows) took 276 ms without it and 112 with it; 500 rows 304 against
# 161; 1,000 rows 301 against 170; unfiltered pages were as fast either way.
LATE_MATERIALIZATION_ROWS = 1000


def _tune(con) -> None:
    """Settings of every read-only instance: Parquet footers read once per file instead of once per query
    (per-patient lookups over views touch dozens of files), and late materialization for sorted pages of
    up to LATE_MATERIALIZATION_ROWS rows. Both are connection settings in DuckDB: GLOBAL, or the cursors
    that run the queries would not have them (a plain SET here reached none of them)."""
    con.execute("SET GLOBAL parquet_metadata_cache=true")
    con.execute(f"SET GLOBAL late_materialization_max_rows={LATE_MATERIALIZATION_ROWS}")


def _identity(path: Path) -> tuple:
    """Which file is at `path` now: a rebuild renames a new one over it (another inode)."""
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _settings(con) -> list[tuple[str, str]]:
    """The instance's settings as its own connection sees them (a user's SET through a store's connection
    changes the global ones); max_temp_directory_size is left out: it changes by itself once spilled to."""
    return con.execute("SELECT name, value FROM duckdb_settings() WHERE name <> 'max_temp_directory_size' "
                       "ORDER BY name").fetchall()


_INHERITED: list = []  # instances' connections from the parent process: never closed in a forked child


def _release(con, tmp: str, owner: int) -> None:
    """Remove the spill folder once no store holds the instance. The connection is not closed: DuckDB
    closes it when the last cursor or relation taken from it goes (`Table.relation`, `store.connection`:
    closing it here broke those while a user still held them). In a forked child, not even dropped."""
    if os.getpid() != owner:  # freeing it would run the parent's C++ destructors for threads not in this process
        _INHERITED.append(con)
    _remove_private_dir(tmp, owner)


class _Instance:
    """One DuckDB instance reading a build (and its linked builds), shared by the unsandboxed stores of this
    process that open the same files with the same settings; each store has a connection of its own.

    DuckDB's memory_limit bounds an instance, not a process: two datasets over one build (the API
    benchmark's MIMICDataset of three hosp tables beside one of chartevents) kept two caches, each filling
    to the cap (10% set in PhysioNet's order, 128 MB cap: 134 MB of blocks in two, 121 MB in one; at full
    scale the second could add up to the whole cap again). Keyed by the files' identity as well, so a
    store opened after a rebuild gets a new instance over the new file (the reason instances are private
    at all: DuckDB's own cache keeps reading the file it first opened), and by process, so a forked child
    opens its own. A SET of a global setting through one store applies to the stores sharing the instance
    (they share it as they share the cache); a store opened after that gets a fresh instance, with the
    settings it asked for. The spill folder goes when the last store holding the instance is closed or
    dropped.
    """

    def __init__(self, path: Path, config: dict[str, Any], linked: Sequence[tuple[str, Path, Sequence[str]]]):
        self.con = duckdb.connect(":memory:", config={k: v for k, v in config.items() if k != "access_mode"})
        self._lock = threading.Lock()
        self.tmp = ""
        try:
            self.own = _attach(self.con, path, linked)
            _tune(self.con)
            # DuckDB spills to `<cwd>/.tmp` by default: rows of the data in whatever folder the notebook runs
            # in. A private folder instead (mkdtemp: mode 0700), removed with the instance.
            self.tmp = tempfile.mkdtemp(prefix="mimiclab-spill-")
            self.con.execute(f"SET temp_directory={_lit(self.tmp)}")
            self.settings = _settings(self.con)
        except BaseException:
            self.con.close()
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.release = weakref.finalize(self, _release, self.con, self.tmp, os.getpid())

    def unchanged(self) -> bool:
        """Still with the settings it was opened with (no SET through a store's connection since)."""
        with self._lock:  # its own connection, asked from any thread that opens a store
            try:
                return _settings(self.con) == self.settings
            except duckdb.Error:
                return False

    @classmethod
    def shared(cls, path: Path, config: dict[str, Any], linked: Sequence[tuple[str, Path, Sequence[str]]]) -> _Instance:
        """The instance for these files and settings: an open one, else a new one (made outside the lock, so
        opening one build never waits for another's ATTACH)."""
        try:
            key = (os.getpid(), _identity(path), tuple(sorted((k, str(v)) for k, v in config.items())),
                   tuple((alias, _identity(Path(db)), tuple(s)) for alias, db, s in linked))
        except OSError:  # a file missing: DuckDB says so when it tries (QueryError naming the database)
            return cls(path, config, linked)
        with _INSTANCES_LOCK:
            found = _INSTANCES.get(key)
        if found is not None and found.unchanged():
            return found
        made = cls(path, config, linked)
        with _INSTANCES_LOCK:
            other = _INSTANCES.get(key)
            if other is not None and other is not found and other.unchanged():
                return other  # another thread made one meanwhile: use it, drop ours
            _INSTANCES[key] = made
        return made


_INSTANCES: weakref.WeakValueDictionary[tuple, _Instance] = weakref.WeakValueDictionary()
_INSTANCES_LOCK = threading.Lock()


def _takes_memory_limit(value: str) -> bool:
    """Whether DuckDB accepts `value` as memory_limit (asked of a throwaway in-memory instance)."""
    try:
        duckdb.connect(config={"memory_limit": value}).close()
        return True
    except duckdb.Error:
        return False


def _remove_private_dir(path: str, owner: int) -> None:
    """Remove a store's spill folder, in the process that made it only: a forked child that exits must not
    take its parent's folder with it."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


class DuckDBStore(Store):
    backend = "duckdb"
    dialect = "duckdb"
    paramstyle = "dollar"
    capabilities = Capabilities(stream=True, time_limit=True, register_frames=True, fulltext=False)

    def __init__(self, path: Path, *, sandbox_dir: Path | Sequence[Path] | None = None,
                 max_seconds: float | None = None, threads: int | None = None, memory_limit: str | None = None,
                 linked: Sequence[tuple[str, Path, Sequence[str]]] = (), schemas: Sequence[str] = ()):
        """Open read-only. With `sandbox_dir` (one folder or several), file access is limited to it and settings
        are locked. `linked`: (alias, database, its schemas) of other builds of the same population, attached
        read-only; with `schemas` (this database's own, in lookup order) they make one workspace where
        `mimiciv_ed.edstays` and `mimiciv_hosp.admissions` resolve side by side (and unqualified names too)."""
        self.path = Path(path)
        self.max_seconds = max_seconds
        config: dict[str, Any] = {"access_mode": "READ_ONLY"}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self.sandboxed = sandbox_dir is not None
        self._instance: _Instance | None = None
        try:
            if sandbox_dir is None:
                self._instance = _Instance.shared(self.path, config, linked)
                self._con = self._instance.con.cursor()  # this store's own: closing it closes its cursors only
                own = self._instance.own
            else:
                # A private in-memory instance with the file attached: DuckDB shares one instance per file
                # within a process, so locking settings on that shared instance would also sandbox every
                # other (unsandboxed) connection to the same build, and a second sandbox could not open.
                config.pop("access_mode")
                self._con = duckdb.connect(":memory:", config=config)
                own = _attach(self._con, self.path, linked)
        except duckdb.Error as exc:
            if memory_limit and not _takes_memory_limit(memory_limit):
                raise QueryError(f"memory limit {memory_limit!r} is not a size DuckDB takes (e.g. 512MB, 4GB; from "
                                 f"memory_limit= or $MIMICLAB_MEMORY_LIMIT): {exc}") from None
            raise QueryError(f"cannot open the database {self.path}: {exc}") from None
        # DuckDB looks up `schema.table` in the catalogs of the search path too: a linked build's schemas
        # resolve by their mimic-code names, and unqualified names (MIMIC-III's `admissions`, as mimic-code's
        # SQL writes them) in every store, not only through the Python API (the workbench's SQL page and
        # `mimiclab sql` had said "Table with name admissions does not exist"). A local setting, so every
        # cursor sets it (see _cursor).
        self.search_path = [f"{own}.{s}" for s in schemas] + [f"{alias}.{s}" for alias, _, db_schemas in linked
                                                               for s in db_schemas]
        if sandbox_dir is not None:
            # Spill to a private folder (mkdtemp: mode 0700), not DuckDB's default `<cwd>/.tmp`, a folder the
            # sandbox always allows and anyone who can write there can read; removed on close or when the
            # store is dropped, never by a forked child.
            self._private_tmp: str | None = tempfile.mkdtemp(prefix="mimiclab-sandbox-")
            self._remove_tmp = weakref.finalize(self, _remove_private_dir, self._private_tmp, os.getpid())
            _tune(self._con)
            self._con.execute(f"SET temp_directory={_lit(self._private_tmp)}")
            dirs = [sandbox_dir] if isinstance(sandbox_dir, (str, os.PathLike)) else list(sandbox_dir)
            allowed = ", ".join(_lit(str(Path(d).resolve()) + os.sep) for d in dirs)
            self._con.execute(f"SET allowed_directories=[{allowed}]")
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
            if self.search_path:
                cur.execute("SET search_path=" + _lit(",".join(self.search_path)))
        return cur

    @property
    def connection(self):
        """This thread's DuckDB connection, for relational-API use (lazy relations, .pl(), .arrow())."""
        return self._cursor()

    def _one_reading_statement(self, cur, query: str) -> None:
        """Sandboxed stores run exactly one SELECT/EXPLAIN per call (DuckDB's own parser decides): nothing
        can be appended after a statement the caller built, whatever a user put inside it."""
        try:
            stmts = cur.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(str(exc).split("\n\n")[0]) from None
        if len(stmts) != 1:
            raise QueryError(f"one statement at a time (found {len(stmts)}).")
        kind = stmts[0].type
        if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN runs what it explains (ANALYZE): check that instead
            m = re.match(r"\s*explain\s+(analy[sz]e\s+)?", query, re.IGNORECASE)
            inner = cur.extract_statements(query[m.end():]) if m else []
            kind = inner[0].type if len(inner) == 1 else None
        if kind != duckdb.StatementType.SELECT:
            name = stmts[0].type.name if kind is not None else "this EXPLAIN"
            raise QueryError(f"{name} statements are not allowed here: this connection is read-only.")

    def _limit(self) -> tuple[float | None, _work.Work | None]:
        """Seconds this query may take: the store's own limit, shortened by the current request's budget."""
        return _work.budget(self.max_seconds)

    @contextlib.contextmanager
    def _guarded(self, cur, query: str):
        """Statement check (sandbox), time limit and cancellation around one query on `cur`."""
        if self.sandboxed:
            self._one_reading_statement(cur, query)
        limit, w = self._limit()
        timer = None
        if limit is not None:
            timer = threading.Timer(max(limit, 0.001), cur.interrupt)
            timer.daemon = True
            timer.start()
        try:
            with (w.interruptible(cur.interrupt) if w is not None else contextlib.nullcontext()):
                try:
                    yield
                except duckdb.InterruptException:
                    raise self._stopped(w, limit) from None
                except (duckdb.Error, OSError, pa.ArrowException) as exc:  # a reader's errors come as Arrow's
                    if "interrupt" in str(exc).lower():
                        raise self._stopped(w, limit) from None
                    raise QueryError(str(exc).split("\n\n")[0].strip()) from None
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _stopped(w: _work.Work | None, limit: float | None) -> QueryError:
        return _work.stopped(w, limit)

    def arrow(self, query: str, params: Sequence[Any] | dict | None = None, *, portable: bool = False) -> pa.Table:
        cur = self._cursor()
        with self._guarded(cur, query):
            rel = cur.sql(query, params=params) if params is not None else cur.sql(query)
            return rel.to_arrow_table() if rel is not None else pa.table({})

    @contextlib.contextmanager
    def stream(self, query: str, params: Sequence[Any] | dict | None = None,
               batch_rows: int = 8192, *, portable: bool = False) -> Iterator[pa.RecordBatchReader]:
        """A reader of the query's record batches as DuckDB produces them (the whole result never sits in
        memory); the time limit and cancellation cover reading them. Leaving the block frees the query."""
        cur = self._cursor()  # this thread's connection (it sees tables registered on it); finish
        # reading before running another query on this thread
        with self._guarded(cur, query):
            rel = cur.sql(query, params=params) if params is not None else cur.sql(query)
            if rel is None:
                yield pa.RecordBatchReader.from_batches(pa.schema([]), [])
            else:
                reader = rel.to_arrow_reader(batch_rows)
                try:
                    yield reader
                finally:
                    with contextlib.suppress(Exception):
                        reader.close()

    def register(self, name: str, table: pa.Table) -> None:
        self._cursor().register(name, table)

    def unregister(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._cursor().unregister(name)

    def columns(self, qualified: str) -> list[tuple[str, str]]:
        schema, _, name = qualified.rpartition(".")
        rows = self._cursor().execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema or "main", name],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def close(self) -> None:
        """Close this store's connections (and what was taken from them); the shared instance's spill folder
        goes once no store holds it, its connection with the last cursor or relation taken from it."""
        with contextlib.suppress(Exception):
            self._con.close()
        self._instance = None
        remove = getattr(self, "_remove_tmp", None)
        if remove is not None:
            remove()
