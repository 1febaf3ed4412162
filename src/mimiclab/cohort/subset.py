"""Export a cohort's data in PhysioNet's own layout, so any MIMIC tool (and `mimiclab build`) reads it.

    <out>/hosp/admissions.csv.gz ...   only the cohort's rows; dictionary tables whole
    <out>/cohort/                      the cohort report (ids, attrition, Table 1, flow, report.md/.html)
    <out>/SHA256SUMS.txt               "<sha256>  <path>" per file, as PhysioNet publishes it

Which rows: a table is filtered on the finest key it shares with the unit of analysis — stay id (ICU
stay cohorts), else hadm_id (admission and stay cohorts; rows tied to no admission, such as outpatient
labs, follow their patient), else subject_id. Tables that reach an admission only through a parent (emar_detail via emar) follow the
parent (the `links` of the family's concept mapping). Tables not loaded in the build (no source file) are not written.

Deterministic: rows sorted by primary key then every column, timestamps as MIMIC writes them
(YYYY-MM-DD HH:MM:SS), NULL as an empty field, gzip with mtime 0 and no file name, each file written
to a temporary name then renamed. A re-run gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import os
import shutil
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

from mimiclab import catalog
from mimiclab.checksums import sha256_file
from mimiclab.cohort.compile import transpile
from mimiclab.cohort.report import write as write_report
from mimiclab.cohort.report import write_atomic

if TYPE_CHECKING:
    from mimiclab.catalog import Table
    from mimiclab.cohort import Cohort

TS_FORMAT = "%Y-%m-%d %H:%M:%S"
REPORT_DIR = "cohort"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def row_filter(cohort: Cohort, table: Table, schema: str, ids_from: dict[str, str]) -> str | None:
    """WHERE condition selecting the cohort's rows of `table` (None: keep the whole table)."""
    if table.kind == "dictionary" or table.patient_key is None:
        return None
    ctx = cohort.compiled.ctx
    cols = {c.name for c in table.columns}
    if ctx.unit == "stay" and ctx.stay in cols:
        return f"t.{ctx.stay} IN ({ids_from[ctx.stay]})"
    if ctx.unit in ("admission", "stay"):
        if "hadm_id" in cols:
            # rows of no admission (ED/outpatient labs) stay with their patient: criteria link events by
            # subject and time, so a lab 6 h before admittime can be what put a unit in the cohort
            return (f"(t.hadm_id IN ({ids_from['hadm_id']}) OR "
                    f"(t.hadm_id IS NULL AND t.{table.patient_key} IN ({ids_from['subject_id']})))")
        link = (ctx.names.get("links") or {}).get(table.name)
        if link:
            key = link["key"]
            return (f"t.{key} IN (SELECT x.{key} FROM {schema}.{link['parent']} x "
                    f"WHERE x.hadm_id IN ({ids_from['hadm_id']}))")
    return f"t.{table.patient_key} IN ({ids_from['subject_id']})"


def export(cohort: Cohort, out: Path | str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = cohort.manifest
    ds = catalog.get(m.dataset)
    store = cohort.store
    dialect = getattr(store, "dialect", "duckdb")
    ids_from, cleanup = _id_sources(cohort)
    written: list[str] = []
    try:
        for table in ds.tables(m.version):
            schema = ds.db_schema(table.module)
            entry = m.tables.get(f"{schema}.{table.name}")
            if entry is None or entry.status != "loaded":
                continue
            cols = list(table.columns_for(m.version))
            where = row_filter(cohort, table, schema, ids_from)
            order = list(table.primary_key) + [c.name for c in cols if c.name not in table.primary_key]
            upper = table.file.split("/")[-1].isupper()  # MIMIC-III files have upper-case headers
            select = ", ".join(
                f"t.{_q(c.name)} AS {_q(c.name.upper() if upper else c.name)}" for c in cols)
            sql = (f"SELECT {select} FROM {schema}.{table.name} t" + (f" WHERE {where}" if where else "")
                   + " ORDER BY " + ", ".join(f"t.{_q(c)}" for c in order))
            rel = table.file + ".csv.gz"
            _write_table(store, transpile(sql, dialect), out / rel)
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
    """SQL sub-selects of the cohort's subject/hadm/stay ids: a registered Arrow table on DuckDB, else the
    compiled CTE chain (portable, recomputed per table)."""
    ctx = cohort.compiled.ctx
    store = cohort.store
    con = getattr(store, "connection", None)
    if con is not None:
        import pyarrow as pa

        name = f"_mimiclab_cohort_{os.getpid()}_{id(cohort)}"
        con.register(name, pa.Table.from_pandas(cohort.ids, preserve_index=False))
        srcs = {c: f"SELECT DISTINCT {c} FROM {name}" for c in ctx.unit_columns}

        def cleanup() -> None:
            with contextlib.suppress(Exception):
                con.unregister(name)

        return srcs, cleanup
    comp = cohort.compiled
    srcs = {c: f"{comp.with_clause()} SELECT DISTINCT {c} FROM {comp.last}" for c in ctx.unit_columns}
    return srcs, lambda: None


def _write_table(store, sql: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_csv = dest.with_name(f".{dest.name}.tmp-{os.getpid()}.csv")
    tmp_gz = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        con = getattr(store, "connection", None)
        if con is not None:
            lit = "'" + str(tmp_csv).replace("'", "''") + "'"
            con.execute(f"COPY ({sql}) TO {lit} (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', "
                        f"NULLSTR '', DATEFORMAT '%Y-%m-%d', TIMESTAMPFORMAT '{TS_FORMAT}')")
        else:  # any other Store: Arrow batches through Python's csv module
            _write_csv_python(store.arrow(sql), tmp_csv)
        with open(tmp_csv, "rb") as src, open(tmp_gz, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
        os.replace(tmp_gz, dest)
    finally:
        tmp_csv.unlink(missing_ok=True)
        tmp_gz.unlink(missing_ok=True)


def _write_csv_python(table, path: Path) -> None:
    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, dt.datetime):
            return v.strftime(TS_FORMAT)
        if isinstance(v, float):
            return repr(v)
        return v

    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(table.column_names)
        for batch in table.to_batches():
            for row in zip(*(col.to_pylist() for col in batch.columns)):
                w.writerow([fmt(v) for v in row])



