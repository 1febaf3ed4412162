"""PostgreSQL loading benchmarks (issue 11, point 4).

`mimiclab publish` (Parquet -> CSV batches -> COPY into staging, row-count check, ANALYZE, per-table swap,
manifest) against raw psycopg `COPY ... FROM STDIN` of the same csv(.gz) files into tables of the same types,
in the same run, on the same server: the MIMIC-IV demo and a 1,000-patient synthetic build (`mimiclab synth`).
Target: publish throughput (rows/s) >= 0.5x raw COPY's.

Needs the PostgreSQL server of MIMICLAB_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres);
each figure is measured in a throwaway database.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import time
import uuid
from pathlib import Path

from harness import WORK, Harness, data_root

ADMIN = os.environ.get("MIMICLAB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PATIENTS = 200 if os.environ.get("MIMICLAB_BENCH_QUICK") else 1000


@contextlib.contextmanager
def database():
    import psycopg

    name = f"mimiclab_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield ADMIN.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _files(slug: str, version: str, src: Path) -> list[tuple[str, Path, list[tuple[str, str]]]]:
    """(table, csv file, [(column, DuckDB type)]) of every table whose file is present."""
    from mimiclab import catalog

    out = []
    for t in catalog.get(slug).tables(version):
        for suffix in (".csv.gz", ".csv"):
            p = src / f"{t.file}{suffix}"
            if p.exists():
                out.append((t.name, p, [(c.name, c.type) for c in t.columns_for(version)]))
                break
    return out


def raw_copy(dsn: str, files) -> int:
    """Plain psycopg: CREATE TABLE with the same column types, COPY the decompressed csv bytes; rows loaded."""
    import psycopg

    from mimiclab.load.postgres import PG_TYPES

    rows = 0
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP SCHEMA IF EXISTS raw_copy CASCADE")
        con.execute("CREATE SCHEMA raw_copy")
        for name, path, cols in files:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as fh:
                header = [c.strip().strip('"').lower() for c in fh.readline().split(",")]
            types = dict(cols)
            ddl = ", ".join(f'"{c}" {PG_TYPES[types[c].split("(")[0]]}' for c in header)
            with con.transaction():
                con.execute(f'CREATE TABLE raw_copy."{name}" ({ddl})')
                cur = con.cursor()
                cols_sql = ", ".join(f'"{c}"' for c in header)
                copy_sql = f'COPY raw_copy."{name}" ({cols_sql}) FROM STDIN (FORMAT csv, HEADER true)'
                with cur.copy(copy_sql) as cp, opener(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        cp.write(chunk)
                rows += cur.rowcount
    return rows


def publish(dsn: str, slug: str) -> int:
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import find

    return sum(to_postgres(find(slug), dsn).values())


def _compare(h: Harness, label: str, slug: str, version: str, src: Path, repeat: int) -> None:
    files = _files(slug, version, src)
    raw_s, ours_s, raw_rows, our_rows = [], [], 0, 0
    for _ in range(repeat):  # alternate, each in a fresh database, so that drift hits both alike
        with database() as dsn:
            t0 = time.perf_counter()
            raw_rows = raw_copy(dsn, files)
            raw_s.append(time.perf_counter() - t0)
        with database() as dsn:
            t0 = time.perf_counter()
            our_rows = publish(dsn, slug)
            ours_s.append(time.perf_counter() - t0)
    raw_t, ours_t = sorted(raw_s)[len(raw_s) // 2], sorted(ours_s)[len(ours_s) // 2]
    raw_tp, ours_tp = raw_rows / raw_t, our_rows / ours_t
    h.record("postgres", f"{label}: publish throughput ({our_rows:,} rows in {ours_t:.2f} s)", ours_tp, "rows/s",
             baseline_name=f"raw psycopg COPY of the csv files ({raw_rows:,} rows in {raw_t:.2f} s)",
             baseline_value=raw_tp, target=">= 0.5x baseline", met=ours_tp >= 0.5 * raw_tp,
             note=f"median of {repeat}; publish includes ANALYZE, the row-count check and the swap")


def run(h: Harness) -> None:
    from mimiclab import config, synth
    from mimiclab.load import build

    WORK.mkdir(parents=True, exist_ok=True)
    old_home = os.environ.get("MIMICLAB_HOME")
    with tempfile.TemporaryDirectory(dir=WORK) as home:
        os.chmod(home, 0o700)
        os.environ["MIMICLAB_HOME"] = home
        try:
            src = data_root() / "mimic-iv-demo" / "2.2"
            build("mimic-iv-demo", source=src)
            _compare(h, "MIMIC-IV demo", "mimic-iv-demo", "2.2", src, repeat=3)
            out = config.raw_dir(synth.SLUG, "2.2")
            synth.generate(out, patients=PATIENTS)
            build(synth.SLUG, source=out)
            _compare(h, f"synthetic MIMIC-IV, {PATIENTS:,} patients", synth.SLUG, "2.2", out, repeat=1)
        finally:
            if old_home is None:
                os.environ.pop("MIMICLAB_HOME", None)
            else:
                os.environ["MIMICLAB_HOME"] = old_home
