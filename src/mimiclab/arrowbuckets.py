"""Rows of Arrow batches sent to numbered bucket files, each an Arrow IPC stream (lz4), in arrival order.

Used where a file too large to sort at once is cut into ranges that are sorted one by one: the build's
patient ranges (store.duckdb_store.insert_native) and synth's hash ranges (synth._scatter). A stream
writer holds nothing between batches; open Parquet writers kept buffers per column (224 of them took a
full-scale build to 3.8 GB).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HOLD_BYTES = 64 << 20  # Arrow bytes of batches held before their rows are written to the buckets


class BucketFiles:
    """Append each row of a batch to the file of its bucket number; `close()` says which were written.

    Rows are held until about HOLD_BYTES of batches arrived, then each bucket's rows are written as one
    batch: with hundreds of buckets a parsed block leaves a few hundred rows in each, and writing those
    one by one (an IPC message, a dozen lz4 frames and writes each) made the cut of full-scale chartevents
    (446M rows, 410 buckets) take longer than the parse, half of it system time."""

    def __init__(self, path_of: Callable[[int], Path]):
        self.path_of = path_of
        self._files: dict[int, pa.NativeFile] = {}
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._options = pa.ipc.IpcWriteOptions(compression="lz4")
        self._written: list[int] | None = None
        self._pending: dict[int, list[pa.RecordBatch]] = {}
        self._held = 0

    def append(self, batch: pa.RecordBatch, ids: np.ndarray) -> None:
        """`ids`: each row's bucket. Rows keep their order within a bucket (a stable sort, skipped when
        the ids are ascending already)."""
        if batch.num_rows == 0:
            return
        if int(ids.min()) >= 0 and int(ids.max()) < (1 << 15):
            # numpy's stable sort of 16-bit numbers is a radix sort: the cut of 7.1M chartevents rows took 0.9
            # CPU-s against 1.2-1.5 (41 buckets) and 1.6 against 2.3-2.6 (433)
            ids = ids.astype(np.int16)
        if np.any(ids[1:] < ids[:-1]):
            order = np.argsort(ids, kind="stable")
            batch, ids = batch.take(pa.array(order)), ids[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, batch.num_rows], strict=True):
            self._pending.setdefault(int(ids[lo]), []).append(batch.slice(lo, hi - lo))
        self._held += batch.nbytes
        if self._held >= HOLD_BYTES:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._held = self._pending, {}, 0
        for k, parts in pending.items():
            if k not in self._writers:
                self._files[k] = pa.OSFile(str(self.path_of(k)), "wb")
                self._writers[k] = pa.ipc.new_stream(self._files[k], parts[0].schema, options=self._options)
            self._writers[k].write_batch(pa.concat_batches(parts) if len(parts) > 1 else parts[0])

    def close(self) -> list[int]:
        """Close every file (once); the bucket numbers written, ascending. Every file is closed even if
        one fails to (a full disk fails each writer's end-of-stream too); then the first error is raised."""
        if self._written is None:
            failed: BaseException | None = None
            try:
                self._flush()
            except BaseException as exc:  # the files still get closed
                failed = exc
            for closable in [*self._writers.values(), *self._files.values()]:
                try:
                    closable.close()
                except BaseException as exc:  # the others still get closed
                    failed = failed or exc
            self._written = sorted(self._files)
            if failed is not None:
                raise failed
        return self._written

    def discard(self) -> None:
        """Close and delete every file opened; never raises (it runs while another error propagates)."""
        with contextlib.suppress(Exception):
            self.close()
        for k in self._files:
            with contextlib.suppress(OSError):
                self.path_of(k).unlink(missing_ok=True)


# Sorting a file too large for memory (SortedRanges): rows and Arrow bytes per range bucket (each is sorted
# in memory while the next is read), and at most this many buckets (each an open file while rows arrive;
# two tables load at once).
# Measured on chartevents of the 5% set (22.5M rows): writing the sorted file peaked 280 MB above the parse
# with 64 MB buckets, 450 MB with 128 MB (a bucket being written, the next read ahead, each briefly twice
# while its chunks are combined); with 32 MB, 130 MB but a slower cut. At full scale chartevents needs
# about 380 buckets of 64 MB.
SORT_BUCKET_ROWS = 2_000_000
SORT_BUCKET_BYTES = 64 << 20
MAX_SORT_BUCKETS = 512
SPLIT_SAMPLE = 1 << 20  # keys sampled from an oversized bucket to cut it again (4-8 MB)


def allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` (within the hard limit) if it is lower:
    two tables sorting at once hold up to 2 x MAX_SORT_BUCKETS bucket files, and a common soft limit is
    1,024. Nothing happens where the limit cannot be read or raised."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - Windows, or a locked-down system
        pass


def ascending(keys: pa.Array | pa.ChunkedArray) -> bool:
    """No NULL and every value >= the one before: rows already in key order, nothing to sort."""
    n = len(keys)
    return keys.null_count == 0 and (n < 2 or pc.all(pc.greater_equal(keys.slice(1), keys.slice(0, n - 1))).as_py())


def bucket_plan(rows: int, row_bytes: int) -> tuple[int, int]:
    """(buckets, rows per bucket) for `rows` rows of about `row_bytes` Arrow bytes each."""
    bucket_rows = max(1, min(SORT_BUCKET_ROWS, SORT_BUCKET_BYTES // max(row_bytes, 1)))
    return max(1, min(MAX_SORT_BUCKETS, -(-rows // bucket_rows))), bucket_rows


def quantile_bounds(sample: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Bounds cutting `sample`'s keys into `buckets` ranges of about equal count (fewer if keys repeat)."""
    values = np.asarray(pc.drop_null(sample).to_numpy(zero_copy_only=False))
    if buckets < 2 or not len(values):
        return values[:0]
    return np.unique(np.quantile(values, np.arange(1, buckets) / buckets, method="lower"))


class SortedRanges:
    """Rows appended in any order, given back sorted by `key` (stable: equal keys keep arrival order; rows
    without a key last, in arrival order), in bounded memory whatever the total.

    Each row goes to the bucket file of its key range (`bounds`, e.g. quantile_bounds of a sample); then
    `sorted()` sorts one bucket at a time, in range order. A bucket that came out larger than twice
    `bucket_rows` (bounds from a sample unlike the rest) is cut again by its own quantiles first.
    """

    def __init__(self, path_of: Callable[[int], Path], key: str, bounds: np.ndarray, bucket_rows: int):
        self.key, self.bucket_rows, self._path_of, self._bounds = key, bucket_rows, path_of, bounds
        self._null_bucket = len(self._bounds) + 1  # after every key range
        self._files = BucketFiles(path_of)
        self.rows: dict[int, int] = {}  # rows per bucket

    def append(self, batch: pa.RecordBatch) -> None:
        keys = batch.column(self.key)
        ids = np.full(batch.num_rows, self._null_bucket, dtype=np.int64)
        valid = keys.is_valid().to_numpy(zero_copy_only=False)
        ids[valid] = np.searchsorted(self._bounds, keys.drop_null().to_numpy(zero_copy_only=False), side="right")
        counts = np.bincount(ids)
        for k in np.flatnonzero(counts):
            self.rows[int(k)] = self.rows.get(int(k), 0) + int(counts[k])
        self._files.append(batch, ids)

    def sorted(self, piece_rows: int = 1 << 17) -> Generator[pa.Table, None, None]:
        """Every row, sorted, in tables of at most `piece_rows`; each bucket file is deleted once read.
        The next bucket is read, sorted and put in order on a thread while the caller writes this one."""
        with ThreadPoolExecutor(1, thread_name_prefix="mimiclab-sort") as pool:
            ahead: Future[pa.Table] | None = None
            for k in self._files.close():
                if k == self._null_bucket:  # rows without a key: last, in arrival order, nothing to sort
                    if ahead is not None:
                        yield from _pieces(ahead.result(), piece_rows)
                        ahead = None
                    yield from self._stream(k)
                    continue
                if self.rows.get(k, 0) > 2 * self.bucket_rows:
                    if ahead is not None:  # keep order: what was read ahead comes first
                        yield from _pieces(ahead.result(), piece_rows)
                        ahead = None
                    yield from self._split(k, piece_rows)
                    continue
                job = pool.submit(self._read_sorted, k)
                if ahead is not None:
                    yield from _pieces(ahead.result(), piece_rows)
                ahead = job
            if ahead is not None:
                yield from _pieces(ahead.result(), piece_rows)

    def _stream(self, k: int) -> Iterator[pa.Table]:
        path = self._path_of(k)
        with pa.OSFile(str(path), "rb") as fh:
            for batch in pa.ipc.open_stream(fh):
                yield pa.Table.from_batches([batch])
        path.unlink()

    def _read_sorted(self, k: int) -> pa.Table:
        """Bucket `k`'s rows, sorted. Taken here, on the read-ahead thread, so that the caller's thread only
        writes (the take was a third of the sorted writing of chartevents); a column at a time, each
        column's unsorted rows let go once taken, so the bucket is held about once, not twice."""
        path = self._path_of(k)
        with pa.OSFile(str(path), "rb") as fh:
            t = pa.ipc.open_stream(fh).read_all()
        path.unlink()
        key = t.column(self.key)
        if ascending(key):  # this bucket holds no rows without a key
            return t
        order = pc.sort_indices(key)  # stable; NULLs (none here: they have their own bucket) last
        schema, columns = t.schema, list(t.columns)
        del t, key
        for i in range(len(columns)):
            whole = columns[i].combine_chunks() if columns[i].num_chunks > 1 else columns[i].chunk(0)
            columns[i] = pa.chunked_array([whole.take(order)])  # from one chunk: 4x cheaper than from many
            del whole
        return pa.Table.from_arrays(columns, schema=schema)

    def _split(self, k: int, piece_rows: int) -> Iterator[pa.Table]:
        """An oversized bucket, cut by the quantiles of a sample of its keys (at most SPLIT_SAMPLE of them:
        a first window unlike the rest can send nearly the whole file here) into at most MAX_SORT_BUCKETS
        ranges, sorted range by range. A bucket of one key is sorted whole."""
        path = self._path_of(k)
        step = max(1, self.rows[k] // SPLIT_SAMPLE)
        taken, seen = [], 0
        with pa.OSFile(str(path), "rb") as fh:
            stream = pa.ipc.open_stream(fh)
            key_type = stream.schema.field(self.key).type
            for batch in stream:
                keys = batch.column(self.key)
                first = (-seen) % step
                if first < len(keys):
                    taken.append(keys.take(pa.array(np.arange(first, len(keys), step))))
                seen += len(keys)
        sample = pa.chunked_array(taken, type=key_type)
        bounds = quantile_bounds(sample, min(MAX_SORT_BUCKETS, -(-self.rows[k] // self.bucket_rows)))
        if len(bounds) <= 1 and pc.count_distinct(sample).as_py() <= 1:  # one key: nothing to cut
            yield from _pieces(self._read_sorted(k), piece_rows)
            return
        inner = SortedRanges(lambda j: path.with_name(f"{path.name}.{j:04d}"), self.key, bounds, self.bucket_rows)
        try:
            with pa.OSFile(str(path), "rb") as fh:
                for batch in pa.ipc.open_stream(fh):
                    inner.append(batch)
            path.unlink()
            if max(inner.rows.values()) == self.rows[k]:  # all in one range: nothing gained by cutting again
                inner.bucket_rows = self.rows[k]
            yield from inner.sorted(piece_rows)
        finally:
            inner.discard()

    def discard(self) -> None:
        """Delete every bucket file left (after an error, or when the caller stops reading); never raises."""
        self._files.discard()


def _pieces(t: pa.Table, piece_rows: int) -> Iterator[pa.Table]:
    for start in range(0, t.num_rows, piece_rows):
        yield t.slice(start, piece_rows)
