"""A synthetic, MIMIC-IV-shaped dataset: the offline demo and the benchmark scale-up.

Users without PhysioNet access still get a complete, referentially intact hosp + icu dataset in
PhysioNet's own layout, so every later layer (build, api, cohorts, workbench) runs unchanged. No real
patient data is involved: identifiers, times and values are invented; item ids, labels, codes and
category spellings are MIMIC's, so published SQL and concept code apply as is.

The table list and column order come from the catalog (``catalog.get("mimiciv")``), so the generator
follows schema changes; a catalog column the generator does not know is written empty.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import duckdb

from mimiclab import __version__
from mimiclab.arrowbuckets import BucketFiles
from mimiclab.checksums import sha256_file
from mimiclab.errors import MimiclabError
from mimiclab.sqltext import exact_path
from mimiclab.sqltext import ident as quote_ident
from mimiclab.sqltext import lit as sql_literal
from mimiclab.synth import _sql
from mimiclab.synth._gzip import Compressed, GzipMember, compress_stream

__all__ = ["DEFAULT_VERSION", "SCALES", "SLUG", "SynthResult", "chartevents_file", "count_rows", "full_patients", "generate", "resolve"]

SLUG = "mimic-iv-synthetic"
DEFAULT_VERSION = "2.2"
SCALES = {"demo": _sql.DEMO, "full": _sql.FULL}  # per-patient rates: the demo's, or MIMIC-IV 3.1's table sizes
FULL_VERSION = "3.1"  # the release whose published row counts --scale full matches (catalog rows:)
BATCH_ROWS = 1_000_000  # rows per batch (a patient range) of a table: bounds memory
WORKERS = min(8, max(2, os.cpu_count() or 2))  # batches generated at once, one core each (output does not depend on it)
THREADS = 1  # DuckDB threads per query: the parallelism is across batches (measured: same CPU, less memory)
AHEAD = 2 * WORKERS  # batches generated ahead of the file writer (each waits compressed, in memory)

Progress = Callable[[str, int], None]  # (table name, rows written)


@dataclass
class SynthResult:
    dest: Path
    patients: int
    seed: int
    version: str
    rows: dict[str, int] = field(default_factory=dict)  # "hosp/admissions" -> data rows
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.seconds.get("_total", 0.0)  # wall time; tables overlap, so their seconds do not add up


def _tables(version: str, names: list[str] | None):
    """The catalog's MIMIC-IV hosp/icu tables for this version, in catalog order."""
    from mimiclab import catalog

    try:
        ds = catalog.get("mimiciv")
        tables = ds.tables(version, modules=["hosp", "icu"])
    except catalog.CatalogError:
        fam = catalog.family("mimiciv")
        tables = [t for m in fam.modules if m.name in ("hosp", "icu") for t in m.tables
                  if t.only_versions is None or version in t.only_versions]
    if names:
        known = {t.name: t for t in tables}
        bad = [n for n in names if n not in known]
        if bad:
            raise MimiclabError(f"unknown MIMIC-IV table(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        tables = [t for t in tables if t.name in names]
    return tables


def full_patients() -> int:
    """MIMIC-IV 3.1's patient count, from the catalog (hosp/patients.csv.gz rows)."""
    from mimiclab import catalog

    rows = catalog.get("mimiciv").version(FULL_VERSION).files["hosp/patients.csv.gz"].rows
    assert rows, "the catalog lists MIMIC-IV 3.1's patients rows"
    return rows


# DuckDB's buffer pool: the batches are bounded, so a larger pool only holds more of what was generated
# (2 GB: peak 0.8 GB at 1,000 patients, 1.5 GB at 10,000, 1.9 GB at full scale); spills go to `tmp`.
SYNTH_MEMORY = "768MB"


def _duckdb(tmp: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={
        "threads": THREADS, "memory_limit": SYNTH_MEMORY, "preserve_insertion_order": True,
        "temp_directory": str(tmp),
    })
    if _scalar(con, "SELECT current_setting('enable_progress_bar')"):  # SET raises in Jupyter
        con.execute("SET enable_progress_bar = false")
    return con


def _connect(tmp: Path, seed: int, patients: int, rates: _sql.Rates = _sql.DEMO) -> duckdb.DuckDBPyConnection:
    con = _duckdb(tmp)
    for m in _sql.macros(seed, _n_providers(patients, rates), _n_caregivers(patients, rates)):
        con.execute(m)
    return con


def _scalar(con: duckdb.DuckDBPyConnection, sql: str):
    """The one value of a one-row query (an aggregate, a setting)."""
    row = con.execute(sql).fetchone()
    if row is None:  # pragma: no cover - callers only ask one-row queries
        raise MimiclabError(f"no row from {sql}")
    return row[0]


def _n_providers(patients: int, rates: _sql.Rates = _sql.DEMO) -> int:
    if rates.per_patient_staff:
        return max(1, round(patients * rates.providers))
    return min(40_000, max(500, int(patients * rates.providers)))


def _n_caregivers(patients: int, rates: _sql.Rates = _sql.DEMO) -> int:
    if rates.per_patient_staff:
        return max(1, round(patients * rates.caregivers))
    return min(15_000, max(300, int(patients * rates.caregivers)))


def _ranges(patients: int, per_patient: float) -> list[str]:
    """Batch filters on pidx: consecutive patient ranges of about BATCH_ROWS rows each."""
    n_b = max(1, -(-int(patients * per_patient) // BATCH_ROWS))
    step = -(-patients // n_b)
    return [f"pidx >= {lo} AND pidx < {min(lo + step, patients)}" for lo in range(0, patients, step)]


def _select(columns: list[str], produced: set[str], sql: str, order: str | None) -> str:
    # matched case-insensitively: the catalog may spell a column as PhysioNet does (ORIGINALAMOUNT)
    cols = ", ".join(f'"{c.lower()}" AS "{c}"' if c.lower() in produced else f'NULL AS "{c}"' for c in columns)
    return f"SELECT {cols} FROM ({sql}) ORDER BY {order}" if order else f"SELECT {cols} FROM ({sql})"


def _produced(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    return {d[0].lower() for d in con.execute(f"DESCRIBE SELECT * FROM ({sql})").fetchall()}


@dataclass
class _Table:
    """One output file: its batches are generated in order and appended to one gzip member."""
    key: str
    out: Path
    columns: list[str]
    batches: list[tuple[str, str | None]]
    rows: int = 0
    seconds: float = 0.0  # summed over batches (they overlap other tables' batches)


_PIPES = os.path.isdir("/dev/fd")  # COPY straight into a pipe; elsewhere through a temp file


def _timed(con: duckdb.DuckDBPyConnection, query: str, header: bool, tmp: Path,
           name: str) -> tuple[int, Compressed, float]:
    t0 = time.perf_counter()
    n, packed = _batch(con, query, header, tmp, name)
    return n, packed, time.perf_counter() - t0


def _batch(con: duckdb.DuckDBPyConnection, query: str, header: bool, tmp: Path, name: str) -> tuple[int, Compressed]:
    """One batch as CSV, compressed: DuckDB COPYs into a pipe on its own cursor while a reader thread
    compresses what comes out, so nothing touches the disk and two batches can run at once (one batch's
    query is mostly one thread). Returns (rows, compressed pieces)."""
    def copy(path: object) -> str:
        return f"COPY ({query}) TO '{path}' (FORMAT csv, HEADER {str(header).lower()})"

    with con.cursor() as cur:
        if not _PIPES:  # pragma: no cover - Windows
            plain = tmp / f"{name}.csv"
            res = cur.execute(copy(plain)).fetchone()
            with open(plain, "rb") as f:
                packed = compress_stream(f)
            plain.unlink()
            return (res[0] if res else 0), packed
        r, w = os.pipe()
        with ThreadPoolExecutor(1) as reader:
            fut = reader.submit(_read_pipe, r)
            try:
                res = cur.execute(copy(f"/dev/fd/{w}")).fetchone()
            finally:
                os.close(w)  # DuckDB closed its own descriptor: the reader now sees the end
            return (res[0] if res else 0), fut.result()


def _read_pipe(fd: int) -> Compressed:
    with os.fdopen(fd, "rb", buffering=0) as f:
        try:
            return compress_stream(f)
        except BaseException:
            while f.read(1 << 20):  # drain, so that DuckDB's COPY can finish instead of blocking forever
                pass
            raise


def _write_tables(con: duckdb.DuckDBPyConnection, tables: Sequence[_Table], tmp: Path,
                  done: Callable[[_Table], None] | None = None) -> None:
    """Generate and compress every batch of every table on WORKERS threads, a few batches ahead, and
    append them in order to each table's gzip member. Order and bytes depend only on the batch list,
    never on which worker finished first; at most AHEAD compressed batches wait in memory."""
    jobs: list[tuple[int, int, str]] = []
    for ti, t in enumerate(tables):
        produced = _produced(con, t.batches[0][0])
        jobs += [(ti, bi, _select(t.columns, produced, sql, order)) for bi, (sql, order) in enumerate(t.batches)]
    ahead: deque[tuple[int, int, Future[tuple[int, Compressed, float]]]] = deque()
    it = iter(jobs)
    fh: BinaryIO | None = None
    gz: GzipMember | None = None
    part: Path | None = None
    with ThreadPoolExecutor(WORKERS) as pool:
        try:
            while True:
                while len(ahead) < AHEAD and (job := next(it, None)) is not None:
                    ti, bi, query = job
                    ahead.append((ti, bi, pool.submit(_timed, con, query, bi == 0, tmp, f"{ti}-{bi}")))
                if not ahead:
                    break
                ti, bi, fut = ahead.popleft()
                t = tables[ti]
                try:
                    n, packed, secs = fut.result()
                except duckdb.Error as exc:
                    raise MimiclabError(f"synthetic {t.key}, batch {bi + 1} of {len(t.batches)}: {exc}") from exc
                if bi == 0:
                    part = t.out.with_name(t.out.name + ".part")
                    fh = open(part, "wb")  # noqa: SIM115 - closed by _finish or on error below
                    gz = GzipMember(fh)
                assert gz is not None and fh is not None and part is not None
                gz.append(packed)
                t.rows += n
                t.seconds += secs
                if bi == len(t.batches) - 1:  # a finished table reaches its final name at once
                    _finish(gz, fh, part, t, done)
                    fh = gz = part = None
        except BaseException:
            for *_, f in ahead:
                f.cancel()
            if fh is not None and part is not None:
                fh.close()
                part.unlink(missing_ok=True)
            raise


def _finish(gz: GzipMember, fh: BinaryIO, part: Path, t: _Table, done: Callable[[_Table], None] | None) -> None:
    gz.close()
    fh.close()
    os.replace(part, t.out)
    if done:
        done(t)


LICENSE = """Synthetic MIMIC-IV-shaped data generated by mimiclab (mimiclab.synth).

This folder contains NO real patient data. Every identifier, time and value was generated from a seed
by a program. Item ids, labels, ICD codes and category names follow MIMIC-IV's public data dictionary so
that code written for MIMIC-IV runs unchanged, but no statistical property of the synthetic values
should be read as a property of MIMIC-IV or of any patient population.

You may use, copy and share these files freely. MIMIC-IV itself is available from PhysioNet
(https://physionet.org/content/mimiciv/) under its own license and data use agreement.
"""


def resolve(patients: int | None, scale: str, fraction: float | None) -> tuple[int, _sql.Rates]:
    """(patients, rates) from the caller's choice of scale and patients or fraction of MIMIC-IV 3.1."""
    if scale not in SCALES:
        raise MimiclabError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if fraction is not None:
        if patients is not None:
            raise MimiclabError("give patients or fraction, not both")
        if not 0 < fraction <= 1:
            raise MimiclabError(f"fraction must be in (0, 1], got {fraction}")
        patients = max(1, round(full_patients() * fraction))
    elif patients is None:
        patients = full_patients() if scale == "full" else 100
    if patients < 1:
        raise MimiclabError("patients must be at least 1")
    return patients, SCALES[scale]


def _per_patient(t, rates: _sql.Rates, demo: float) -> float:
    """Expected rows per patient, to size batches: MIMIC-IV 3.1's published ratio at full scale."""
    if rates.sized_by_catalog:
        from mimiclab import catalog

        f = catalog.get("mimiciv").version(FULL_VERSION).files.get(f"{t.file}.csv.gz")
        if f is not None and f.rows:
            return 1.1 * f.rows / full_patients()
    return demo


def _plan(dest: Path, tabs, patients: int, version: str, rates: _sql.Rates) -> list[_Table]:
    """Every output file with its batches (SQL over the core tables, in output order)."""
    small = _sql.small_tables(version, _n_providers(patients, rates), _n_caregivers(patients, rates), rates)
    jobs: list[_Table] = []
    for t in tabs:
        batches: list[tuple[str, str | None]]
        if t.name in small:
            sql, order = small[t.name]
            if t.name in _sql.SMALL_PER_PATIENT:  # patient-level: in patient ranges too once it is big
                batches = [(_sql.restrict(sql, w), order)
                           for w in _ranges(patients, _per_patient(t, rates, _sql.SMALL_PER_PATIENT[t.name]))]
                if len(batches) == 1:
                    batches = [small[t.name]]
            else:
                batches = [small[t.name]]
        elif t.name in _sql.EVENT_TABLES:
            builder, per_patient = _sql.EVENT_TABLES[t.name]
            batches = [builder(w, rates) for w in _ranges(patients, _per_patient(t, rates, per_patient))]
        else:  # a table the catalog knows but the generator does not: header only
            batches = [("SELECT 1 AS _none WHERE false", None)]
        jobs.append(_Table(f"{t.module}/{t.name}", dest / f"{t.file}.csv.gz", [c.name for c in t.columns_for(version)],
                           batches))
    return jobs


def count_rows(patients: int | None = None, seed: int = 0, version: str = DEFAULT_VERSION,
               tables: list[str] | None = None, scale: str = "demo", fraction: float | None = None,
               workdir: Path | None = None) -> dict[str, int]:
    """The rows ``generate`` would write per file, counted in DuckDB without formatting or writing.

    Counting skips the value columns, so even the full-scale set is counted in minutes: this is how the
    ``full`` preset was checked against MIMIC-IV 3.1 without generating 10 GB.
    """
    import tempfile

    patients, rates = resolve(patients, scale, fraction)
    tabs = _tables(version, tables)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="synth-count-") as tmp:
        con = _connect(Path(tmp), seed, patients, rates)
        try:
            for stmt in _sql.core(patients, seed, version, rates):
                con.execute(stmt)
            return {j.key: sum(_scalar(con, f"SELECT count(*) FROM ({sql})") for sql, _ in j.batches)
                    for j in _plan(Path("."), tabs, patients, version, rates)}
        finally:
            con.close()


# PhysioNet's files are not in patient order: in the demo, which keeps the full files' row order, no table
# with a subject_id is in ascending patient order. Some are grouped (by admission, stay or patient) in an
# order that is not the patients' (poe, omr, inputevents); others interleave patients (labevents changes
# patient 5,663 times in 107,727 rows, in runs of one specimen, and each patient's rows span 94% of the
# file; prescriptions and emar_detail change patient at nearly every row). `order="physionet"` rewrites
# each of these tables in runs of equal values of the columns named here, the runs in the order of their
# hash, so lookups, builds and benchmarks meet the order real files have (a build sorts every one of them).
PHYSIONET_RUNS: dict[str, tuple[str, ...]] = {
    # interleaved: runs of one event
    "chartevents": ("stay_id", "charttime"),  # one charting time of one stay
    "datetimeevents": ("stay_id", "charttime"),
    "outputevents": ("stay_id", "charttime"),
    "labevents": ("specimen_id",),  # one specimen
    "microbiologyevents": ("micro_specimen_id",),
    "emar": ("hadm_id", "charttime"),  # one administration time of one admission
    "emar_detail": ("emar_id",),
    "pharmacy": ("pharmacy_id",),
    "prescriptions": ("pharmacy_id",),
    # grouped, the groups out of patient order
    "admissions": ("hadm_id",),
    "diagnoses_icd": ("hadm_id",),
    "drgcodes": ("hadm_id",),
    "hcpcsevents": ("hadm_id",),
    "poe": ("hadm_id",),
    "procedures_icd": ("hadm_id",),
    "services": ("hadm_id",),
    "transfers": ("hadm_id",),
    "icustays": ("stay_id",),
    "ingredientevents": ("stay_id",),
    "inputevents": ("stay_id",),
    "procedureevents": ("stay_id",),
    "omr": ("subject_id",),
    "patients": ("subject_id",),
    "poe_detail": ("subject_id",),
}
ORDERS = ("patient", "physionet")


def generate(dest: Path, patients: int | None = None, seed: int = 0, version: str = DEFAULT_VERSION,
             tables: list[str] | None = None, progress: Progress | None = None, scale: str = "demo",
             fraction: float | None = None, order: str = "patient") -> SynthResult:
    """Write a synthetic MIMIC-IV (hosp + icu) in PhysioNet's layout under ``dest``.

    ``scale`` picks the per-patient rates: "demo" (ICU-heavy, like the open demo; 100 patients unless
    given) or "full" (MIMIC-IV 3.1's published table sizes at its 364,627 patients, or at ``fraction``
    of them). ``order``: "patient" (rows grouped by patient, as generated) or "physionet" (the tables of
    PHYSIONET_RUNS in runs scattered over the file, as PhysioNet's are; two more passes over them, see
    `_scatter`). Same arguments and the same DuckDB version give byte-identical files.
    """
    if order not in ORDERS:
        raise MimiclabError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    patients, rates = resolve(patients, scale, fraction)
    dest = Path(dest)
    tabs = _tables(version, tables)
    from mimiclab import config

    config.private_dir(dest)  # 0700 like every folder mimiclab makes (see config.private_files)
    tmp = dest / ".synth-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    result = SynthResult(dest=dest, patients=patients, seed=seed, version=version)
    t0 = time.perf_counter()
    con = _connect(tmp, seed, patients, rates)
    try:
        for stmt in _sql.core(patients, seed, version, rates):
            con.execute(stmt)
        result.seconds["_core"] = time.perf_counter() - t0
        jobs = _plan(dest, tabs, patients, version, rates)
        for j in jobs:
            j.out.parent.mkdir(parents=True, exist_ok=True)

        def done(t: _Table) -> None:
            result.rows[t.key] = t.rows
            result.seconds[t.key] = t.seconds  # generate + compress, summed over its batches
            result.files.append(t.out)
            if progress:
                progress(t.key, t.rows)

        _write_tables(con, jobs, tmp, done)
        if order == "physionet":
            for j in jobs:
                run = PHYSIONET_RUNS.get(j.key.split("/")[-1])
                if run is not None:
                    _scatter(con, j.out, j.out, run, tmp)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    (dest / "LICENSE.txt").write_text(LICENSE)
    marker = {"synthetic": True, "generator": "mimiclab.synth", "mimiclab_version": __version__,
              "patients": patients, "seed": seed, "version": version, "scale": scale, "order": order,
              "duckdb_version": duckdb.__version__,
              "rows": dict(sorted(result.rows.items()))}
    (dest / "SYNTHETIC.json").write_text(json.dumps(marker, indent=2) + "\n")
    # PhysioNet's SHA256SUMS.txt lists every file of the version, sorted by path, except itself.
    listed = sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "SHA256SUMS.txt"
                    and not p.name.endswith(".part") and ".synth-tmp" not in p.parts)
    lines = [f"{sha256_file(p)}  {p.relative_to(dest).as_posix()}" for p in listed]
    (dest / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    result.seconds["_total"] = time.perf_counter() - t0
    return result


def physionet_order(src: Path, dest: Path, table: str) -> None:
    """Write `src` (a csv.gz of `table`, a key of PHYSIONET_RUNS) to `dest` in PhysioNet's order, as
    `generate(order="physionet")` does: for reordering files made before (the build benchmark)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.synth-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    con = _duckdb(tmp)
    try:
        _scatter(con, src, dest, PHYSIONET_RUNS[table], tmp)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


SCATTER_BUCKET_BYTES = 32 << 20  # csv.gz bytes per bucket: 2-4M rows, sorted in memory or nearly
SCATTER_MAX_BITS = 8  # at most 256 buckets, each an open file in the first pass
SCATTER_BATCH = 1 << 19  # rows per batch of the first pass (each ~70 MB of Arrow strings for chartevents)
_HASH, _LINE = "__mimiclab_scatter_hash", "__mimiclab_scatter_line"


def _scatter(con: duckdb.DuckDBPyConnection, path: Path, dest: Path, run: tuple[str, ...], tmp: Path,
             bucket_bytes: int | None = None) -> None:
    """Write the csv.gz at `path` to `dest` in runs of equal `run` columns, the runs in the order of their
    hash, a run's rows in their order in `path`. Values are read and written as text: an empty field stays
    NULL and `""` an empty string. Same input, same bytes.

    Two passes, so disk and memory stay bounded whatever the size. The first streams the file once and
    appends each row (with its hash and line) to the file of its hash range, one of 2^k buckets of about
    `bucket_bytes` of input (SCATTER_BUCKET_BYTES), each an Arrow IPC stream (lz4; open Parquet writers
    keep buffers per column: 128 of them took the scatter to 1.9 GB). The second sorts each bucket alone,
    in hash-range order, and appends it to one gzip member while the next bucket sorts. One ORDER BY over
    the whole file (the first way) spilled 8.7 GB at a quarter of full scale in 846 s; DuckDB's PARTITION_BY
    writer buffered 1.4-2 GB per 10M rows on disk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    src = f"read_csv({sql_literal(exact_path(path))}, header=true, all_varchar=true, allow_quoted_nulls=false)"
    keys = ", ".join(quote_ident(c) for c in run)
    wanted = path.stat().st_size // max(1, bucket_bytes or SCATTER_BUCKET_BYTES)
    bits = min(SCATTER_MAX_BITS, max(0, (max(1, wanted) - 1).bit_length()))
    work = tmp / f"{path.name}.buckets"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with gzip.open(path, "rb") as fh:  # the header line as it is in the file
        header = fh.readline()
    buckets = BucketFiles(lambda k: work / f"{k:06d}.arrows")
    cur = con.cursor()  # its own: the connection may hold an unfinished result (DuckDB then refuses a new one)
    try:
        reader = cur.sql(f"SELECT hash({keys}) AS {_HASH}, * FROM {src}").to_arrow_reader(SCATTER_BATCH)
        line = 0
        for batch in _prefetched(reader):
            n = batch.num_rows
            if n == 0:
                continue
            numbered = pa.RecordBatch.from_arrays([*batch.columns, pa.array(np.arange(line, line + n))],
                                                  names=[*batch.schema.names, _LINE])
            line += n
            ids = pc.shift_right(batch.column(0), pa.scalar(64 - bits, pa.uint64())).to_numpy() if bits \
                else np.zeros(n, dtype=np.uint64)
            buckets.append(numbered, ids)
    finally:
        cur.close()
        written = buckets.close()
    pa.default_memory_pool().release_unused()  # the first pass's batches, before DuckDB sorts
    part = tmp / f"{path.name}.scattered"
    cur = con.cursor()
    with open(part, "wb") as out, ThreadPoolExecutor(1) as pool:
        gz = GzipMember(out)
        gz.append(compress_stream(io.BytesIO(header)))
        pending: Future[Compressed] | None = None
        for k in written:
            bucket_file = buckets.path_of(k)
            plain = work / f"{k:06d}.csv"
            with pa.OSFile(str(bucket_file), "rb") as fh:
                cur.register("mimiclab_scatter_bucket", pa.ipc.open_stream(fh))
                try:
                    cur.execute(f"COPY (SELECT * EXCLUDE ({_HASH}, {_LINE}) FROM mimiclab_scatter_bucket "
                                f"ORDER BY {_HASH}, {_LINE}) TO {sql_literal(str(plain))} (FORMAT csv, HEADER false)")
                finally:
                    cur.unregister("mimiclab_scatter_bucket")
            bucket_file.unlink()
            if pending is not None:
                gz.append(pending.result())
            pending = pool.submit(_compress_file, plain)
        if pending is not None:
            gz.append(pending.result())
        gz.close()
    cur.close()
    shutil.rmtree(work, ignore_errors=True)
    os.replace(part, dest)


def _compress_file(path: Path) -> Compressed:
    """Compress a plain file (on a worker thread: zlib lets go of the GIL) and delete it."""
    with open(path, "rb") as fh:
        packed = compress_stream(fh)
    path.unlink()
    return packed


def _prefetched(reader, depth: int = 1):
    """The reader's batches, produced on a thread `depth` ahead of the consumer: DuckDB parses the next
    batch on one core while the caller splits this one on the other."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for b in reader:
                if stop.is_set():
                    return
                q.put(b)
            q.put(end)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def chartevents_file(path: Path, rows: int, seed: int = 0) -> int:
    """One chartevents-shaped csv.gz of exactly ``rows`` rows, for the build benchmark.

    Generated from just enough synthetic patients, then cut at ``rows``; streaming, bounded memory.
    """
    if rows < 0:
        raise MimiclabError("rows must be >= 0")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.synth-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    table = _tables(DEFAULT_VERSION, ["chartevents"])[0]
    columns = [c.name for c in table.columns_for(DEFAULT_VERSION)]
    per_patient = _sql.EVENT_TABLES["chartevents"][1]
    patients = max(1, int(rows / per_patient * 1.3) + 2)
    con = _connect(tmp, seed, patients)
    try:
        for stmt in _sql.core(patients, seed, DEFAULT_VERSION):
            con.execute(stmt)
        left = rows
        out_batches: list[tuple[str, str | None]] = []
        for w in _ranges(patients, per_patient):
            if left <= 0 and out_batches:
                break
            sql, _ = _sql.chartevents(w)
            take = min(_scalar(con, f"SELECT count(*) FROM ({sql})"), left)  # counting is cheap
            out_batches.append((f"SELECT * FROM ({sql}) LIMIT {take}", None))
            left -= take
        if left > 0:  # pragma: no cover - patients are sized with a 30% margin
            raise MimiclabError(f"could only generate {rows - left} of {rows} rows")
        job = _Table("icu/chartevents", path, columns, out_batches)
        _write_tables(con, [job], tmp)
        return job.rows
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
