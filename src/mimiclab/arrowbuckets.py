"""Rows of Arrow batches sent to numbered bucket files, each an Arrow IPC stream (lz4), in arrival order.

Used where a file too large to sort at once is cut into ranges that are sorted one by one: the build's
patient ranges (store.duckdb_store.insert_native) and synth's hash ranges (synth._scatter). A stream
writer holds nothing between batches; open Parquet writers kept buffers per column (224 of them took a
full-scale build to 3.8 GB).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa


class BucketFiles:
    """Append each row of a batch to the file of its bucket number; `close()` says which were written."""

    def __init__(self, path_of: Callable[[int], Path]):
        self.path_of = path_of
        self._files: dict[int, pa.NativeFile] = {}
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._options = pa.ipc.IpcWriteOptions(compression="lz4")

    def append(self, batch: pa.RecordBatch, ids: np.ndarray) -> None:
        """`ids`: each row's bucket. Rows keep their order within a bucket (a stable sort, skipped when
        the ids are ascending already)."""
        if np.any(ids[1:] < ids[:-1]):
            order = np.argsort(ids, kind="stable")
            batch, ids = batch.take(pa.array(order)), ids[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, batch.num_rows], strict=True):
            k = int(ids[lo])
            if k not in self._writers:
                self._files[k] = pa.OSFile(str(self.path_of(k)), "wb")
                self._writers[k] = pa.ipc.new_stream(self._files[k], batch.schema, options=self._options)
            self._writers[k].write_batch(batch.slice(lo, hi - lo))

    def close(self) -> list[int]:
        """Close every file; the bucket numbers written, ascending."""
        for w in self._writers.values():
            w.close()
        for f in self._files.values():
            f.close()
        return sorted(self._writers)

    def discard(self) -> None:
        """Close and delete every file written."""
        for k in self.close():
            self.path_of(k).unlink(missing_ok=True)
