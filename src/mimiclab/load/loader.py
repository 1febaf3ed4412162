"""Typed load of one csv(.gz) into one Parquet file (and a DuckDB table), streaming, memory bounded.

The csv is read with the catalog's types (no sniffing, so a bad value is an error, not a silently widened
column): by Arrow on every core when it reads the file exactly as DuckDB would (`arrowcsv`), else by DuckDB.
Row groups stream into Parquet, so memory stays bounded whatever the file size, and no pandas is involved.
The output is written to a temporary name and renamed only once complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import duckdb

from mimiclab.catalog import Table
from mimiclab.errors import BuildError
from mimiclab.load import arrowcsv
from mimiclab.load.source import SourceFile
from mimiclab.sqltext import exact_path
from mimiclab.sqltext import ident as quote_ident
from mimiclab.sqltext import lit as sql_literal
from mimiclab.store.duckdb_store import insert_native, no_progress_bar

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION v2"
# DuckDB's CSV buffer (default 32 MiB). 8 MiB measured 10% faster on a 20M-row chartevents.csv.gz with 2
# threads (smaller buffers keep both threads parsing), and is still 4x DuckDB's 2 MiB maximum line size.
CSV_BUFFER_BYTES = 8 << 20
MIN_ROW_GROUP, MAX_ROW_GROUP = 16_384, 122_880


def row_group_size(estimated_rows: int) -> int:
    """Rows per Parquet row group: about 64 groups per table, within [16k, 123k], a multiple of 2048.

    A per-patient lookup decodes every row group whose subject_id range matches, so smaller groups are
    cheaper to decode; but DuckDB pays a fixed cost per row group on every scan, so thousands of them are
    slower. 64 groups per table measured best for ds[i] and timelines on a 10,000-patient build.
    """
    rg = -(-max(estimated_rows, 1) // 64)
    rg = -(-rg // 2048) * 2048
    return max(MIN_ROW_GROUP, min(MAX_ROW_GROUP, rg))


def check_exact_path(con, path: str | os.PathLike) -> None:
    """Refuse to read anything but the named file: the manifest records that file's sha256."""
    got = [r[0] for r in con.execute("SELECT file FROM glob(?)", [exact_path(path)]).fetchall()]
    if got != [str(path)]:
        raise BuildError(f"{path}: DuckDB would read {', '.join(got) or 'no file'} for this path; "
                         f"rename the folder so its path has no glob characters ([, *, ?)")


def columns_struct(table: Table, version: str) -> str:
    return "{" + ", ".join(f"{sql_literal(c.name)}: {sql_literal(c.type)}" for c in table.columns_for(version)) + "}"


def columns_ddl(table: Table, version: str) -> str:
    return ", ".join(f"{quote_ident(c.name)} {c.type}" for c in table.columns_for(version))


def read_csv_sql(src: SourceFile, table: Table, version: str) -> str:
    """read_csv over the source with the catalog's names and types, as PostgreSQL's COPY CSV would read it.

    Compression is named, not detected: DuckDB cuts the path at a `?` when it looks for the extension.
    """
    compression = "'gzip'" if src.compressed else "'none'"
    return (
        f"read_csv({sql_literal(exact_path(src.path))}, compression={compression}, header=true, auto_detect=false, "
        f"delim=',', quote='\"', "
        f"escape='\"', nullstr='', allow_quoted_nulls=false, strict_mode=true, "
        f"parallel=true, buffer_size={CSV_BUFFER_BYTES}, columns={columns_struct(table, version)})"
    )


def connect(threads: int | None = None, memory_limit: str = "1500MB", temp_dir: Path | None = None):
    con = duckdb.connect(config={"threads": threads or os.cpu_count() or 2, "memory_limit": memory_limit,
                                 "preserve_insertion_order": True})
    no_progress_bar(con)  # a plain SET raises in Jupyter without ipywidgets
    if temp_dir is not None:
        con.execute(f"SET temp_directory={sql_literal(temp_dir)}")
    return con


def load_csv_to_parquet(con, src: SourceFile, table: Table, version: str, out: Path, into: str | None = None,
                        progress: arrowcsv.Progress | None = None, stop: threading.Event | None = None,
                        turn: threading.Lock | None = None, lines_out: Path | None = None) -> int:
    """Write `out` atomically; return the number of data rows. BuildError names file, line and column.

    With `lines_out`, a patient table is stored in patient-sorted windows and, when that moved rows, its
    row map is written to `lines_out` (arrowcsv.ParquetOut); afterwards `lines_out` exists exactly when
    `out`'s rows are not in file order.

    The csv is parsed once, by Arrow on every core (`arrowcsv`), into the Parquet file; with `into` (a
    table of `con`'s database) DuckDB then checks the primary key on that file and copies it into its own
    table in one transaction: a failure leaves the table as it was. A file Arrow cannot read exactly as
    DuckDB would goes through DuckDB's reader instead (`_load_with_duckdb`), whose errors name the line.
    `turn`, shared by tables loading at once, lets one of them at a time into DuckDB (see `duckdb_turn`).
    """
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    lines_tmp = lines_out.with_name(lines_out.name + f".tmp-{os.getpid()}") if lines_out is not None else None
    if lines_out is not None:
        lines_out.unlink(missing_ok=True)
    estimated = estimate_rows(src)
    rg = row_group_size(estimated)
    try:
        try:
            if into is None:
                rows = arrowcsv.csv_to_parquet(src, table, version, tmp, rg, progress=progress, stop=stop,
                                               lines=lines_tmp, rows_hint=estimated)
                with duckdb_turn(turn, stop):
                    check_primary_key(con, f"read_parquet({sql_literal(exact_path(tmp))})", src, table)
            else:
                # Then DuckDB reads the Parquet file in parallel: measured cheaper than handing it the parsed
                # rows as a stream (one thread, 2.4 against 2.0 CPU-seconds for 7.2M chartevents rows).
                # A typed CREATE then INSERT: the catalog's types whatever the file says, and 8% less CPU than
                # CREATE TABLE AS (5.9 against 6.4 s for 20.7M chartevents rows).
                rows = arrowcsv.csv_to_parquet(src, table, version, tmp, rg, progress=progress, stop=stop,
                                               lines=lines_tmp, rows_hint=estimated)
                with duckdb_turn(turn, stop):
                    _insert_checked(con, tmp, src, table, version, into,
                                    lines_tmp if lines_tmp is not None and lines_tmp.exists() else None)
        except arrowcsv.NotFast:
            tmp.unlink(missing_ok=True)
            if lines_tmp is not None:
                lines_tmp.unlink(missing_ok=True)
            with duckdb_turn(turn, stop):
                rows = _load_with_duckdb(con, src, table, version, tmp, rg, into)  # file order: no row map
        if lines_tmp is not None and lines_out is not None and lines_tmp.exists():
            os.replace(lines_tmp, lines_out)
        os.replace(tmp, out)
    except duckdb.Error as exc:
        raise BuildError(describe_csv_error(src, table, exc)) from None
    finally:
        for p in (tmp, lines_tmp):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    return rows


def reuse_parquet(con, path: Path, into: str | None, turn: threading.Lock | None = None,
                  stop: threading.Event | None = None, lines: Path | None = None) -> int:
    """A finished Parquet file of this table (same source sha256, same schema; `lines`: its row map, if
    any): its rows, copied `into` the database if given. Its key was checked before it got its final name."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    if into is not None:
        with duckdb_turn(turn, stop):
            def fill() -> None:
                con.execute(f"CREATE OR REPLACE TABLE {into} AS SELECT * FROM read_parquet({sql_literal(exact_path(path))}) LIMIT 0")
                insert_native(con, into, path, lines)

            _in_transaction(con, fill, lambda: None)
    return rows


@contextlib.contextmanager
def duckdb_turn(turn: threading.Lock | None, stop: threading.Event | None = None):
    """Hold `turn` for a DuckDB bulk step (insert, key check, DuckDB's own csv reader).

    DuckDB runs each such step on every core already, so two at once go no faster, and each holds memory of
    its own beside the buffer pool (the full-scale build ran chartevents' and labevents' inserts together at
    its 2.08 GB peak). Arrow keeps parsing the next table meanwhile. A waiting load still notices `stop`
    (Ctrl-C) within 0.2 s.
    """
    if turn is None:
        yield
        return
    while not turn.acquire(timeout=0.2):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
    try:
        yield
    finally:
        turn.release()


def _in_transaction(con, work: str | Callable[[], None], then) -> None:
    """`work` (SQL, or a function running statements) and `then` in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        if callable(work):
            work()
        else:
            con.execute(work)
        then()
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _insert_checked(con, parquet: Path, src: SourceFile, table: Table, version: str, into: str,
                    lines: Path | None = None) -> None:
    """The key check on the finished Parquet file, then its rows into `into` in one transaction: a failure
    leaves the table as it was. The check runs before the transaction, not inside it: the transaction's
    uncommitted rows stay in DuckDB's memory, and beside them the check's grouping ran out of the build's
    640 MB (15.8M labevents rows in PhysioNet's order, keys scattered, in a 1 GB database). A file with a
    row map (`lines`) is sorted whole by patient on the way in (store.duckdb_store.insert_native)."""
    check_primary_key(con, f"read_parquet({sql_literal(exact_path(parquet))})", src, table)
    def fill() -> None:
        con.execute(f"CREATE OR REPLACE TABLE {into} ({columns_ddl(table, version)})")
        insert_native(con, into, parquet, lines)

    _in_transaction(con, fill, lambda: None)


def _load_with_duckdb(con, src: SourceFile, table: Table, version: str, tmp: Path, rg: int,
                      into: str | None) -> int:
    """DuckDB's own csv reader: the reference semantics, and the error that names line, column and value.
    It writes the Parquet file; a native build then copies that file into its table (`_insert_checked`)."""
    check_exact_path(con, src.path)
    row = con.execute(f"COPY (SELECT * FROM {read_csv_sql(src, table, version)}) TO {sql_literal(tmp)} "
                      f"({PARQUET_OPTIONS}, ROW_GROUP_SIZE {rg})").fetchone()
    if into is None:
        check_primary_key(con, f"read_parquet({sql_literal(exact_path(tmp))})", src, table)
    else:
        _insert_checked(con, tmp, src, table, version, into)
    return int(row[0]) if row else 0


def check_primary_key(con, relation: str, src: SourceFile, table: Table) -> None:
    """BuildError when the catalog's primary key repeats in `relation`: one GROUP BY over the key columns.

    A repeated key makes every join on it count rows twice (a cohort then lists a patient twice), so the
    table is refused rather than loaded with a warning. A GROUP BY, not count(DISTINCT): DuckDB spills a
    grouping to disk under its memory limit, while a 60M-row count(DISTINCT) ran out of the build's 1 GB.
    Several columns are grouped by their 64-bit hash (cheaper than the tuple) and, only if that finds a
    repeat (a duplicate, or a hash collision), an exact GROUP BY decides. Rows whose single-column key is
    NULL are not counted. Measured: 60M keys in 13-17 s on 2 busy cores, within the 1 GB limit.
    """
    if not table.primary_key:
        return
    cols = [quote_ident(c) for c in table.primary_key]
    if len(cols) == 1:
        probe = (f"SELECT count(*) FROM (SELECT {cols[0]} FROM {relation} WHERE {cols[0]} IS NOT NULL "
                 f"GROUP BY 1 HAVING count(*) > 1)")
    else:
        probe = f"SELECT count(*) FROM (SELECT hash({', '.join(cols)}) FROM {relation} GROUP BY 1 HAVING count(*) > 1)"
    (extra,) = con.execute(probe).fetchone()
    if not extra:
        return
    # rare: which key values repeat (exactly), and the most repeated one as an example
    keys = ", ".join(cols)
    where = f"{cols[0]} IS NOT NULL" if len(cols) == 1 else "true"
    groups, rows, example, times = con.execute(
        f"SELECT count(*), sum(n), arg_max(k, n), max(n) FROM ("
        f"SELECT struct_pack({keys}) AS k, count(*) AS n FROM {relation} WHERE {where} "
        f"GROUP BY {keys} HAVING count(*) > 1)").fetchone()
    if not groups:
        return  # only a hash collision
    shown = ", ".join(f"{k}={v}" for k, v in example.items())
    raise BuildError(
        f"{src.path}: primary key ({', '.join(table.primary_key)}) is not unique: {rows:,} rows share "
        f"{groups:,} key value{'s' if groups != 1 else ''} (e.g. {shown} appears {times:,} times). "
        f"Not loaded: a repeated key makes joins count rows twice. Is the file a concatenation or a "
        f"re-export? [table {table.module}/{table.name}]")


def estimate_rows(src: SourceFile, sample: int = 1 << 18) -> int:
    """Rows in the file, estimated from the newlines in its first 256 KiB (compressed bytes for .gz)."""
    try:
        with open(src.path, "rb") as fh:
            head = fh.read(sample)
        if src.compressed:
            d = zlib.decompressobj(wbits=31)
            lines = d.decompress(head).count(b"\n")
        else:
            lines = head.count(b"\n")
    except (OSError, zlib.error):
        return 0  # the load itself will report what is wrong with the file
    return int(lines * src.size / max(len(head), 1))


def write_empty_parquet(con, table: Table, version: str, out: Path) -> None:
    """A typed, zero-row Parquet file, so SQL that mentions a table that is not loaded still runs."""
    cols = ", ".join(f"CAST(NULL AS {c.type}) AS {quote_ident(c.name)}" for c in table.columns_for(version))
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    try:
        con.execute(f"COPY (SELECT {cols} WHERE false) TO {sql_literal(tmp)} ({PARQUET_OPTIONS})")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_COLUMN = re.compile(r'converting column "([^"]+)"')
_VALUE = re.compile(r'Could not convert string "([^"]*)" to \'?([A-Z0-9_]+)')
_ORIG = re.compile(r"Original Line: (.*)")


def describe_csv_error(src: SourceFile, table: Table, exc: Exception) -> str:
    """Turn DuckDB's long CSV error into one actionable line: file, line, column, value, expected type."""
    text = str(exc)
    where = str(src.path)
    if m := _LINE.search(text):
        where += f", line {m.group(1)}"
    if m := _COLUMN.search(text):
        where += f", column {m.group(1)}"
    if m := _VALUE.search(text):
        what = f"value {m.group(1)!r} is not a valid {m.group(2)}"
    elif "GZIP" in text.upper() or "gzip" in text:
        what = "the gzip stream is corrupt or truncated (re-download the file)"
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        what = first
        if m := _ORIG.search(text):
            what += f" (line: {m.group(1)[:120]})"
    return f"{where}: {what} [table {table.module}/{table.name}]"
