"""Export a cohort's data in PhysioNet's own layout, so any MIMIC tool (and `mimiclab build`) reads it.

    <out>/hosp/admissions.csv.gz ...   only the cohort's rows; dictionary tables whole
    <out>/cohort/                      the cohort report (ids, attrition, Table 1, flow, report.md/.html)
    <out>/SHA256SUMS.txt               "<sha256>  <path>" per file, as PhysioNet publishes it

Which rows: a table is filtered on the finest key it shares with the unit of analysis — stay id (ICU
stay cohorts), else hadm_id (admission and stay cohorts; rows tied to no admission, such as outpatient
labs, follow their patient), else subject_id. Tables that reach an admission only through a parent (emar_detail via emar) follow the
parent (the `links` of the family's concept mapping). Tables not loaded in the build (no source file) are not written.
With `whole_patients`, every row of the cohort's patients instead: criteria link events by patient and
time and look at a patient's other stays (first ICU stay), so a unit can be selected by a row filed under
another admission (the demo has prescriptions inside another admission's stay); only whole patients make
the same spec select the same units on the subset, whatever its criteria (`sql` ones aside).

Deterministic: rows sorted by primary key then every column, timestamps as MIMIC writes them
(YYYY-MM-DD HH:MM:SS, and a fraction where there is one), NULL as an empty field, gzip with mtime 0 and no file name, each file written
to a temporary name then renamed. A re-run gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mimiclab import catalog
from mimiclab.checksums import sha256_file
from mimiclab.cohort.report import write as write_report
from mimiclab.cohort.report import write_atomic
from mimiclab.errors import MimiclabError
from mimiclab.sqltext import ident as _q

if TYPE_CHECKING:
    from mimiclab.catalog import Table
    from mimiclab.cohort import Cohort

TS_FORMAT = "%Y-%m-%d %H:%M:%S"
REPORT_DIR = "cohort"


def row_filter(cohort: Cohort, table: Table, schema: str, ids_from: dict[str, str],
               whole_patients: bool = False) -> str | None:
    """WHERE condition selecting the cohort's rows of `table` (None: keep the whole table)."""
    if table.kind == "dictionary" or table.patient_key is None:
        return None
    ctx = cohort.compiled.ctx
    pid, aid = ctx.pid, ctx.aid
    if whole_patients:
        return f"t.{table.patient_key} IN ({ids_from[pid]})"
    cols = {c.name for c in table.columns}
    patient = f"t.{table.patient_key} IN ({ids_from[pid]})"
    by_admission = patient
    if ctx.unit in ("admission", "stay"):
        if aid in cols:
            # rows of no admission (ED/outpatient labs) stay with their patient: criteria link events by
            # subject and time, so a lab 6 h before admittime can be what put a unit in the cohort
            by_admission = f"(t.{aid} IN ({ids_from[aid]}) OR (t.{aid} IS NULL AND {patient}))"
        elif (link := ctx.names.links.get(table.name)) is not None:
            # the rows of the parent rows the subset keeps (emar_detail of emar), those of no admission too
            key = link.key
            by_admission = (f"t.{key} IN (SELECT x.{key} FROM {schema}.{link.parent} x WHERE x.{aid} IN "
                            f"({ids_from[aid]}) OR (x.{aid} IS NULL AND x.{pid} IN ({ids_from[pid]})))")
    if ctx.unit == "stay" and ctx.stay in cols:
        # a row of a stay goes with its stay; a row of no stay with its admission (as MIMIC-IV's hosp tables,
        # which have no stay column): MIMIC-III's prescriptions outside the ICU (3,352 of 10,256 rows) and
        # OMOP's conditions, drugs and procedures (no visit_detail_id at all) had been left out. A stay merged
        # from several rows (OMOP's ICU wards) has all of them as its rows, and OMOP's other visit_detail rows
        # (wards, services) are rows of no stay.
        icu, stay = ctx.names.icustays, ctx.stay
        assert icu is not None  # a stay unit has its stays (compile_spec)

        def rows_of(stays: str | None) -> str:
            if icu.members is None:
                return stays if stays is not None else f"SELECT x.{stay} FROM {icu.table} x"
            return (f"SELECT m.{stay} FROM {icu.members.table} m JOIN {icu.table} s ON {icu.members.condition}"
                    + (f" WHERE s.{stay} IN ({stays})" if stays is not None else ""))

        return (f"(t.{stay} IN ({rows_of(ids_from[stay])}) OR ((t.{stay} IS NULL OR t.{stay} NOT IN "
                f"({rows_of(None)})) AND {by_admission}))")
    return by_admission


def check_out(out: Path | str, force: bool = False) -> Path:
    """The subset's folder, if it may be written: new, empty, or (with `force`) to be replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MimiclabError(f"--out {out} is a file; give a folder for the subset.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MimiclabError(f"--out {out} is not empty: a build of it would load the files already there with the "
                            "subset's. Choose a new folder, or add --force to replace this one.")
    return out


def export(cohort: Cohort, out: Path | str, force: bool = False, whole_patients: bool = False) -> Path:
    """Write the subset into `out`, which must be new or empty (`force` replaces it). Everything is written
    into a temporary sibling folder first and renamed into place, so `out` never holds a mix of this subset
    and older files (which `mimiclab build --source` would load as if they belonged to it)."""
    out = check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        _export(cohort, tmp, whole_patients)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _export(cohort: Cohort, out: Path, whole_patients: bool = False) -> Path:
    m = cohort.manifest
    ds = catalog.get(m.dataset)
    store = cohort.store
    ids_from, cleanup = _id_sources(cohort)
    written: list[str] = []
    try:
        for table in ds.tables(m.version):
            schema = ds.db_schema(table.module)
            entry = m.tables.get(f"{schema}.{table.name}")
            if entry is None or entry.status != "loaded":
                continue
            cols = list(table.columns_for(m.version))
            where = row_filter(cohort, table, schema, ids_from, whole_patients)
            order = list(table.primary_key) + [c.name for c in cols if c.name not in table.primary_key]
            # the header as the source file spelled it (kept in the manifest at build time: ORIGINALAMOUNT,
            # valid_start_DATE, the MIMIC-III demo's lower case); else MIMIC-III's upper case for its files
            spelled = entry.header or {}
            upper = table.file.split("/")[-1].isupper() and entry.header is None
            select = ", ".join(
                f"t.{_q(c.name)} AS {_q(spelled.get(c.name, c.name.upper() if upper else c.name))}" for c in cols)
            sql = (f"SELECT {select} FROM {schema}.{table.name} t" + (f" WHERE {where}" if where else "")
                   + " ORDER BY " + ", ".join(f"t.{_q(c)}" for c in order))
            rel = table.file + ".csv.gz"
            _write_table(store, sql, out / rel)
            written.append(rel)
    finally:
        cleanup()
    write_report(cohort, out / REPORT_DIR)
    from mimiclab.cohort.report import FILES

    written += [f"{REPORT_DIR}/{f}" for f in FILES]
    sums = "".join(f"{sha256_file(out / p)}  {p}\n" for p in sorted(written))
    write_atomic(out / "SHA256SUMS.txt", sums.encode())
    return out


def _id_sources(cohort: Cohort) -> tuple[dict[str, str], Callable[[], None]]:
    """SQL sub-selects of the cohort's ids: a registered Arrow table where the store can query frames
    (DuckDB), else the compiled CTE chain (portable, recomputed per table)."""
    ctx = cohort.compiled.ctx
    store = cohort.store
    caps = getattr(store, "capabilities", None)
    if caps is not None and caps.register_frames:
        name = f"_mimiclab_cohort_{os.getpid()}_{id(cohort)}"
        store.register(name, pa.Table.from_pandas(cohort.ids, preserve_index=False))
        srcs = {c: f"SELECT DISTINCT {c} FROM {name}" for c in ctx.unit_columns}

        def cleanup() -> None:
            with contextlib.suppress(Exception):
                store.unregister(name)

        return srcs, cleanup
    comp = cohort.compiled
    srcs = {c: f"{comp.with_clause()} SELECT DISTINCT {c} FROM {comp.last}" for c in ctx.unit_columns}
    return srcs, lambda: None


def _write_table(store, sql: str, dest: Path) -> None:
    """Stream the rows from the store into gzip'd CSV written by Python (the database never writes files,
    so this works on a sandboxed store), under a temporary name renamed into place when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_gz = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    opts = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    try:
        with store.stream(sql, portable=True) as reader, open(tmp_gz, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            gz.write((",".join(_field(n) for n in reader.schema.names) + "\n").encode())
            for batch in reader:
                if batch.num_rows:
                    pacsv.write_csv(_as_written(batch), gz, opts)
        os.replace(tmp_gz, dest)
    finally:
        tmp_gz.unlink(missing_ok=True)


def _field(name: str) -> str:
    return '"' + name.replace('"', '""') + '"' if any(ch in name for ch in ',"\n\r') else name


def _as_written(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as MIMIC writes them (YYYY-MM-DD HH:MM:SS, a fraction only where there is one: the demo's
    procedureevents storetime has milliseconds, which a cast to seconds dropped), everything else as Arrow
    writes it."""
    cols = []
    for col in batch.columns:
        if pa.types.is_timestamp(col.type):
            text = pc.strftime(pc.cast(col, pa.timestamp("us", col.type.tz)), format=TS_FORMAT)  # "...:04.930000"
            text = pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")  # whole seconds
            col = pc.replace_substring_regex(text, pattern=r"(\.\d{3})000$", replacement=r"\1")  # ms: .930
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
