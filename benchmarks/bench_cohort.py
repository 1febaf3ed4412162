"""Cohort: a six-criterion spec (one lab-window criterion) on a synthetic 10,000-patient build.

Target: under 5 s per `Cohort.run` (ids + attrition + baseline rows) on a 2-core machine. Baseline: the same
cohort written as straightforward pandas over the csv.gz files, as a datathon notebook would do it; both
must select the same ICU stays, or the figure is void.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness import WORK, Harness

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


def run(h: Harness) -> None:
    from mimiclab.cohort import Cohort
    from mimiclab.load import manifest as mf
    from mimiclab.sources.registry import Build

    patients = 1000 if h.quick else 10_000
    t0 = time.perf_counter()
    src, dest = _data(patients)
    print(f"  data ready in {time.perf_counter() - t0:.1f} s: {dest}", flush=True)
    b = Build(dest, mf.read(dest))

    result = {}

    def cohort():
        c = Cohort.run(b, SPEC)
        result["c"] = c
        c.close()

    secs = h.time(cohort, repeat=5, warmup=1)
    c = result["c"]
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
