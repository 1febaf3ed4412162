"""Cohorts on the real demo: every criterion against plain DuckDB SQL over the raw csv.gz, written here.

The oracles never use mimiclab's SQL or names: they read PhysioNet's files with read_csv_auto and
restate each criterion's meaning in their own words (year arithmetic, epoch differences, joins).
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from mimiclab.cohort import CRITERIA, Cohort, EmptyCohortError, SpecError
from mimiclab.cohort.criteria import race_group_sql
from mimiclab.load import build
from mimiclab.load import manifest as mf
from mimiclab.sources.registry import Build, find


@pytest.fixture(scope="module")
def home(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("cohort-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        yield home


@pytest.fixture(scope="module")
def demo(home) -> Build:
    return find("mimic-iv-demo")


@pytest.fixture(scope="module")
def charted(demo_dir, tmp_path_factory):
    """The demo plus a small chartevents file (the real one is not in the shared data): heart rates at
    fixed hours after each ICU admission, values varying by stay. Returns (source dir, Build)."""
    src = tmp_path_factory.mktemp("charted-src")
    for p in demo_dir.rglob("*.csv.gz"):
        (src / p.relative_to(demo_dir)).parent.mkdir(parents=True, exist_ok=True)
        (src / p.relative_to(demo_dir)).symlink_to(p)
    duckdb.execute(f"""COPY (
        SELECT i.subject_id, i.hadm_id, i.stay_id, NULL AS caregiver_id,
               strftime(i.intime + h * INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S') AS charttime,
               strftime(i.intime + h * INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S') AS storetime,
               220045 AS itemid, CAST(60 + (i.stay_id % 97) + h AS VARCHAR) AS value,
               60 + (i.stay_id % 97) + h AS valuenum, 'bpm' AS valueuom, 0 AS warning
        FROM read_csv_auto('{demo_dir}/icu/icustays.csv.gz') i, (VALUES (2), (30)) t(h)
        ORDER BY i.stay_id, h) TO '{src}/icu/chartevents.csv.gz' (HEADER, COMPRESSION gzip)""")
    dest = tmp_path_factory.mktemp("charted-build")
    res = build("mimic-iv-demo", source=src, dest=dest)
    assert res.manifest.tables["mimiciv_icu.chartevents"].status == "loaded"
    return src, Build(dest, mf.read(dest))


def raw(demo_dir: Path, name: str) -> str:
    return f"read_csv_auto('{demo_dir / name}.csv.gz', sample_size=-1)"


def oracle(demo_dir: Path, sql: str) -> set[int]:
    """Run an oracle query; {adm}, {pat}, {icu}, {dx}, {px}, {lab}, {dlab}, {rx}, {inp} name raw files."""
    names = {"adm": "hosp/admissions", "pat": "hosp/patients", "icu": "icu/icustays", "dx": "hosp/diagnoses_icd",
             "px": "hosp/procedures_icd", "lab": "hosp/labevents", "dlab": "hosp/d_labitems",
             "rx": "hosp/prescriptions", "inp": "icu/inputevents"}
    q = sql.format(**{k: raw(demo_dir, v) for k, v in names.items()})
    return {r[0] for r in duckdb.execute(q).fetchall()}


KEY = {"patient": "subject_id", "admission": "hadm_id", "stay": "stay_id"}


def ids(target, unit: str, *criteria: dict, exclude: tuple = ()) -> set[int]:
    c = Cohort.run(target, {"unit": unit, "include": list(criteria), "exclude": list(exclude)}, allow_empty=True)
    return set(c.ids[KEY[unit]])


AGE = "p.anchor_age + (year(a.admittime) - p.anchor_year)"

# (unit, criterion, oracle over raw files). Each oracle restates the criterion independently.
CASES = [
    ("stay", {"type": "age", "min": 65},
     f"SELECT i.stay_id FROM {{icu}} i JOIN {{adm}} a ON a.hadm_id = i.hadm_id "
     f"JOIN {{pat}} p ON p.subject_id = i.subject_id WHERE {AGE} >= 65"),
    ("admission", {"type": "age", "min": 40, "max": 60},
     f"SELECT a.hadm_id FROM {{adm}} a JOIN {{pat}} p USING (subject_id) WHERE {AGE} BETWEEN 40 AND 60"),
    ("patient", {"type": "age", "max": 50},
     f"SELECT a.subject_id FROM {{adm}} a JOIN {{pat}} p USING (subject_id) WHERE {AGE} <= 50"),
    ("patient", {"type": "sex", "value": "F"}, "SELECT subject_id FROM {pat} WHERE gender = 'F'"),
    ("admission", {"type": "race", "groups": ["Black", "Hispanic/Latino"]},
     "SELECT hadm_id FROM {adm} WHERE race LIKE 'BLACK%' OR race LIKE 'HISPANIC%'"),
    ("admission", {"type": "race", "groups": ["Unknown"]},
     "SELECT hadm_id FROM {adm} WHERE race IN ('UNKNOWN', 'UNABLE TO OBTAIN', 'PATIENT DECLINED TO ANSWER')"),
    ("admission", {"type": "admission_type", "values": ["URGENT", "elective"]},
     "SELECT hadm_id FROM {adm} WHERE admission_type IN ('URGENT', 'ELECTIVE')"),
    ("stay", {"type": "admission_type", "values": ["emer"], "match": "contains"},
     "SELECT i.stay_id FROM {icu} i JOIN {adm} a USING (hadm_id) WHERE a.admission_type LIKE '%EMER%'"),
    ("admission", {"type": "admission_location", "values": ["TRANSFER FROM HOSPITAL"]},
     "SELECT hadm_id FROM {adm} WHERE admission_location = 'TRANSFER FROM HOSPITAL'"),
    ("patient", {"type": "year_group", "values": ["2014 - 2016"]},
     "SELECT subject_id FROM {pat} WHERE anchor_year_group = '2014 - 2016'"),
    ("admission", {"type": "hospital_los", "min": 7, "max": 14},
     "SELECT hadm_id FROM {adm} WHERE epoch(dischtime) - epoch(admittime) BETWEEN 7 * 86400 AND 14 * 86400"),
    ("stay", {"type": "hospital_los", "max": 48, "unit": "hours"},
     "SELECT i.stay_id FROM {icu} i JOIN {adm} a USING (hadm_id) WHERE epoch(a.dischtime) - epoch(a.admittime) <= 48 * 3600"),
    ("admission", {"type": "in_hospital_death"}, "SELECT hadm_id FROM {adm} WHERE hospital_expire_flag = 1"),
    ("patient", {"type": "in_hospital_death", "value": False},
     "SELECT subject_id FROM {adm} WHERE hospital_expire_flag = 0"),
    ("admission", {"type": "has_icu_stay"}, "SELECT DISTINCT hadm_id FROM {icu}"),
    ("patient", {"type": "care_unit", "values": ["Coronary Care Unit (CCU)"], "which": "last"},
     "SELECT subject_id FROM {icu} WHERE last_careunit = 'Coronary Care Unit (CCU)'"),
    ("stay", {"type": "first_icu_stay"},
     "SELECT stay_id FROM {icu} i WHERE intime = (SELECT min(intime) FROM {icu} j WHERE j.subject_id = i.subject_id)"),
    ("admission", {"type": "first_icu_stay"},
     "SELECT hadm_id FROM {icu} i WHERE intime = (SELECT min(intime) FROM {icu} j WHERE j.subject_id = i.subject_id)"),
    ("stay", {"type": "icu_los", "min": 2}, "SELECT stay_id FROM {icu} WHERE los >= 2"),
    ("patient", {"type": "icu_los", "max": 36, "unit": "hours"}, "SELECT subject_id FROM {icu} WHERE los * 24 <= 36"),
    ("stay", {"type": "care_unit", "values": ["Medical Intensive Care Unit (MICU)"]},
     "SELECT stay_id FROM {icu} WHERE first_careunit = 'Medical Intensive Care Unit (MICU)'"),
    ("admission", {"type": "care_unit", "values": ["sicu"], "match": "contains", "which": "any"},
     "SELECT hadm_id FROM {icu} WHERE first_careunit ILIKE '%sicu%' OR last_careunit ILIKE '%sicu%'"),
    ("admission", {"type": "diagnosis", "icd9": ["428*"], "icd10": ["I50*"]},
     "SELECT hadm_id FROM {dx} WHERE (icd_version = 9 AND starts_with(icd_code, '428')) "
     "OR (icd_version = 10 AND starts_with(icd_code, 'I50'))"),
    ("admission", {"type": "diagnosis", "icd10": ["E10-E14"]},
     "SELECT hadm_id FROM {dx} WHERE icd_version = 10 AND left(icd_code, 3) IN ('E10', 'E11', 'E12', 'E13', 'E14')"),
    ("patient", {"type": "diagnosis", "icd9": ["4019", "401.1"]},
     "SELECT subject_id FROM {dx} WHERE icd_version = 9 AND icd_code IN ('4019', '4011')"),
    ("admission", {"type": "diagnosis", "icd9": ["4*"], "icd10": ["I*"], "primary": True},
     "SELECT hadm_id FROM {dx} WHERE seq_num = 1 AND ((icd_version = 9 AND icd_code[1] = '4') "
     "OR (icd_version = 10 AND icd_code[1] = 'I'))"),
    ("admission", {"type": "procedure", "icd9": ["3*"], "icd10": ["0*"]},
     "SELECT hadm_id FROM {px} WHERE (icd_version = 9 AND icd_code[1] = '3') OR (icd_version = 10 AND icd_code[1] = '0')"),
    ("stay", {"type": "lab", "labels": ["Lactate"], "above": 2, "window": {"anchor": "icu", "end_hours": 24}},
     "SELECT i.stay_id FROM {icu} i JOIN {lab} l ON l.subject_id = i.subject_id JOIN {dlab} d ON d.itemid = l.itemid "
     "WHERE d.label = 'Lactate' AND l.valuenum > 2 AND epoch(l.charttime) - epoch(i.intime) BETWEEN 0 AND 86400"),
    ("admission", {"type": "lab", "itemids": [50912], "at_least": 1.5},  # creatinine, any time in the admission
     "SELECT a.hadm_id FROM {adm} a JOIN {lab} l ON l.subject_id = a.subject_id WHERE l.itemid = 50912 "
     "AND l.valuenum >= 1.5 AND l.charttime BETWEEN a.admittime AND a.dischtime"),
    ("stay", {"type": "lab", "itemids": [51265], "below": 100, "window": {"anchor": "admission", "start_hours": -12, "end_hours": 48}},
     "SELECT i.stay_id FROM {icu} i JOIN {adm} a ON a.hadm_id = i.hadm_id JOIN {lab} l ON l.subject_id = a.subject_id "
     "WHERE l.itemid = 51265 AND l.valuenum < 100 AND epoch(l.charttime) - epoch(a.admittime) BETWEEN -12 * 3600 AND 48 * 3600"),
    ("patient", {"type": "lab", "labels": ["potassium"], "above": 5.5, "at_most": 7},
     "SELECT a.subject_id FROM {adm} a JOIN {lab} l ON l.subject_id = a.subject_id JOIN {dlab} d ON d.itemid = l.itemid "
     "WHERE lower(d.label) = 'potassium' AND l.valuenum > 5.5 AND l.valuenum <= 7 AND l.charttime BETWEEN a.admittime AND a.dischtime"),
    ("stay", {"type": "medication", "names": ["vancomycin"], "window": {"anchor": "icu", "start_hours": -24, "end_hours": 24}},
     "SELECT i.stay_id FROM {icu} i JOIN {rx} r ON r.subject_id = i.subject_id WHERE r.drug ILIKE '%vancomycin%' "
     "AND epoch(r.starttime) - epoch(i.intime) BETWEEN -86400 AND 86400"),
    # a literal %: LIKE '%dextrose 5%%' also matched "Dextrose 50%" (141 admissions against 27)
    ("admission", {"type": "medication", "names": ["Dextrose 5%"]},
     "SELECT a.hadm_id FROM {adm} a JOIN {rx} r ON r.subject_id = a.subject_id WHERE contains(lower(r.drug), 'dextrose 5%') "
     "AND r.starttime BETWEEN a.admittime AND a.dischtime"),
    ("admission", {"type": "medication", "names": ["_"]},  # the demo has one "SulfaSALAzine_"
     "SELECT a.hadm_id FROM {adm} a JOIN {rx} r ON r.subject_id = a.subject_id WHERE contains(r.drug, '_') "
     "AND r.starttime BETWEEN a.admittime AND a.dischtime"),
    ("admission", {"type": "medication", "codes": ["00338355248"]},
     "SELECT a.hadm_id FROM {adm} a JOIN {rx} r ON r.subject_id = a.subject_id WHERE r.ndc = '00338355248' "
     "AND r.starttime BETWEEN a.admittime AND a.dischtime"),
    ("stay", {"type": "medication", "itemids": [221906], "window": {"anchor": "icu"}},  # norepinephrine
     "SELECT i.stay_id FROM {icu} i JOIN {inp} e ON e.subject_id = i.subject_id WHERE e.itemid = 221906 "
     "AND e.starttime BETWEEN i.intime AND i.outtime"),
    ("admission", {"type": "sql", "query": "SELECT subject_id FROM mimiciv_hosp.patients WHERE anchor_age > 70",
                   "returns": "subject_id"},
     "SELECT a.hadm_id FROM {adm} a JOIN {pat} p USING (subject_id) WHERE p.anchor_age > 70"),
    ("admission", {"type": "sql", "query": "SELECT stay_id FROM mimiciv_icu.icustays WHERE los > 5", "returns": "stay_id"},
     "SELECT hadm_id FROM {icu} WHERE los > 5"),
]


@pytest.mark.parametrize("unit,criterion,sql", CASES, ids=[f"{u}-{c['type']}-{i}" for i, (u, c, _) in enumerate(CASES)])
def test_criterion_matches_independent_sql(demo, demo_dir, unit, criterion, sql):
    want = oracle(demo_dir, sql)
    got = ids(demo, unit, criterion)
    assert got == want
    # the same criterion as an exclusion keeps exactly the complement
    everyone = oracle(demo_dir, {"patient": "SELECT subject_id FROM {pat}", "admission": "SELECT hadm_id FROM {adm}",
                                 "stay": "SELECT stay_id FROM {icu}"}[unit])
    assert ids(demo, unit, exclude=(criterion,)) == everyone - want
    assert 0 < len(want) < len(everyone), "a case that keeps all or nothing tests little"


def test_chart_criterion_on_charted_build(charted):
    src, b = charted
    ce = f"read_csv_auto('{src}/icu/chartevents.csv.gz')"
    icu = f"read_csv_auto('{src}/icu/icustays.csv.gz')"
    want = {r[0] for r in duckdb.execute(
        f"SELECT i.stay_id FROM {icu} i JOIN {ce} c ON c.subject_id = i.subject_id WHERE c.itemid = 220045 "
        f"AND c.valuenum > 120 AND epoch(c.charttime) - epoch(i.intime) BETWEEN 0 AND 6 * 3600").fetchall()}
    crit = {"type": "chart", "labels": ["Heart Rate"], "above": 120, "window": {"anchor": "icu", "end_hours": 6}}
    assert ids(b, "stay", crit) == want and 0 < len(want) < 140
    # default window for chart items: the whole ICU stay
    all_hr = {r[0] for r in duckdb.execute(
        f"SELECT i.stay_id FROM {icu} i JOIN {ce} c ON c.subject_id = i.subject_id WHERE c.itemid = 220045 "
        f"AND c.valuenum > 150 AND c.charttime BETWEEN i.intime AND i.outtime").fetchall()}
    assert ids(b, "stay", {"type": "chart", "itemids": [220045], "above": 150}) == all_hr


def test_race_groups_map_mimic_strings():
    strings = {"WHITE": "White", "WHITE - BRAZILIAN": "White", "PORTUGUESE": "White", "BLACK/CAPE VERDEAN": "Black",
               "BLACK/AFRICAN AMERICAN": "Black", "HISPANIC/LATINO - CUBAN": "Hispanic/Latino",
               "HISPANIC OR LATINO": "Hispanic/Latino", "SOUTH AMERICAN": "Hispanic/Latino", "ASIAN - CHINESE": "Asian",
               "UNKNOWN": "Unknown", "UNABLE TO OBTAIN": "Unknown", "PATIENT DECLINED TO ANSWER": "Unknown",
               "UNKNOWN/NOT SPECIFIED": "Unknown", None: "Unknown", "OTHER": "Other",
               "AMERICAN INDIAN/ALASKA NATIVE": "Other", "MULTIPLE RACE/ETHNICITY": "Other"}
    con = duckdb.connect()
    con.execute("CREATE TABLE r (race VARCHAR)")
    con.executemany("INSERT INTO r VALUES (?)", [[s] for s in strings])
    got = dict(con.execute(f"SELECT race, {race_group_sql('race')} FROM r").fetchall())
    assert got == strings


def test_steps_apply_in_order_with_attrition(demo, demo_dir):
    spec = {"unit": "stay", "include": [{"type": "age", "min": 18}, {"type": "first_icu_stay"},
                                        {"type": "icu_los", "min": 24, "unit": "hours"}],
            "exclude": [{"type": "in_hospital_death"}]}
    c = Cohort.run(demo, spec)
    want = oracle(demo_dir, f"""
        SELECT i.stay_id FROM {{icu}} i JOIN {{adm}} a ON a.hadm_id = i.hadm_id JOIN {{pat}} p ON p.subject_id = i.subject_id
        WHERE {AGE} >= 18 AND i.los >= 1 AND a.hospital_expire_flag = 0
          AND i.intime = (SELECT min(intime) FROM {{icu}} j WHERE j.subject_id = i.subject_id)""")
    assert set(c.ids["stay_id"]) == want
    att = c.attrition
    assert list(att.columns) == ["step", "label", "n_before", "n_excluded", "n_after"]
    assert att["n_after"].iloc[0] == 140 and att["n_after"].iloc[-1] == len(want)
    first_stays = oracle(demo_dir, "SELECT count(DISTINCT subject_id) FROM {icu}")
    assert att["n_after"].iloc[2] == first_stays.pop()
    assert att["label"].iloc[4].startswith("Exclude: ")


def test_wildcards_in_values_and_names_are_literal(demo):
    """`%` and `_` in a contains value are characters, not LIKE's wildcards (drug names: CASES)."""
    everyone = ids(demo, "admission")
    assert len(everyone) > 200
    for c in ({"type": "admission_type", "values": ["%"], "match": "contains"},
              {"type": "admission_type", "values": ["_"], "match": "contains"}):
        assert ids(demo, "admission", c) == set(), c
    assert len(ids(demo, "admission", {"type": "admission_type", "values": ["emer"], "match": "contains"})) > 0


def half_up(x: float, digits: int) -> str:
    """Rounding as papers print it (64.5 -> 65), written independently of table1's."""
    return f"{math.floor(x * 10 ** digits + 0.5) / 10 ** digits:.{digits}f}"


def test_table1_rounds_halves_up():
    """Hand-worked: medians and percents that end in exactly 5."""
    import pandas as pd

    from mimiclab.cohort.table1 import _median_iqr, _n_pct

    assert _median_iqr(pd.Series([64, 65]), 0) == "65 [64–65]"  # 64.5 [64.25–64.75]
    assert _median_iqr(pd.Series([63, 64]), 0) == "64 [63–64]"  # 63.5 [63.25–63.75]
    assert _median_iqr(pd.Series([1.0, 1.1, 1.3, 1.5]), 1) == "1.2 [1.1–1.4]"  # 1.2 [1.075–1.35]
    assert _n_pct(1, 16) == "1 (6.3)" and _n_pct(1, 8) == "1 (12.5)" and _n_pct(1, 3) == "1 (33.3)"
    assert _n_pct(0, 0) == "0 (–)" and _median_iqr(pd.Series([], dtype=float), 1) == "–"


def test_table1_against_raw(demo, demo_dir):
    c = Cohort.run(demo, {"unit": "admission", "include": [{"type": "has_icu_stay"}]})
    t = c.table1.set_index(["variable", "level"])["value"]
    rows = duckdb.execute(f"""
        SELECT a.hadm_id, {AGE} AS age, p.gender, a.hospital_expire_flag AS died,
               (epoch(a.dischtime) - epoch(a.admittime)) / 86400 AS los
        FROM {raw(demo_dir, 'hosp/admissions')} a JOIN {raw(demo_dir, 'hosp/patients')} p USING (subject_id)
        WHERE a.hadm_id IN (SELECT hadm_id FROM {raw(demo_dir, 'icu/icustays')})""").df()
    n = len(rows)
    assert t[("N (admissions)", "")] == str(n)
    q = rows["age"].quantile([0.25, 0.5, 0.75]).tolist()
    assert t[("Age, years, median [IQR]", "")] == f"{half_up(q[1], 0)} [{half_up(q[0], 0)}–{half_up(q[2], 0)}]"
    f = int((rows["gender"] == "F").sum())
    assert t[("Female, n (%)", "")] == f"{f} ({half_up(100 * f / n, 1)})"
    d = int(rows["died"].sum())
    assert t[("In-hospital mortality, n (%)", "")] == f"{d} ({half_up(100 * d / n, 1)})"
    los = rows["los"].quantile([0.25, 0.5, 0.75]).tolist()
    assert t[("Hospital LOS, days, median [IQR]", "")] == f"{half_up(los[1], 1)} [{half_up(los[0], 1)}–{half_up(los[2], 1)}]"
    race = [k for k in t.index if k[0] == "Race, n (%)" and k[1]]
    assert sum(int(t[k].split(" ")[0]) for k in race) == n


def test_criteria_description_covers_every_type():
    names = {c["name"] for c in CRITERIA}
    assert {"age", "sex", "race", "admission_type", "admission_location", "year_group", "hospital_los",
            "in_hospital_death", "has_icu_stay", "first_icu_stay", "icu_los", "care_unit", "diagnosis",
            "procedure", "lab", "chart", "medication", "sql"} == names
    race = next(c for c in CRITERIA if c["name"] == "race")
    assert race["parameters"][0]["choices"] == ["White", "Black", "Hispanic/Latino", "Asian", "Other", "Unknown"]
    lab = next(c for c in CRITERIA if c["name"] == "lab")
    window = next(p for p in lab["parameters"] if p["name"] == "window")
    assert {f["name"] for f in window["fields"]} == {"anchor", "start_hours", "end_hours"}


@pytest.mark.slow
def test_mimiciii_demo_cohort(data_root, home):
    """MIMIC-III names (icustay_id, dob, ethnicity, icd9_code) come from the family mapping."""
    src = data_root / "mimiciii-demo" / "1.4"
    build("mimiciii-demo", source=src)
    spec = {"unit": "stay", "include": [{"type": "age", "min": 18}, {"type": "diagnosis", "icd9": ["038*", "99591"]},
                                        {"type": "icu_los", "min": 1}]}
    c = Cohort.run(find("mimiciii-demo"), spec)
    r = lambda n: f"read_csv_auto('{src}/{n}.csv', sample_size=-1)"  # noqa: E731
    want = {x[0] for x in duckdb.execute(f"""
        SELECT i.icustay_id FROM {r('ICUSTAYS')} i JOIN {r('ADMISSIONS')} a ON a.hadm_id = i.hadm_id
        JOIN {r('PATIENTS')} p ON p.subject_id = i.subject_id
        WHERE date_diff('year', p.dob, a.admittime) - (strftime(a.admittime, '%m%d') < strftime(p.dob, '%m%d'))::INT >= 18
          AND i.los >= 1
          AND i.hadm_id IN (SELECT hadm_id FROM {r('DIAGNOSES_ICD')} WHERE icd9_code LIKE '038%' OR icd9_code = '99591')
    """).fetchall()}
    assert set(c.ids["icustay_id"]) == want and len(want) > 0
    assert len(c.table1) > 5
    # over 89: dob shifted by deidentification (ages near 300), counted as 91 like MIMIC-IV's anchor_age
    age = ("least(91, date_diff('year', p.dob, a.admittime) "
           "- (strftime(a.admittime, '%m%d') < strftime(p.dob, '%m%d'))::INT)")
    ages = duckdb.execute(f"SELECT a.hadm_id, {age} FROM {r('ADMISSIONS')} a JOIN {r('PATIENTS')} p USING (subject_id)").fetchall()
    assert sum(x == 91 for _, x in ages) > 0
    for lo, hi in ((89, None), (18, 120), (60, 90)):
        want = {h for h, x in ages if x >= lo and (hi is None or x <= hi)}
        crit = {"type": "age", "min": lo} | ({"max": hi} if hi else {})
        got = Cohort.run(find("mimiciii-demo"), {"unit": "admission", "include": [crit]})
        assert set(got.ids["hadm_id"]) == want, crit
    old = Cohort.run(find("mimiciii-demo"), {"unit": "admission", "include": [{"type": "age", "min": 89}]})
    assert old.table1.set_index("variable")["value"]["Age, years, median [IQR]"] == "91 [91–91]"
    with pytest.raises(SpecError, match="ICD-9 only"):
        Cohort.run(find("mimiciii-demo"), {"unit": "admission", "include": [{"type": "diagnosis", "icd10": ["I50*"]}]})


def test_mimiciii_medications_by_calendar_day(data_root, home):
    """MIMIC-III's prescriptions have a start date only (midnight): a drug started on the day of admission
    (or of ICU admission) had fallen "before" the window and was missed (heparin: 69 admissions for 99)."""
    src = data_root / "mimiciii-demo" / "1.4"
    build("mimiciii-demo", source=src)
    r = lambda n: f"read_csv_auto('{src}/{n}.csv', sample_size=-1)"  # noqa: E731
    want = {x[0] for x in duckdb.execute(f"""
        SELECT DISTINCT a.hadm_id FROM {r('PRESCRIPTIONS')} m JOIN {r('ADMISSIONS')} a ON a.subject_id = m.subject_id
        WHERE contains(lower(m.drug), 'heparin')
          AND CAST(m.startdate AS DATE) BETWEEN CAST(a.admittime AS DATE) AND CAST(a.dischtime AS DATE)""").fetchall()}
    got = Cohort.run(find("mimiciii-demo"), {"unit": "admission", "include": [{"type": "medication", "names": ["heparin"]}]})
    assert set(got.ids["hadm_id"]) == want and len(want) == 99
    # a window on the ICU stay: the days from intime's to that of intime + 24 h
    want = {x[0] for x in duckdb.execute(f"""
        SELECT DISTINCT i.icustay_id FROM {r('PRESCRIPTIONS')} m JOIN {r('ICUSTAYS')} i ON i.subject_id = m.subject_id
        WHERE contains(lower(m.drug), 'vancomycin')
          AND CAST(m.startdate AS DATE) BETWEEN CAST(i.intime AS DATE) AND CAST(i.intime + INTERVAL 24 HOUR AS DATE)""").fetchall()}
    got = Cohort.run(find("mimiciii-demo"), {"unit": "stay", "include": [
        {"type": "medication", "names": ["vancomycin"], "window": {"anchor": "icu", "start_hours": 0, "end_hours": 24}}]})
    assert set(got.ids["icustay_id"]) == want and len(want) > 4


@pytest.mark.slow
def test_a_stay_subset_keeps_the_rows_of_no_stay_with_their_admission(data_root, home, tmp_path):
    """MIMIC-III's PRESCRIPTIONS and TRANSFERS carry icustay_id only inside the ICU: a stay cohort's subset
    keeps a row of one of its stays, and a row of no stay of one of its admissions (as MIMIC-IV's hosp
    tables, which have no stay column); a row of another stay, even of the same admission, stays out.
    Before, the 3,352 prescriptions outside the ICU of the cohort's admissions were all left out."""
    from mimiclab.errors import NotBuiltError

    src = data_root / "mimiciii-demo" / "1.4"
    try:
        find("mimiciii-demo")
    except NotBuiltError:
        build("mimiciii-demo", source=src)
    c = Cohort.run(find("mimiciii-demo"), {"unit": "stay", "include": [{"type": "first_icu_stay"}]})
    out = c.subset(tmp_path / "sub")
    con = duckdb.connect()
    con.register("ids", c.ids)
    r = lambda n: f"read_csv('{src}/{n}.csv', header=true, sample_size=-1)"  # noqa: E731
    for table in ("PRESCRIPTIONS", "TRANSFERS"):
        want = con.execute(f"SELECT count(*) FROM {r(table)} t WHERE t.icustay_id IN (SELECT icustay_id FROM ids) OR "
                           f"(t.icustay_id IS NULL AND (t.hadm_id IN (SELECT hadm_id FROM ids) OR "
                           f"(t.hadm_id IS NULL AND t.subject_id IN (SELECT subject_id FROM ids))))").fetchone()[0]
        other = con.execute(f"SELECT count(*) FROM {r(table)} t WHERE t.hadm_id IN (SELECT hadm_id FROM ids) "
                            f"AND t.icustay_id NOT IN (SELECT icustay_id FROM ids)").fetchone()[0]
        n = con.execute(f"SELECT count(*) FROM read_csv('{out / table}.csv.gz', header=true)").fetchone()[0]
        assert n == want > 0, table
        import gzip

        with gzip.open(out / f"{table}.csv.gz", "rt") as f, open(src / f"{table}.csv") as g:
            assert f.readline() == g.readline(), table  # the demo's own (lower-case) header spelling
        if table == "TRANSFERS":
            assert other > 0  # a later ICU stay of a cohort admission: its rows are not the cohort's


@pytest.mark.slow
def test_mimiciii_pickers_use_the_family_names(data_root, home):
    """The same picker code on MIMIC-III: icd9_code and its dictionary, care units, no ICD-10 or year groups."""
    import mimiclab
    from mimiclab.cohort.suggest import suggest_sql

    src = data_root / "mimiciii-demo" / "1.4"
    build("mimiciii-demo", source=src)
    ds = mimiclab.open("mimiciii-demo")
    got = ds.sql(*suggest_sql("mimiciii", "diagnosis", "icd9", "sepsis"))
    r = lambda n: f"read_csv_auto('{src}/{n}.csv', sample_size=-1, all_varchar=true)"  # noqa: E731
    want = duckdb.execute(f"""SELECT d.icd9_code, count(*) FROM {r('DIAGNOSES_ICD')} d JOIN {r('D_ICD_DIAGNOSES')} t
        USING (icd9_code) WHERE t.long_title ILIKE '%sepsis%' GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()
    assert list(zip(got["value"], got["n"], strict=True)) == want and len(want) > 0
    units = ds.sql(*suggest_sql("mimiciii", "care_unit", "values"))
    assert set(units["value"]) == {x[0] for x in duckdb.execute(
        f"SELECT first_careunit FROM {r('ICUSTAYS')} UNION SELECT last_careunit FROM {r('ICUSTAYS')}").fetchall()}
    # each stay counted once per unit it began or ended in (first and last both counted had doubled them)
    want_n = dict(duckdb.execute(f"""SELECT u, count(*) FROM (SELECT icustay_id, first_careunit AS u FROM {r('ICUSTAYS')}
        UNION SELECT icustay_id, last_careunit FROM {r('ICUSTAYS')}) GROUP BY u""").fetchall())
    assert dict(zip(units["value"], units["n"], strict=True)) == want_n
    assert suggest_sql("mimiciii", "diagnosis", "icd10", "") is None
    assert suggest_sql("mimiciii", "year_group", "values", "") is None


# ---------------------------------------------------------------- malformed specs


def _spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_field_names_line_and_suggests(tmp_path):
    from mimiclab.cohort.spec import load

    p = _spec_file(tmp_path, "unit: stay\ninclude:\n  - type: age\n    min: 18\n  - type: icu_los\n    mni: 1\n")
    with pytest.raises(SpecError) as e:
        load(p)
    assert "spec.yaml, line 6 (include[1].mni)" in str(e.value) and "did you mean min" in str(e.value)


def test_wrong_type_and_unknown_criterion_name_lines(tmp_path):
    from mimiclab.cohort.spec import load

    text = ("name: x\nunit: admission\ninclude:\n  - type: lab\n    labels: [Lactate]\n    above: high\n"
            "exclude:\n  - type: diagnoses\n    icd9: ['428*']\n")
    with pytest.raises(SpecError) as e:
        load(_spec_file(tmp_path, text))
    msg = str(e.value)
    assert "line 6 (include[0].above)" in msg and "valid number" in msg
    assert "line 8 (exclude[0])" in msg and "'diagnoses'" in msg
    with pytest.raises(SpecError, match=r"line 1 \(unit\)"):
        load(_spec_file(tmp_path, "unit: ward\n"))


@pytest.mark.parametrize("crit,where", [
    ("type: hospital_los\n    min: 1e305", "line 3 (include[0].hospital_los)"),  # was an OverflowError traceback
    ("type: icu_los\n    max: 1e12\n    unit: hours", "line 3 (include[0].icu_los)"),  # was a database error
    ("type: lab\n    itemids: [50912]\n    above: 1\n    window: {end_hours: 1e306}", "line 6 (include[0].window.end_hours)"),
    ("type: medication\n    names: [heparin]\n    window: {start_hours: -1e300}", "line 5 (include[0].window.start_hours)"),
])
def test_durations_beyond_a_century_are_refused_by_field(demo, tmp_path, crit, where):
    from mimiclab.cohort.spec import load

    p = _spec_file(tmp_path, f"unit: admission\ninclude:\n  - {crit}\n")
    with pytest.raises(SpecError) as e:
        Cohort.run(demo, load(p))
    assert where in str(e.value)
    # a century is still allowed (e.g. "any time before the admission")
    ok = {"unit": "admission", "include": [{"type": "hospital_los", "max": 36600},
                                          {"type": "lab", "itemids": [50912], "above": 0, "window": {"start_hours": -87840}}]}
    assert len(Cohort.run(demo, ok).ids) > 0


def test_invalid_yaml_names_line(tmp_path):
    from mimiclab.cohort.spec import load

    with pytest.raises(SpecError, match=r"spec.yaml, line 3: not valid YAML"):
        load(_spec_file(tmp_path, "unit: stay\nname: x\n  bad: indent\n"))


def test_unknown_itemid_and_label_name_line(demo, tmp_path):
    p = _spec_file(tmp_path, "unit: stay\ninclude:\n  - type: age\n    min: 18\n  - type: lab\n    itemids: [99999999]\n")
    with pytest.raises(SpecError, match=r"spec.yaml, line 5 \(include\[1\]\): unknown lab itemid\(s\) 99999999"):
        Cohort.run(demo, p)
    p = _spec_file(tmp_path, "unit: stay\ninclude:\n  - type: lab\n    labels: [Lactat]\n    above: 2\n")
    with pytest.raises(SpecError, match=r"line 3 .*unknown lab label 'Lactat'.*Did you mean: Lactate"):
        Cohort.run(demo, p)


def test_empty_result_names_the_step(demo, tmp_path):
    p = _spec_file(tmp_path, "unit: admission\ninclude:\n  - type: age\n    min: 18\n"
                             "  - type: hospital_los\n    min: 1000\n  - type: sex\n    value: F\n")
    with pytest.raises(EmptyCohortError) as e:
        Cohort.run(demo, p)
    assert "step 2" in str(e.value) and "line 5" in str(e.value)
    assert e.value.cohort.attrition["n_after"].tolist()[-1] == 0
    empty = Cohort.run(demo, p, allow_empty=True)
    assert len(empty.ids) == 0 and empty.counts[-1] == 0
    # the row that carried the counts is gone before pandas: the columns keep the types a cohort's rows have
    full = Cohort.run(demo, {"unit": "admission", "include": [{"type": "age", "min": 18}]})
    assert len(full.rows) > 0 and empty.rows.dtypes.to_dict() == full.rows.dtypes.to_dict()


def test_counts_and_rows_equal_the_raw_files_for_every_unit(demo, demo_dir):
    """Cohort.run reads the attrition and the Table 1 rows in one statement (the step chain runs once; see
    test_every_query_a_cohort_sends_is_portable). For every unit, each count equals that step's units worked
    out on the raw files, and the rows are the last step's units from the raw files, in order."""
    adults = f"""SELECT a.hadm_id, a.subject_id FROM {raw(demo_dir, 'hosp/admissions')} a
                 JOIN {raw(demo_dir, 'hosp/patients')} p USING (subject_id) WHERE {AGE} >= 18"""
    emergency = f"SELECT hadm_id FROM {raw(demo_dir, 'hosp/admissions')} WHERE admission_type = 'EW EMER.'"
    icu = raw(demo_dir, "icu/icustays")
    steps = {  # unit -> the raw-file SQL of each step's units (all, adults, adults admitted as emergencies)
        "patient": [f"SELECT DISTINCT subject_id FROM {raw(demo_dir, 'hosp/patients')}",
                    f"SELECT DISTINCT subject_id FROM ({adults})",
                    f"SELECT DISTINCT subject_id FROM ({adults}) WHERE hadm_id IN ({emergency})"],
        "admission": [f"SELECT hadm_id FROM {raw(demo_dir, 'hosp/admissions')}", f"SELECT hadm_id FROM ({adults})",
                      f"SELECT hadm_id FROM ({adults}) WHERE hadm_id IN ({emergency})"],
        "stay": [f"SELECT stay_id FROM {icu}", f"SELECT stay_id FROM {icu} WHERE hadm_id IN (SELECT hadm_id FROM ({adults}))",
                 f"SELECT stay_id FROM {icu} WHERE hadm_id IN (SELECT hadm_id FROM ({adults})) AND hadm_id IN ({emergency})"],
    }
    for unit, queries in steps.items():
        c = Cohort.run(demo, {"unit": unit, "include": [{"type": "age", "min": 18},
                                                        {"type": "admission_type", "values": ["EW EMER."]}]})
        want = [duckdb.execute(f"SELECT count(*) FROM ({q})").fetchone()[0] for q in queries]
        assert want[0] >= want[1] > want[2] > 0, want  # the counts are not all alike
        assert c.counts == want, unit
        assert c.attrition["n_after"].tolist() == want
        assert c.ids[KEY[unit]].tolist() == sorted(r[0] for r in duckdb.execute(queries[2]).fetchall())
        assert c.table1["value"].iloc[0] == str(want[2])


def test_failing_sql_escape_hatch_is_located(demo, tmp_path):
    p = _spec_file(tmp_path, "unit: patient\ninclude:\n  - type: sex\n    value: M\n"
                             "  - type: sql\n    query: SELECT subject_id FROM no_such_table\n")
    with pytest.raises(SpecError, match=r"line 5 \(include\[1\]\).*fails"):
        Cohort.run(demo, p)
    # a query without the unit's id column: DuckDB says "table q not found"; the message says what is wanted
    p = _spec_file(tmp_path, "unit: admission\ninclude:\n  - type: sql\n    query: SELECT subject_id FROM mimiciv_hosp.patients\n")
    with pytest.raises(SpecError, match=r"line 3 \(include\[0\]\).*must return a column named hadm_id"):
        Cohort.run(demo, p)


def test_json_spec_equals_yaml(demo, tmp_path):
    y = _spec_file(tmp_path, "unit: admission\ninclude:\n  - {type: in_hospital_death}\n")
    j = _spec_file(tmp_path, '{"unit": "admission", "include": [{"type": "in_hospital_death"}]}', "spec.json")
    assert Cohort.run(demo, y).ids.equals(Cohort.run(demo, j).ids)
