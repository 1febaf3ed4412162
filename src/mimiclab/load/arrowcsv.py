"""The fast path of a typed load: csv(.gz) -> Parquet, parsed once by Arrow on every core.

Measured on a 3,000-patient synthetic MIMIC-IV (docs/architecture.md, "Build speed"): DuckDB's csv reader
spends about 13 CPU-seconds on the 20.7M-row chartevents.csv.gz (4 of them in its gzip decoder), and its
Parquet writer 6 more; ISA-L decompresses the same file in 0.9 s, Arrow's csv parser converts it in about
6.5 s and Arrow's Parquet writer encodes it in 2.8 s. So the decompressed stream is cut into blocks at
record boundaries and the blocks are parsed on a thread pool (Arrow and ISA-L release the GIL), in order.

Semantics are DuckDB's (``loader.read_csv_sql``): empty unquoted field = NULL, quoted empty string = "",
catalog types, no sniffing, no skipped blank lines. Anything Arrow does not read exactly that way (a value
it cannot convert, a short row, bad UTF-8) raises ``NotFast``; the caller then loads the file through
DuckDB, which either reads it (DuckDB's rules decide) or names file, line, column and value. So the fast
path can only ever be faster, never more lenient.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from isal import igzip, isal_zlib  # ISA-L: gzip decoding 2-3x faster than zlib, 4x faster than DuckDB's own

from mimiclab import arrowbuckets
from mimiclab.catalog import Table
from mimiclab.load.source import SourceFile

# catalog type -> Arrow type; a type not listed here sends the table down DuckDB's path
ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "SMALLINT": pa.int16(),
    "DOUBLE": pa.float64(), "TIMESTAMP": pa.timestamp("us"), "DATE": pa.date32(), "BOOLEAN": pa.bool_(),
}
ISAL_ERROR = cast(type[Exception], isal_zlib.error)  # bad deflate data; isal's stub calls it an instance
# A record longer than this is taken for a stray quote and DuckDB's reader says where: its buffer_size
# (loader.CSV_BUFFER_BYTES) is the longest line it reads, so a longer record would fail there anyway
MAX_RECORD = 8 << 20
BLOCK = 8 << 20  # decompressed bytes per parse task: large enough to amortize, small enough to keep 2 cores busy
ZSTD_LEVEL = 1  # Parquet compression: level 1 is within 5% of the default's size here, and cheaper

Progress = Callable[[int, int], None]  # (compressed bytes read so far, rows parsed so far)


def _pool() -> pa.MemoryPool:
    """mimalloc: glibc's allocator (Arrow's system pool) kept freed parse buffers in its per-thread arenas,
    so a process holding 110 MB of Arrow data stood at 1.0 GB (emar_detail + chartevents of a 36,000-patient
    set); mimalloc returns them, 0.38 GB, at the same CPU (55 s both; the whole build 1.1 against 1.8 GB)."""
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        return pa.default_memory_pool()


_MEMORY = _pool()


class NotFast(Exception):
    """Arrow cannot read this file with DuckDB's semantics; load it through DuckDB instead."""


class PerProcessPool:
    """A thread pool made on first use and made again in a forked child: a child inherits the parent's
    pool object but not its threads, and work submitted there would wait forever."""

    def __init__(self, workers: int, name: str):
        self.workers, self.name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._lock = None, threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
            return self._pool


# One parse pool for the process, sized to the cores: tables loaded concurrently share it.
_PARSE = PerProcessPool(os.cpu_count() or 2, "mimiclab-csv")


def parse_pool() -> ThreadPoolExecutor:
    return _PARSE.get()


def arrow_schema(table: Table, version: str) -> pa.Schema | None:
    fields = []
    for c in table.columns_for(version):
        t = ARROW_TYPES.get(c.type.upper())
        if t is None:
            return None
        fields.append(pa.field(c.name, t))
    return pa.schema(fields)


def _open(src: SourceFile) -> tuple[io.BufferedIOBase, io.BufferedReader]:
    """(decompressed stream, raw file): the raw file's position is the progress in compressed bytes."""
    raw = open(src.path, "rb")  # noqa: SIM115 - closed by the caller
    if not src.compressed:
        return raw, raw
    return igzip.IGzipFile(fileobj=raw, mode="rb"), raw


def _quotes(buf: bytes | bytearray, start: int = 0) -> int:
    """Quote characters in buf[start:]. Most blocks hold none, which memchr (`find`) tells at memory speed;
    numpy counts the others (bytes.count of one character goes a byte at a time: at full scale it took
    about 70 of the build's thread-seconds)."""
    if buf.find(b'"', start) < 0:
        return 0
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, offset=start) == ord('"')))


def _records(stream: io.BufferedIOBase, block: int | None = None) -> Iterator[bytearray]:
    """The stream without its header line, in blocks that end at a record boundary.

    A newline ends a record only outside quotes. With quotes escaped by doubling (PhysioNet's csv), a
    position is outside quotes exactly when the number of quote characters before it is even, so a block
    is cut at its last newline with an even quote count; multi-line notes stay whole. Files that break
    that rule (a quote inside an unquoted field) are caught by `_check_quotes`, block by block and in the
    header, and go to DuckDB's reader.

    Each block is its own bytearray: the tail of the one before (a partial record) and then the stream's
    bytes read into it, cut by shrinking it. Joining `carry + data` and slicing the result copied every
    block twice (at full scale about 80 of the build's thread-seconds)."""
    block = block or BLOCK  # read when called, not when defined: tests set BLOCK to a few bytes
    carry = b""
    quotes_carry = 0  # quote characters in `carry`
    header_done = False
    while True:
        buf = bytearray(len(carry) + block)
        buf[:len(carry)] = carry
        got = stream.readinto(memoryview(buf)[len(carry):])
        eof = not got
        del buf[len(carry) + (got or 0):]
        if not header_done:
            nl = _first_record_end(buf)
            if nl < 0:
                if eof:
                    _check_quotes(buf)  # a quote never closed would have swallowed every row
                    return  # header only (or empty): no data rows
                if len(buf) > MAX_RECORD:
                    raise NotFast(f"a header longer than {MAX_RECORD >> 20} MB: a stray quote?")
                carry, quotes_carry = bytes(buf), _quotes(buf)
                continue
            _check_quotes(buf[:nl + 1])  # a stray quote in the header would take rows into it
            del buf[:nl + 1]
            header_done = True
            if eof:
                if buf:
                    yield buf
                return
            total_quotes, scan_from = _quotes(buf), 0
        else:
            total_quotes, scan_from = quotes_carry + _quotes(buf, len(carry)), len(carry)
        if eof:
            if buf:
                yield buf
            return
        # a newline in `carry` is inside quotes (else the cut before would have been there or later): skip them
        cut = _last_record_end(buf, total_quotes, start=scan_from)
        if cut < 0:  # one record longer than the block: keep reading
            if len(buf) > MAX_RECORD:
                raise NotFast(f"a record (or a quoted field) longer than {MAX_RECORD >> 20} MB: a stray quote?")
            carry, quotes_carry = bytes(buf), total_quotes
            continue
        carry = bytes(buf[cut + 1:])
        del buf[cut + 1:]
        quotes_carry = _quotes(carry)
        yield buf


def _first_record_end(buf: bytes | bytearray) -> int:
    """Index of the first newline outside quotes, -1 if none; quotes counted a segment at a time."""
    pos, start, seen = buf.find(b"\n"), 0, 0
    while pos >= 0:
        seen += buf.count(b'"', start, pos)
        if seen % 2 == 0:
            return pos
        start, pos = pos, buf.find(b"\n", pos + 1)
    return -1


def _last_record_end(buf: bytes | bytearray, total_quotes: int, start: int = 0) -> int:
    """Index of the last newline at or after `start` outside quotes, -1 if none. The quotes after each
    candidate are counted a segment at a time, so a block of many newlines inside quotes (a stray quote)
    costs one pass, not one per newline."""
    end, after = len(buf), 0
    pos = buf.rfind(b"\n", start)
    while pos >= 0:
        after += buf.count(b'"', pos, end)
        if (total_quotes - after) % 2 == 0:
            return pos
        end = pos
        pos = buf.rfind(b"\n", start, pos)
    return -1


def _options(schema: pa.Schema) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    read = pacsv.ReadOptions(column_names=schema.names, use_threads=False, block_size=BLOCK + (1 << 20))
    parse = pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, escape_char=False,
                               newlines_in_values=True, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in schema}, null_values=[""], true_values=["true", "t", "1"],
        false_values=["false", "f", "0"], strings_can_be_null=True, quoted_strings_can_be_null=False,
        timestamp_parsers=[pacsv.ISO8601], check_utf8=True)
    return read, parse, convert


_FIELD_EDGE = np.zeros(256, dtype=bool)  # what may stand before an opening quote or after a closing one
_FIELD_EDGE[[ord(","), ord("\n"), ord('"')]] = True


def _check_quotes(block: bytes | bytearray) -> None:
    """NotFast unless every quote in `block` (which starts at a record) opens a field, closes one, or is half
    of a doubled quote inside one. The cut into blocks counts quotes, so it holds only for such files: a
    quote inside an unquoted field (`5" tall`), which DuckDB reads as a character, would shift every cut
    after it and Arrow would silently read other rows; text after a closing quote (`"ab"c`) and a quote
    that never closes are refused by DuckDB but read by Arrow. Numbered from the block's start, quotes
    0, 2, 4 ... open and must follow a comma, a newline, a quote or the start; 1, 3, 5 ... close and must
    precede a comma, a newline, a quote or the end. A block without quotes costs one memchr; one with
    quotes ~1.4 ms per 8 MB (synthetic chartevents: ~1,300 quotes per block)."""
    if block.find(b'"') < 0:
        return
    arr = np.frombuffer(block, dtype=np.uint8)
    pos = np.flatnonzero(arr == ord('"'))
    if len(pos) % 2:
        raise NotFast("a quote that is never closed")
    opens, closes = pos[0::2], pos[1::2] + 1
    if not (_FIELD_EDGE[arr[opens[opens > 0] - 1]].all() and _FIELD_EDGE[arr[closes[closes < len(arr)]]].all()):
        raise NotFast("a quote inside an unquoted field, or text after a closing quote")


def _check_empty_lines(block: bytes | bytearray) -> None:
    """NotFast if a line outside quotes is empty: DuckDB skips it (a table of one column: a NULL row) and
    Arrow reads a row of NULLs. Called only for a block whose first column has a NULL (searching every
    block for two newlines cost ~7 ms per 8 MB); empty lines inside quoted fields (a note's paragraphs)
    are text."""
    if block[:1] != b"\n" and block.find(b"\n\n") < 0:
        return
    arr = np.frombuffer(block, dtype=np.uint8)
    nl = arr == ord("\n")
    ends = np.flatnonzero(nl[1:] & nl[:-1]) + 1
    if nl[0]:
        ends = np.concatenate([[0], ends])
    if (np.searchsorted(np.flatnonzero(arr == ord('"')), ends) % 2 == 0).any():
        raise NotFast("an empty line")


def _parse(block: bytes | bytearray, opts) -> pa.Table:
    read, parse, convert = opts
    if b"\r" in block:  # DuckDB's strict reader refuses some line-ending mixes Arrow takes: let it decide
        raise NotFast("carriage return in the file")
    _check_quotes(block)
    try:
        table = pacsv.read_csv(pa.BufferReader(block), read_options=read, parse_options=parse,
                               convert_options=convert, memory_pool=_MEMORY)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise NotFast(str(exc).splitlines()[0][:300]) from None
    if table.num_columns > 1 and table.column(0).null_count:  # an empty line is read as a row of NULLs
        _check_empty_lines(block)
    return table


def parsed(src: SourceFile, schema: pa.Schema, progress: Progress | None = None,
           stop: threading.Event | None = None) -> Iterator[pa.Table]:
    """The file's rows as Arrow tables, in file order, parsed a few blocks ahead on the shared pool.

    Raises NotFast on anything Arrow does not read exactly as DuckDB would (the caller falls back), and
    KeyboardInterrupt when `stop` is set; in-flight blocks are awaited so no thread outlives the call.
    """
    opts = _options(schema)
    pool = parse_pool()
    ahead = (os.cpu_count() or 2) + 1  # blocks in flight: both cores busy, memory flat
    pending: deque[Future[pa.Table]] = deque()
    rows = 0
    stream, raw = _open(src)
    try:
        try:
            blocks = _records(stream)
            while True:
                while len(pending) < ahead:
                    if stop is not None and stop.is_set():
                        raise KeyboardInterrupt
                    block = next(blocks, None)
                    if block is None:
                        break
                    pending.append(pool.submit(_parse, block, opts))
                if not pending:
                    return
                part = pending.popleft().result()
                rows += part.num_rows
                if progress is not None:
                    progress(raw.tell(), rows)
                yield part
        except (OSError, EOFError, ValueError, ISAL_ERROR) as exc:  # corrupt or truncated gzip: DuckDB names it
            raise NotFast(f"{type(exc).__name__}: {exc}") from None
    finally:
        for f in pending:
            f.cancel()
        for f in pending:
            with contextlib.suppress(BaseException):
                f.result()
        stream.close()
        raw.close()


# Patient tables are written in windows sorted by patient (see ParquetOut): rows and bytes per window.
WINDOW_ROWS = 2_000_000
WINDOW_BYTES = 64 << 20
LINE = "line"  # the row map's column: the row's 0-based data line in the csv (read_csv's index)
# and how many rows, one after another in stored order, sit on lines LINE, LINE + 1, ... (same patient). PhysioNet's
# files hold a patient's rows in runs (the demo's labevents: 19 rows a run), so one entry per run made the full-scale
# maps ~10x smaller than one per row (3.0 GB of the database). A map without RUN (an earlier mimiclab) has one per row.
RUN = "run"
RUN_MAPS = True  # False: one entry per row, as mimiclab wrote maps before (tests read such maps)
PARSE_SHARE = 0.45  # of a table sorted whole: the parse and cut into ranges; the rest, sorting and writing it
SORT_WHOLE = True  # False: sort window by window only, as mimiclab wrote files before (tests read such files)


def map_entries(key: pa.Array | pa.ChunkedArray, lines: pa.Array | pa.ChunkedArray, name: str,
                runs: bool = True) -> pa.Table:
    """Row map entries of rows in stored order: (patient, first line, run) for each run of rows of one patient
    on consecutive lines (`runs`), else (patient, line) per row. A run cut between two calls is two
    entries; read back, they give the same lines."""
    if not runs:
        return pa.table([key, lines], names=[name, LINE])
    if isinstance(key, pa.ChunkedArray):
        key = key.combine_chunks()
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    n = len(lines)
    line = lines.to_numpy()
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        head, tail = key.slice(0, n - 1), key.slice(1)
        other = pc.fill_null(pc.not_equal(tail, head), False).to_numpy(zero_copy_only=False)
        valid = key.is_valid().to_numpy(zero_copy_only=False)
        starts[1:] = other | (valid[1:] != valid[:-1]) | (line[1:] != line[:-1] + 1)
    first = np.flatnonzero(starts)
    run = np.diff(np.append(first, n)).astype(np.int32)
    return pa.table([key.take(pa.array(first)), pa.array(line[first]), pa.array(run)], names=[name, LINE, RUN])


class ParquetOut:
    """Parquet written in row groups of exactly `row_group` rows (the last one excepted), as DuckDB's COPY
    lays them out; Arrow's writer encodes a column in about half the CPU of DuckDB's (chartevents: 2.8 s
    against 6.1 s).

    With `cluster` (the table's patient column), rows are written in windows of whole row groups, each
    window stably sorted by that column. PhysioNet's files are not in patient order (the demo's labevents
    has 5,663 runs of one patient in 107,727 rows, and each patient's rows span 94% of the file), so a row
    group's min/max of subject_id would skip nothing and every per-patient lookup would read the whole
    column; sorted windows let it skip all but a few groups per window. A bounded window keeps memory flat
    (a full sort would hold or spill the whole table). Sorting moves rows away from their line in the
    file, which the MIMICDataset drop-in shows as its index, so a row map is written beside (`lines`):
    (patient, first line, run) for each run of a patient's rows on consecutive lines, in stored order
    (`map_entries`), kept only when some window was reordered or the windows are out of order.
    """

    def __init__(self, path: Path, schema: pa.Schema, row_group: int, cluster: str | None = None,
                 lines: Path | None = None, rows_hint: int = 0, stop: threading.Event | None = None,
                 sorted_rows: Callable[[int], None] | None = None):
        self.row_group = row_group
        self._stop, self._sorted_rows = stop, sorted_rows  # Ctrl-C, and rows written so far, while sorting whole
        self._path, self._rows_hint = path, rows_hint
        self._ranges: arrowbuckets.SortedRanges | None = None  # the file is sorted whole (see _start_ranges)
        self._seen = 0  # rows given to _ranges
        self.rows = 0
        self.reordered = False  # rows moved, or the stored order is not patient order: keep the row map
        self._tail_max: Any = None  # the largest patient in the windows written so far (see _after_windows)
        self._tail_null = False  # and whether they held a row without one
        self._held: list[pa.Table] = []
        self._held_rows = 0
        # dictionary pages for text only: numbers and times were dictionary-encoded and then, mostly, fell back
        # to plain; without it the encode took 12-17% less CPU and the file was 10-25% smaller on synthetic
        # chartevents/labevents, and within -23%..+5% on the real demo's tables (benchmarks: "build")
        self._writer = pq.ParquetWriter(path, schema, compression="zstd", compression_level=ZSTD_LEVEL,
                                        version="2.6", data_page_version="2.0", write_statistics=True,
                                        use_dictionary=[f.name for f in schema if pa.types.is_string(f.type)])
        self._cluster = cluster if cluster is not None and cluster in schema.names else None
        self._window = 0  # rows per window: a multiple of row_group, set from the first rows' width
        self._lines_path = lines
        self._lines: pq.ParquetWriter | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._failed = False  # a window failed on the writer thread: write nothing more
        if self._cluster is not None and lines is not None:
            key = schema.field(self._cluster)
            # a dictionary of unique line numbers is built only to be dropped: delta encoding, a quarter of the CPU
            self._runs = RUN_MAPS  # read once: the file's columns and every write must agree
            fields = [key, pa.field(LINE, pa.int64())] + ([pa.field(RUN, pa.int32())] if self._runs else [])
            self._lines = pq.ParquetWriter(lines, pa.schema(fields), compression="zstd",
                                           compression_level=ZSTD_LEVEL, version="2.6", data_page_version="2.0",
                                           write_statistics=True, use_dictionary=[self._cluster],
                                           column_encoding={LINE: "DELTA_BINARY_PACKED"})

    def write(self, part: pa.Table) -> None:
        if self._ranges is not None:
            self._to_ranges(part)
            return
        self._held.append(part)
        self._held_rows += part.num_rows
        step = self._window_rows() if self._cluster is not None else self.row_group
        if self._held_rows >= step:
            t = pa.concat_tables(self._held, memory_pool=_MEMORY)
            if SORT_WHOLE and self.rows == 0 and self._cluster is not None and not arrowbuckets.ascending(t.column(self._cluster)):
                self._start_ranges(t)
                return
            full = (self._held_rows // step) * step
            for start in range(0, full, step):
                self._submit(t.slice(start, step))
            rest = t.slice(full)
            self._held = [rest] if rest.num_rows else []
            self._held_rows = rest.num_rows

    def _submit(self, t: pa.Table) -> None:
        """Write `t` now, or, for a sorted window, on the writer thread while the next window is parsed (a
        2M-row window's sort and encoding took about a second, during which the parse pool went idle)."""
        first = self.rows
        self.rows += t.num_rows
        if self._cluster is None:
            self._writer.write_table(t, row_group_size=self.row_group)
            return
        self._wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mimiclab-window")
        self._pending = self._thread.submit(self._emit_window, [t], first)  # the list: see _emit_window

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()
            except BaseException:
                self._failed = True
                raise

    def _window_rows(self) -> int:
        """Rows per window, set from the first rows' width. A table whose row group alone is wider than
        WINDOW_BYTES (notes: 16,384 rows of about 10 KB) is left in file order: a window holds whole groups,
        and holding such groups several times over would break the memory bound for a few thousand rows."""
        if not self._window:
            rows = sum(t.num_rows for t in self._held)
            width = max(1, sum(t.nbytes for t in self._held) // max(rows, 1))
            groups = min(WINDOW_ROWS, WINDOW_BYTES // width) // self.row_group
            if groups < 1:
                self._cluster = None
                return self.row_group
            self._window = groups * self.row_group
        return self._window

    def _emit_window(self, box: list[pa.Table], first: int) -> None:
        """A window (`first`: its first row's line), sorted if out of order, taken one row group at a time:
        the window is held once (its parse chunks are let go as soon as they are combined: `box` holds the
        only reference)."""
        t = box.pop()
        n, key = t.num_rows, t.column(self._cluster)
        lines = pa.array(np.arange(first, first + n, dtype=np.int64))
        order = None
        if not arrowbuckets.ascending(key):
            order = pc.array_sort_indices(key, null_placement="at_end")  # stable: a patient's rows keep file order
            if np.array_equal(order.to_numpy(), np.arange(n)):  # nulls already last: nothing moves
                order = None
        if order is None:
            self._after_windows(key)
            self._writer.write_table(t, row_group_size=self.row_group)
            if self._lines is not None:
                self._lines.write_table(self._entries(key, lines), row_group_size=self.row_group)
            return
        self.reordered = True
        t = t.combine_chunks(memory_pool=_MEMORY)  # take from one chunk: 4x cheaper than from the parse's chunks
        key = t.column(self._cluster)
        for start in range(0, n, self.row_group):
            idx = order.slice(start, self.row_group)
            self._writer.write_table(t.take(idx), row_group_size=self.row_group)
            if self._lines is not None:
                self._lines.write_table(self._entries(key.take(idx), lines.take(idx)),
                                        row_group_size=self.row_group)

    def _entries(self, key: pa.Array | pa.ChunkedArray, lines: pa.Array | pa.ChunkedArray) -> pa.Table:
        assert self._cluster is not None  # a map is written only for a table sorted by its patient column
        return map_entries(key, lines, self._cluster, self._runs)

    def _after_windows(self, key: pa.ChunkedArray) -> None:
        """Mark the file out of order when a window in order on its own is not in order after the ones
        before (its smallest patient below their largest, or a patient after a row without one): nothing
        moved, but the file is not sorted by patient, so the map is kept and the insert sorts the table
        (store.duckdb_store.insert_native checks the order of any file with a map)."""
        lo, hi = pc.min_max(key).values()
        low, high = lo.as_py(), hi.as_py()
        if low is not None and (self._tail_null or (self._tail_max is not None and low < self._tail_max)):
            self.reordered = True
        if high is not None:
            self._tail_max = high
        self._tail_null = self._tail_null or key.null_count > 0

    def _start_ranges(self, first: pa.Table) -> None:
        """The first window is out of patient order, as in PhysioNet's files, which interleave patients from
        end to end: sort the whole file instead of window by window. Sorted windows left a lookup one row
        group per window to read (hundreds at full scale), so the native table was sorted again at insert
        (a window sort, a cut into ranges and a sort per range: three sorts of every row). Now the rows go
        to patient-range buckets as they are parsed (arrowbuckets.SortedRanges, ranges from this window's
        quantiles), and `close` writes them bucket by bucket, each sorted: one sort, a Parquet file sorted
        whole (views and Parquet readers skip too), and an insert that copies it as it is."""
        assert self._cluster is not None
        buckets, bucket_rows = arrowbuckets.bucket_plan(max(self._rows_hint, first.num_rows),
                                                        first.nbytes // max(first.num_rows, 1))
        path = self._path
        self._ranges = arrowbuckets.SortedRanges(
            lambda k: path.with_name(f"{path.name}.range{k:05d}"), self._cluster,
            arrowbuckets.quantile_bounds(first.column(self._cluster), buckets), bucket_rows)
        self._held, self._held_rows = [], 0
        self._to_ranges(first)

    def _to_ranges(self, part: pa.Table) -> None:
        assert self._ranges is not None
        n = part.num_rows
        lines = pa.chunked_array([pa.array(np.arange(self._seen, self._seen + n, dtype=np.int64))])
        self._seen += n
        for batch in part.append_column(LINE, lines).to_batches():
            self._ranges.append(batch)

    def _write_sorted(self) -> None:
        """Every row from the ranges, sorted, in row groups of `row_group` rows, its row map beside."""
        assert self._ranges is not None and self._cluster is not None
        held: list[pa.Table] = []
        held_rows = 0
        with contextlib.closing(self._ranges.sorted()) as pieces:  # on an error: its thread and files go now
            for piece in pieces:
                if self._stop is not None and self._stop.is_set():
                    raise KeyboardInterrupt
                held.append(piece)
                held_rows += piece.num_rows
                if held_rows >= self.row_group:
                    t = pa.concat_tables(held, memory_pool=_MEMORY)
                    full = (held_rows // self.row_group) * self.row_group
                    self._write_with_map(t.slice(0, full))
                    rest = t.slice(full)
                    held, held_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if held_rows:
            self._write_with_map(pa.concat_tables(held, memory_pool=_MEMORY))

    def _write_with_map(self, t: pa.Table) -> None:
        if not self.reordered:  # the map is kept only if some row moved (a NULL key ending the file moves none)
            at = pa.array(np.arange(self.rows, self.rows + t.num_rows, dtype=np.int64))
            self.reordered = not pc.all(pc.equal(t.column(LINE), at)).as_py()
        self.rows += t.num_rows
        self._writer.write_table(t.drop_columns([LINE]), row_group_size=self.row_group)
        if self._lines is not None:
            self._lines.write_table(self._entries(t.column(self._cluster), t.column(LINE)),
                                    row_group_size=self.row_group)
        if self._sorted_rows is not None:
            self._sorted_rows(self.rows)

    @property
    def parse_share(self) -> float:
        """The part of the table's progress its parse is worth: PARSE_SHARE while the rows are sorted whole
        or may yet be (the first window has not decided), all of it once they go out window by window. So
        progress only moves forward: a small gzip file is read whole before its first rows are parsed."""
        undecided = self._cluster is not None and self.rows == 0
        return PARSE_SHARE if self._ranges is not None or undecided else 1.0

    @property
    def rows_seen(self) -> int:
        return self._seen if self._ranges is not None else self.rows + self._held_rows

    def close(self, abort: bool = False) -> None:
        """Write what is held and close; the row map is removed again when no window was reordered (the
        stored order is then the file's). With `abort` (the parse failed or was stopped), or after a
        window failed, nothing more is written: the caller deletes the files, and the first error is the
        one that propagates (a second write to a failed writer said only "Operation on closed file")."""
        try:
            if self._ranges is not None:
                if abort:
                    self._ranges.discard()
                else:
                    try:
                        self._write_sorted()
                    except BaseException:
                        self._failed = True
                        self._ranges.discard()
                        raise
            if self._held_rows and not abort and not self._failed:
                t = pa.concat_tables(self._held, memory_pool=_MEMORY)
                self._held, self._held_rows = [], 0
                if self.rows == 0 and t.num_rows <= self.row_group:
                    self._cluster = None  # one row group in all: its min/max cannot skip anything, so keep file order
                self._submit(t)
            self._held = []
            if abort:
                with contextlib.suppress(BaseException):  # the error already on its way is the one to report
                    self._wait()
            else:
                self._wait()
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)  # an error above: let a running window finish before closing
            with contextlib.suppress(Exception) if (abort or self._failed) else contextlib.nullcontext():
                self._writer.close()
                if self._lines is not None:
                    self._lines.close()
            if self._lines is not None and not self.reordered and self._lines_path is not None:
                self._lines_path.unlink(missing_ok=True)


def csv_to_parquet(src: SourceFile, table: Table, version: str, out: Path, row_group: int,
                   progress: Progress | None = None, stop: threading.Event | None = None,
                   lines: Path | None = None, rows_hint: int = 0) -> int:
    """Write ``out`` (the caller's temporary name) from the csv; return its data rows. NotFast: use DuckDB.

    With `lines`, a patient table out of patient order is sorted and its row map goes to `lines` (which
    exists afterwards only if some row moved; see ParquetOut). A table sorted whole is written after the
    parse: its progress counts the parse as PARSE_SHARE of its bytes and the sorted writing as the rest,
    so the build's time left does not stop at the end of the parse."""
    schema = arrow_schema(table, version)
    if schema is None:
        raise NotFast("a column type Arrow is not used for")
    cluster = table.patient_key if lines is not None and table.kind != "dictionary" else None
    shown = progress
    sorted_rows = None
    if progress is not None:
        report, top = progress, 0

        def shown_at(done: int, rows: int) -> None:
            nonlocal top  # never back: the first window, once it decides on a whole sort, rescales the parse
            top = max(top, done)
            report(top, rows)

        def shown(done: int, rows: int) -> None:
            shown_at(int(done * sink.parse_share), rows)

        def sorted_rows(written: int) -> None:
            total = max(sink.rows_seen, 1)
            shown_at(int(src.size * (PARSE_SHARE + (1 - PARSE_SHARE) * written / total)), total)

    sink = ParquetOut(out, schema, row_group, cluster=cluster, lines=lines, rows_hint=rows_hint, stop=stop,
                      sorted_rows=sorted_rows)
    try:
        for part in parsed(src, schema, shown, stop):
            sink.write(part)
        sink.close()  # a file sorted whole is written here
        if progress is not None:  # all of it: a table smaller than a window is written only by close()
            shown_at(src.size, sink.rows)
    except BaseException:
        sink.close(abort=True)
        if lines is not None:
            lines.unlink(missing_ok=True)
        raise
    return sink.rows
