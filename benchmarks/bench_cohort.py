"""Cohort: a six-criterion spec (one lab-window criterion) on a synthetic 10,000-patient build.

Target: under 5 s per `Cohort.run` (ids + attrition + baseline rows) on a 2-core machine. Baseline: the same
cohort written as straightforward pandas over the csv.gz files, as a datathon notebook would do it; both
must select the same ICU stays, or the figure is void.
`MIMICLAB_BENCH_FULL=1` adds the same spec on the full-scale synthetic build (harness.full_build); its baseline
is the same cohort as one plain DuckDB query over the build's Parquet files (pandas cannot hold 160M lab rows
here); `=only` runs just that pass.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness import FULL, WORK, Harness, full_build, full_note, full_section

SPEC = """
name: Benchmark cohort
unit: stay
include:
  - {type: age, min: 18}
  - {type: first_icu_stay}
  - {type: icu_los, min: 24, unit: hours}
  - {type: lab, labels: [Lactate], above: 2, window: {anchor: icu, start_hours: -6, end_hours: 24}}
  - {type: admission_type, values: [EW EMER., URGENT, DIRECT EMER.]}
exclude:
  - {type: diagnosis, icd9: ["428*"], icd10: ["I50*"]}
"""
TABLES = ["patients", "admissions", "icustays", "labevents", "d_labitems", "diagnoses_icd", "d_icd_diagnoses",
          "prescriptions", "d_items"]


def _data(patients: int) -> tuple[Path, Path]:
    """Synthetic source + build, reused across runs (MIMICLAB_BENCH_DATA or /work/bench-data, else _work)."""
    from mimiclab import synth
    from mimiclab.load import build
    from mimiclab.load import manifest as mf

    root = Path(os.environ.get("MIMICLAB_BENCH_DATA", "/work/bench-data"))
    if not root.is_dir():
        root = WORK
    src, dest = root / f"synth-cohort-{patients}", root / f"synth-cohort-{patients}-build"
    if not (src / "SYNTHETIC.json").exists():
        synth.generate(src, patients=patients, seed=0, tables=TABLES)
    if mf.read(dest) is None:
        build("mimic-iv-demo", source=src, dest=dest)
    return src, dest


def pandas_cohort(src: Path) -> set[int]:
    """The same six criteria in plain pandas over the csv.gz files."""
    import pandas as pd

    def read(name, **kw):
        return pd.read_csv(src / f"{name}.csv.gz", **kw)

    pats = read("hosp/patients", usecols=["subject_id", "anchor_age", "anchor_year"])
    adm = read("hosp/admissions", usecols=["hadm_id", "admittime", "admission_type"], parse_dates=["admittime"])
    icu = read("icu/icustays", usecols=["subject_id", "hadm_id", "stay_id", "intime", "los"], parse_dates=["intime"])
    dlab = read("hosp/d_labitems", usecols=["itemid", "label"])
    lab = read("hosp/labevents", usecols=["subject_id", "itemid", "charttime", "valuenum"], parse_dates=["charttime"])
    dx = read("hosp/diagnoses_icd", usecols=["hadm_id", "icd_code", "icd_version"], dtype={"icd_code": str})

    s = icu.merge(adm, on="hadm_id").merge(pats, on="subject_id")
    s = s[s.anchor_age + (s.admittime.dt.year - s.anchor_year) >= 18]
    first = icu.sort_values(["intime", "stay_id"]).groupby("subject_id").head(1).stay_id
    s = s[s.stay_id.isin(first)]
    s = s[s.los >= 1]
    lact = dlab[dlab.label.str.lower() == "lactate"].itemid
    labs = lab[lab.itemid.isin(lact) & (lab.valuenum > 2)]
    j = s[["stay_id", "subject_id", "intime"]].merge(labs, on="subject_id")
    j = j[(j.charttime >= j.intime - pd.Timedelta(hours=6)) & (j.charttime <= j.intime + pd.Timedelta(hours=24))]
    s = s[s.stay_id.isin(j.stay_id)]
    s = s[s.admission_type.str.upper().isin(["EW EMER.", "URGENT", "DIRECT EMER."])]
    hf = dx[((dx.icd_version == 9) & dx.icd_code.str.startswith("428"))
            | ((dx.icd_version == 10) & dx.icd_code.str.startswith("I50"))].hadm_id
    s = s[~s.hadm_id.isin(hf)]
    return set(s.stay_id)


def duckdb_cohort(build_dir: Path) -> set[int]:
    """The same six criteria as one plain DuckDB query over the build's Parquet files (what pandas_cohort does)."""
    import duckdb

    from mimiclab.load import manifest as mf

    man = mf.read(build_dir)
    assert man is not None, build_dir
    pq = {e.table: str(build_dir / e.parquet) for e in man.loaded}
    sql = f"""
        WITH s AS (
            SELECT i.stay_id, i.subject_id, i.hadm_id, i.intime, i.los, a.admittime, a.admission_type,
                   p.anchor_age, p.anchor_year
            FROM read_parquet('{pq["icustays"]}') i
            JOIN read_parquet('{pq["admissions"]}') a ON a.hadm_id = i.hadm_id
            JOIN read_parquet('{pq["patients"]}') p ON p.subject_id = i.subject_id),
        first AS (SELECT stay_id FROM read_parquet('{pq["icustays"]}')
                  QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY intime, stay_id) = 1),
        lact AS (SELECT itemid FROM read_parquet('{pq["d_labitems"]}') WHERE lower(label) = 'lactate'),
        labs AS (SELECT subject_id, charttime FROM read_parquet('{pq["labevents"]}')
                 WHERE itemid IN (SELECT itemid FROM lact) AND valuenum > 2),
        hf AS (SELECT hadm_id FROM read_parquet('{pq["diagnoses_icd"]}')
               WHERE hadm_id IS NOT NULL AND ((icd_version = 9 AND icd_code LIKE '428%')
                                              OR (icd_version = 10 AND icd_code LIKE 'I50%')))
        SELECT stay_id FROM s
        WHERE anchor_age + (year(admittime) - anchor_year) >= 18
          AND stay_id IN (SELECT stay_id FROM first)
          AND los >= 1
          AND EXISTS (SELECT 1 FROM labs l WHERE l.subject_id = s.subject_id
                      AND l.charttime BETWEEN s.intime - INTERVAL 6 HOUR AND s.intime + INTERVAL 24 HOUR)
          AND upper(admission_type) IN ('EW EMER.', 'URGENT', 'DIRECT EMER.')
          AND hadm_id NOT IN (SELECT hadm_id FROM hf)
    """
    con = duckdb.connect()
    try:
        return {r[0] for r in con.execute(sql).fetchall()}
    finally:
        con.close()


def _time_cohort(h: Harness, build_dir: Path, repeat: int):
    """Median seconds of `Cohort.run` (ids + attrition + baseline rows) and the last cohort."""
    from mimiclab.cohort import Cohort
    from mimiclab.load import manifest as mf
    from mimiclab.sources.registry import Build

    b = Build(build_dir, mf.read(build_dir))
    result = {}

    def cohort():
        c = Cohort.run(b, SPEC)
        result["c"] = c
        c.close()

    secs = h.time(cohort, repeat=repeat, warmup=1)
    return secs, result["c"]


def run(h: Harness) -> None:
    if FULL != "only":
        synthetic(h)
    if FULL:
        full_scale(h)


def synthetic(h: Harness) -> None:
    patients = 1000 if h.quick else 10_000
    t0 = time.perf_counter()
    src, dest = _data(patients)
    print(f"  data ready in {time.perf_counter() - t0:.1f} s: {dest}", flush=True)
    secs, c = _time_cohort(h, dest, repeat=5)
    base: dict = {}

    def pandas():
        base["ids"] = pandas_cohort(src)

    psecs = h.time(pandas, repeat=1 if not h.quick else 3, warmup=0)
    same = set(c.ids["stay_id"]) == base["ids"]
    note = (f"{patients:,} synthetic patients, {c.counts[0]:,} ICU stays -> {len(c):,}; pandas selects "
            + ("the same stays" if same else f"DIFFERENT stays ({len(base['ids']):,})"))
    h.record("Cohorts", f"6-criterion cohort (lab window), {patients:,} patients", secs, "s",
             baseline_name="pandas over csv.gz", baseline_value=psecs, target="< 5 s",
             met=(secs < 5.0 and same), note=note)
    if not same:
        raise AssertionError("cohort and pandas baseline disagree: " + note)


def full_scale(h: Harness) -> None:
    sec = full_section("cohort")
    found = full_build()
    if isinstance(found, str):
        print(f"  full scale skipped: {found}", flush=True)
        h.record(sec, "skipped: no full-scale build", 0, "", note=found)
        return
    _, build_dir = found
    secs, c = _time_cohort(h, build_dir, repeat=3)
    base: dict = {}

    def plain():
        base["ids"] = duckdb_cohort(build_dir)

    bsecs = h.time(plain, repeat=3, warmup=1)
    same = set(c.ids["stay_id"]) == base["ids"]
    note = (f"{full_note(build_dir)}; {c.counts[0]:,} ICU stays -> {len(c):,}; median of 3; the plain query selects "
            + ("the same stays" if same else f"DIFFERENT stays ({len(base['ids']):,})"))
    h.record(sec, "6-criterion cohort (lab window), full scale", secs, "s",
             baseline_name="one plain DuckDB query over the Parquet", baseline_value=bsecs, target="< 5 s",
             met=(secs < 5.0 and same), note=note)
    if not same:
        raise AssertionError("cohort and plain DuckDB baseline disagree: " + note)
