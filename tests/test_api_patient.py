"""Patient views and timelines on the three demo families (and synthetic chartevents), checked against
plain DuckDB SQL over the raw csv files; plus the `mimiclab patient` command."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from test_api_dataset import api_home, q, raw
from typer.testing import CliRunner

import mimiclab
from mimiclab.api import UnknownNameError

# the API fetches point lookups with execute() + Arrow on purpose (see Dataset.fetch)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")

SID = 10000032  # a demo patient with labs, ICU stay, prescriptions, microbiology


@pytest.fixture(scope="module")
def home(tmp_path_factory, data_root):
    with pytest.MonkeyPatch.context() as mp:
        yield api_home(tmp_path_factory, data_root, mp)


@pytest.fixture(scope="module")
def p4(home):
    return mimiclab.open("mimic-iv-demo").patient(SID)


def counts_by(path, col, sid, key="subject_id") -> int:
    return q(f"SELECT count(*) FROM {raw(path)} WHERE {key} = ?", [sid])[0][0] if col is None else \
        q(f"SELECT count({col}) FROM {raw(path)} WHERE {key} = ?", [sid])[0][0]


def test_demographics_and_frames(p4, demo_dir):
    g, age, dod = q(f"SELECT gender, anchor_age, dod FROM {raw(demo_dir / 'hosp/patients.csv.gz')} WHERE subject_id = ?", [SID])[0]
    d = p4.demographics
    assert (d["gender"], d["anchor_age"], d["dod"]) == (g, age, dod)
    adm = q(f"SELECT hadm_id FROM {raw(demo_dir / 'hosp/admissions.csv.gz')} WHERE subject_id = ? ORDER BY admittime", [SID])
    assert p4.admissions["hadm_id"].tolist() == [r[0] for r in adm]
    assert d["n_admissions"] == len(adm)
    stays = q(f"SELECT stay_id FROM {raw(demo_dir / 'icu/icustays.csv.gz')} WHERE subject_id = ? ORDER BY intime", [SID])
    assert p4.icustays["stay_id"].tolist() == [r[0] for r in stays] and d["n_icustays"] == len(stays)


def test_diagnoses_carry_icd_titles(p4, demo_dir):
    want = q(f"SELECT d.hadm_id, d.seq_num, t.long_title FROM {raw(demo_dir / 'hosp/diagnoses_icd.csv.gz')} d "
             f"LEFT JOIN read_csv('{demo_dir / 'hosp/d_icd_diagnoses.csv.gz'}', all_varchar=true) t "
             f"ON t.icd_code = d.icd_code::VARCHAR AND t.icd_version = d.icd_version::VARCHAR "
             f"WHERE d.subject_id = ? ORDER BY 1, 2", [SID])
    got = p4.diagnoses
    assert list(zip(got["hadm_id"], got["seq_num"], got["long_title"], strict=True)) == want
    assert got["long_title"].notna().all()


def test_timeline_has_every_event_in_time_order(p4, demo_dir):
    tl = p4.timeline()
    per = tl["source"].value_counts().to_dict()
    files = {"labevents": "hosp/labevents", "prescriptions": "hosp/prescriptions", "emar": "hosp/emar",
             "transfers": "hosp/transfers", "services": "hosp/services", "microbiologyevents": "hosp/microbiologyevents",
             "inputevents": "icu/inputevents", "outputevents": "icu/outputevents",
             "procedureevents": "icu/procedureevents", "datetimeevents": "icu/datetimeevents"}
    for src, f in files.items():
        assert per.get(src, 0) == counts_by(demo_dir / f"{f}.csv.gz", None, SID), src
    assert len(tl) == sum(per.values())
    t = tl["time"].dropna()
    assert t.is_monotonic_increasing and len(t) == len(tl)
    assert list(tl.columns) == ["time", "endtime", "source", "label", "value", "valuenum", "unit",
                                "subject_id", "hadm_id", "stay_id", "itemid"]
    assert (tl["subject_id"] == SID).all()


def test_timeline_labels_come_from_the_dictionaries(p4, demo_dir):
    labs = p4.timeline(sources="labevents")
    want = q(f"SELECT l.itemid, d.label, count(*) FROM {raw(demo_dir / 'hosp/labevents.csv.gz')} l "
             f"JOIN {raw(demo_dir / 'hosp/d_labitems.csv.gz')} d USING (itemid) WHERE l.subject_id = ? GROUP BY 1, 2 ORDER BY 1", [SID])
    got = labs.groupby(["itemid", "label"]).size().reset_index().sort_values("itemid")
    assert [tuple(r) for r in got.itertuples(index=False)] == [(int(a), b, c) for a, b, c in want]
    window = p4.timeline(sources=["labevents"], start="2180-06-01", end="2180-07-01")
    assert len(window) == q(f"SELECT count(*) FROM {raw(demo_dir / 'hosp/labevents.csv.gz')} WHERE subject_id = ? "
                            f"AND charttime BETWEEN '2180-06-01' AND '2180-07-01'", [SID])[0][0]
    with pytest.raises(UnknownNameError, match="labevents"):
        p4.timeline(sources="labevent")


def test_items_and_item_series(p4, demo_dir):
    items = p4.items()
    top = items.iloc[0]
    n = q(f"SELECT count(*), count(valuenum) FROM {raw(demo_dir / 'hosp/labevents.csv.gz')} WHERE subject_id = ? AND itemid = ?",
          [SID, int(top["itemid"])])[0]
    assert (top["count"], top["numeric"]) == n
    by_id = p4.item_series(50912)  # creatinine
    want = q(f"SELECT charttime, valuenum FROM {raw(demo_dir / 'hosp/labevents.csv.gz')} WHERE subject_id = ? AND itemid = 50912 "
             f"ORDER BY charttime", [SID])
    assert [v for v in by_id["value"]] == [w[1] for w in want]
    by_label = p4.item_series("creatinine")
    assert by_label["value"].tolist() == by_id["value"].tolist()
    with pytest.raises(UnknownNameError, match="Creatinine"):
        p4.item_series("Creatinin")


def test_item_and_stay_plots(p4, demo_dir, tmp_path):
    fig = p4.plot_item(50912, path=tmp_path / "creat.png")
    want = q(f"SELECT count(valuenum) FROM {raw(demo_dir / 'hosp/labevents.csv.gz')} WHERE subject_id = ? AND itemid = 50912", [SID])[0][0]
    assert sum(len(tr.y) for tr in fig.data) == want > 0
    assert (tmp_path / "creat.png").read_bytes()[:4] == b"\x89PNG"
    stays = p4.plot_stays(path=tmp_path / "stays.html")
    n = sum(counts_by(demo_dir / f, None, SID) for f in ("hosp/admissions.csv.gz", "icu/icustays.csv.gz"))
    n += q(f"SELECT count(*) FROM {raw(demo_dir / 'hosp/transfers.csv.gz')} WHERE subject_id = ? AND intime IS NOT NULL", [SID])[0][0]
    assert sum(len(tr.y) for tr in stays.data) == n
    assert (tmp_path / "stays.html").stat().st_size > 1_000_000
    p4.plot_stays(path=tmp_path / "stays.png")
    assert (tmp_path / "stays.png").stat().st_size > 1000


def test_mimic_iii_patient(home, data_root):
    src = data_root / "mimiciii-demo" / "1.4"
    ds = mimiclab.open("mimiciii-demo")
    sid, stays = q(f"SELECT subject_id, count(*) n FROM {raw(src / 'ICUSTAYS.csv')} GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1")[0]
    p = ds.patient(sid)
    age_sql = (f"SELECT least(91, min(date_diff('year', p.dob, a.admittime) - (strftime(a.admittime, '%m%d') "
               f"< strftime(p.dob, '%m%d'))::INT)) FROM {raw(src / 'PATIENTS.csv')} p "
               f"JOIN {raw(src / 'ADMISSIONS.csv')} a USING (subject_id) WHERE subject_id = ? GROUP BY p.dob")
    assert p.demographics["age_at_first_admission"] == q(age_sql, [sid])[0][0]
    # over 89 at the first admission: dob shifted by deidentification (an age near 300), shown as 91
    old = q(f"SELECT p.subject_id FROM {raw(src / 'PATIENTS.csv')} p JOIN {raw(src / 'ADMISSIONS.csv')} a "
            "USING (subject_id) GROUP BY p.subject_id, p.dob HAVING min(date_diff('year', p.dob, a.admittime)) > 200 "
            "ORDER BY 1 LIMIT 1")[0][0]
    assert ds.patient(old).demographics["age_at_first_admission"] == q(age_sql, [old])[0][0] == 91
    assert p.demographics["n_icustays"] == stays == len(p.icustays)
    assert "icustay_id" in p.icustays.columns
    tl = p.timeline()
    for src_name, f in (("prescriptions", "PRESCRIPTIONS"), ("outputevents", "OUTPUTEVENTS"), ("transfers", "TRANSFERS")):
        assert (tl["source"] == src_name).sum() == counts_by(src / f"{f}.csv", None, sid), src_name
    ie = tl[tl["source"] == "outputevents"]
    want = {r[0] for r in q(f"SELECT DISTINCT icustay_id FROM {raw(src / 'OUTPUTEVENTS.csv')} WHERE subject_id = ? "
                             f"AND icustay_id IS NOT NULL", [sid])}
    assert set(ie["stay_id"].dropna().astype(int)) == want  # icustay_id arrives as stay_id
    titles = q(f"SELECT count(*) FROM {raw(src / 'DIAGNOSES_ICD.csv')} d JOIN {raw(src / 'D_ICD_DIAGNOSES.csv')} t "
               f"ON t.icd9_code::VARCHAR = d.icd9_code::VARCHAR WHERE d.subject_id = ?", [sid])[0][0]
    assert p.diagnoses["long_title"].notna().sum() == titles


def test_omop_patient(home, data_root):
    src = data_root / "mimic-iv-demo-omop" / "0.9" / "1_omop_data_csv"
    ds = mimiclab.open("mimic-iv-demo-omop")
    pid, n_cond = q(f"SELECT person_id, count(*) n FROM {raw(src / 'condition_occurrence.csv')} GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1")[0]
    p = ds.patient(pid)
    assert p.subject_id == pid  # 64-bit ids survive exactly
    tl = p.timeline()
    assert (tl["source"] == "condition_occurrence").sum() == n_cond == len(p.diagnoses)
    n_drug = counts_by(src / "drug_exposure.csv", None, pid, key="person_id")
    assert (tl["source"] == "drug_exposure").sum() == n_drug
    visits = q(f"SELECT visit_occurrence_id FROM {raw(src / 'visit_occurrence.csv')} WHERE person_id = ? "
               "ORDER BY visit_start_datetime, 1", [pid])
    assert set(p.admissions["visit_occurrence_id"]) <= {v[0] for v in visits}
    assert ds.find_patient(hadm_id=visits[0][0]) == pid
    assert p.demographics["gender"] in ("M", "F", "MALE", "FEMALE")


def test_omop_admissions_and_icu_stays_are_mimic_ivs(home, data_root):
    """The OMOP demo holds the MIMIC-IV demo's 100 patients: each has as many hospital admissions as in
    MIMIC-IV (lab-only pseudo visits are not admissions: 852 had been counted for 275) and an ICU stay
    exactly when MIMIC-IV has one (Trauma SICU was not an ICU: 9 patients had none)."""
    src = data_root / "mimic-iv-demo-omop" / "0.9" / "1_omop_data_csv"
    iv = data_root / "mimic-iv-demo" / "2.2"
    ds = mimiclab.open("mimic-iv-demo-omop")
    persons = q(f"SELECT person_id, CAST(person_source_value AS BIGINT) FROM {raw(src / 'person.csv')}")
    adm = dict(q(f"SELECT subject_id, count(*) FROM {raw(iv / 'hosp/admissions.csv.gz')} GROUP BY 1"))
    icu = {r[0] for r in q(f"SELECT DISTINCT subject_id FROM {raw(iv / 'icu/icustays.csv.gz')}")}
    assert len(persons) == 100
    for pid, sid in persons:
        d = ds.patient(pid).demographics
        assert (d["n_admissions"], d["n_icustays"] > 0) == (adm.get(sid, 0), sid in icu), sid
    assert sum(adm.values()) == 275


@pytest.mark.slow
def test_synthetic_chartevents_in_the_timeline(tmp_path, home):
    from mimiclab import synth

    src = tmp_path / "synth"
    synth.generate(src, patients=12, seed=3)
    ds = mimiclab.open(src)
    assert ds.synthetic
    sid = q(f"SELECT subject_id FROM {raw(src / 'icu/chartevents.csv.gz')} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]
    p = ds.patient(sid)
    ce = p.timeline(sources="chartevents")
    assert len(ce) == counts_by(src / "icu/chartevents.csv.gz", None, sid) > 0
    assert ce["stay_id"].notna().all() and ce["label"].notna().all()
    item = int(ce["itemid"].mode()[0])
    series = p.item_series(item)
    assert len(series) == q(f"SELECT count(*) FROM {raw(src / 'icu/chartevents.csv.gz')} WHERE subject_id = ? AND itemid = ?",
                            [sid, item])[0][0]


def test_cli_patient(home, demo_dir):
    from mimiclab.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["patient", "mimic-iv-demo", str(SID), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["admissions"]) == counts_by(demo_dir / "hosp/admissions.csv.gz", None, SID)
    res = runner.invoke(app, ["patient", "mimic-iv-demo", str(SID), "--timeline", "--format", "csv"])
    assert res.exit_code == 0
    from io import StringIO

    tl = pd.read_csv(StringIO(res.stdout))
    assert len(tl) == len(mimiclab.open("mimic-iv-demo").patient(SID).timeline())
    res = runner.invoke(app, ["patient", "mimic-iv-demo", str(SID)])
    assert res.exit_code == 0 and "admissions" in res.stdout
    bad = runner.invoke(app, ["patient", "mimic-iv-demo", "10000033"])
    assert bad.exit_code == 1 and "10000032" in bad.output
    missing = runner.invoke(app, ["patient", "mimiciv", "1"])
    assert missing.exit_code == 1 and "mimiclab build mimiciv" in missing.output.replace("\n", " ")



def test_a_patients_lookups_warn_about_nothing(home):
    """A notebook shows warnings: a patient's lookups (DuckDB 2 warns about an extra Arrow copy on each
    execute() result, which the API takes on purpose) raise none, in a fresh process where every UserWarning
    is an error; the API's filter is its own module's, so the user's own execute() still warns."""
    import subprocess
    import sys

    code = ("import duckdb, warnings, mimiclab\n"
            "ds = mimiclab.open('mimic-iv-demo')\n"
            "p = ds.patient(10000032)\n"
            "p.demographics, p.admissions, p.timeline(), p.items(), p.stays()\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    duckdb.connect().execute('SELECT 1').to_arrow_table()\n"
            "print(len(seen))\n")
    r = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                       env={**os.environ, "MIMICLAB_HOME": str(home)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1"  # the user's own call: DuckDB's warning reaches them
