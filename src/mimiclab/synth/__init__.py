"""A synthetic, MIMIC-IV-shaped dataset: the offline demo and the benchmark scale-up.

Users without PhysioNet access still get a complete, referentially intact hosp + icu dataset in
PhysioNet's own layout, so every later layer (build, api, cohorts, workbench) runs unchanged. No real
patient data is involved: identifiers, times and values are invented; item ids, labels, codes and
category spellings are MIMIC's, so published SQL and concept code apply as is.

The table list and column order come from the catalog (``catalog.get("mimiciv")``), so the generator
follows schema changes; a catalog column the generator does not know is written empty.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mimiclab import __version__
from mimiclab.checksums import sha256_file
from mimiclab.errors import MimiclabError
from mimiclab.synth import _sql
from mimiclab.synth._gzip import GzipWriter

__all__ = ["DEFAULT_VERSION", "SLUG", "SynthResult", "chartevents_file", "generate"]

SLUG = "mimic-iv-synthetic"
DEFAULT_VERSION = "2.2"
BATCH_ROWS = 2_000_000  # rows per DuckDB COPY of an event table: bounds memory and temp disk

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
        return sum(self.seconds.values())


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


def _connect(tmp: Path, seed: int, patients: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={
        "threads": min(os.cpu_count() or 2, 4), "memory_limit": "1GB", "preserve_insertion_order": True,
        "temp_directory": str(tmp),
    })
    if _scalar(con, "SELECT current_setting('enable_progress_bar')"):  # SET raises in Jupyter
        con.execute("SET enable_progress_bar = false")
    for m in _sql.macros(seed, _n_providers(patients), _n_caregivers(patients)):
        con.execute(m)
    return con


def _scalar(con: duckdb.DuckDBPyConnection, sql: str):
    """The one value of a one-row query (an aggregate, a setting)."""
    row = con.execute(sql).fetchone()
    if row is None:  # pragma: no cover - callers only ask one-row queries
        raise MimiclabError(f"no row from {sql}")
    return row[0]


def _n_providers(patients: int) -> int:
    return min(40_000, max(500, patients * 10))


def _n_caregivers(patients: int) -> int:
    return min(15_000, max(300, patients * 8))


def _select(columns: list[str], produced: set[str], sql: str, order: str | None) -> str:
    # matched case-insensitively: the catalog may spell a column as PhysioNet does (ORIGINALAMOUNT)
    cols = ", ".join(f'"{c.lower()}" AS "{c}"' if c.lower() in produced else f'NULL AS "{c}"' for c in columns)
    return f"SELECT {cols} FROM ({sql}) ORDER BY {order}" if order else f"SELECT {cols} FROM ({sql})"


def _produced(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    return {d[0].lower() for d in con.execute(f"DESCRIBE SELECT * FROM ({sql})").fetchall()}


def _write_table(con, out: Path, columns: list[str], batches: Sequence[tuple[str, str | None]], tmp: Path,
                 pool: ThreadPoolExecutor, level: int | None = None) -> int:
    """COPY each batch to plain CSV (DuckDB, parallel), then append it to one deterministic gzip stream."""
    part = out.with_name(out.name + ".part")
    rows = 0
    produced = _produced(con, batches[0][0])
    plain = tmp / (out.name + ".csv")
    with open(part, "wb") as fh:
        gz: GzipWriter | None = None
        for i, (sql, order) in enumerate(batches):
            q = _select(columns, produced, sql, order)
            res = con.execute(f"COPY ({q}) TO '{plain}' (FORMAT csv, HEADER {str(i == 0).lower()})").fetchone()
            rows += res[0] if res else 0
            if gz is None:
                lvl = level if level is not None else (6 if plain.stat().st_size < (16 << 20) else 1)
                gz = GzipWriter(fh, pool, level=lvl)
            gz.write_file(plain)
        assert gz is not None, "batches is never empty (batches[0] was read above)"
        gz.close()
    plain.unlink(missing_ok=True)
    os.replace(part, out)
    return rows




LICENSE = """Synthetic MIMIC-IV-shaped data generated by mimiclab (mimiclab.synth).

This folder contains NO real patient data. Every identifier, time and value was generated from a seed
by a program. Item ids, labels, ICD codes and category names follow MIMIC-IV's public data dictionary so
that code written for MIMIC-IV runs unchanged, but no statistical property of the synthetic values
should be read as a property of MIMIC-IV or of any patient population.

You may use, copy and share these files freely. MIMIC-IV itself is available from PhysioNet
(https://physionet.org/content/mimiciv/) under its own license and data use agreement.
"""


def generate(dest: Path, patients: int = 100, seed: int = 0, version: str = DEFAULT_VERSION,
             tables: list[str] | None = None, progress: Progress | None = None) -> SynthResult:
    """Write a synthetic MIMIC-IV (hosp + icu) in PhysioNet's layout under ``dest``.

    Same (patients, seed, version) and the same DuckDB version give byte-identical files.
    """
    if patients < 1:
        raise MimiclabError("patients must be at least 1")
    dest = Path(dest)
    tabs = _tables(version, tables)
    from mimiclab import config

    config.private_dir(dest)  # 0700 like every folder mimiclab makes (see config.private_files)
    tmp = dest / ".synth-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    result = SynthResult(dest=dest, patients=patients, seed=seed, version=version)
    t0 = time.perf_counter()
    con = _connect(tmp, seed, patients)
    try:
        for stmt in _sql.core(patients, seed, version):
            con.execute(stmt)
        result.seconds["_core"] = time.perf_counter() - t0
        small = _sql.small_tables(version, _n_providers(patients), _n_caregivers(patients))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for t in tabs:
                t1 = time.perf_counter()
                out = dest / f"{t.file}.csv.gz"
                out.parent.mkdir(parents=True, exist_ok=True)
                columns = [c.name for c in t.columns_for(version)]
                batches: list[tuple[str, str | None]]
                if t.name in small:
                    batches = [small[t.name]]
                elif t.name in _sql.EVENT_TABLES:
                    builder, per_patient = _sql.EVENT_TABLES[t.name]
                    n_b = max(1, -(-patients * per_patient // BATCH_ROWS))
                    step = -(-patients // n_b)
                    batches = [builder(f"pidx >= {lo} AND pidx < {min(lo + step, patients)}")
                               for lo in range(0, patients, step)]
                else:  # a table the catalog knows but the generator does not: header only
                    batches = [("SELECT 1 AS _none WHERE false", None)]
                n = _write_table(con, out, columns, batches, tmp, pool)
                key = f"{t.module}/{t.name}"
                result.rows[key] = n
                result.seconds[key] = time.perf_counter() - t1
                result.files.append(out)
                if progress:
                    progress(key, n)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    (dest / "LICENSE.txt").write_text(LICENSE)
    marker = {"synthetic": True, "generator": "mimiclab.synth", "mimiclab_version": __version__,
              "patients": patients, "seed": seed, "version": version, "duckdb_version": duckdb.__version__,
              "rows": dict(sorted(result.rows.items()))}
    (dest / "SYNTHETIC.json").write_text(json.dumps(marker, indent=2) + "\n")
    # PhysioNet's SHA256SUMS.txt lists every file of the version, sorted by path, except itself.
    listed = sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "SHA256SUMS.txt"
                    and not p.name.endswith(".part") and ".synth-tmp" not in p.parts)
    lines = [f"{sha256_file(p)}  {p.relative_to(dest).as_posix()}" for p in listed]
    (dest / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    result.seconds["_total"] = time.perf_counter() - t0
    return result


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
        n_b = max(1, -(-patients * per_patient // BATCH_ROWS))
        step = -(-patients // n_b)
        left = rows
        out_batches: list[tuple[str, str | None]] = []
        for lo in range(0, patients, step):
            if left <= 0 and out_batches:
                break
            sql, _ = _sql.chartevents(f"pidx >= {lo} AND pidx < {min(lo + step, patients)}")
            take = min(_scalar(con, f"SELECT count(*) FROM ({sql})"), left)  # counting is cheap
            out_batches.append((f"SELECT * FROM ({sql}) LIMIT {take}", None))
            left -= take
        if left > 0:  # pragma: no cover - patients are sized with a 30% margin
            raise MimiclabError(f"could only generate {rows - left} of {rows} rows")
        with ThreadPoolExecutor(max_workers=2) as pool:
            return _write_table(con, path, columns, out_batches, tmp, pool)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
