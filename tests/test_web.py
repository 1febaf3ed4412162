"""Workbench JSON API and pages through FastAPI's TestClient, checked against plain DuckDB over the raw csv.gz.

The oracle queries read PhysioNet's files directly (read_csv_auto), never mimiclab's build, so a bug in
the build, the API layer or the web layer shows up as a mismatch.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from pathlib import Path

import duckdb
import pytest
import yaml
from fastapi.testclient import TestClient

from mimiclab.load import build
from mimiclab.synth import generate
from mimiclab.web import create_app
from mimiclab.web.core import Limits

SLUG = "mimic-iv-demo"
SYNTH = "mimic-iv-synthetic"  # has chartevents (vitals) and patients without an ICU stay; the demo has neither
LOCAL = "http://127.0.0.1"
WEB = Path(__file__).resolve().parents[1] / "src" / "mimiclab" / "web"


@pytest.fixture(scope="module")
def home(demo_dir, tmp_path_factory):
    """The demo built into a private $MIMICLAB_HOME for this module."""
    h = tmp_path_factory.mktemp("webhome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        build(SLUG, source=demo_dir)
        generate(h / "synth-src", patients=30)
        build(SYNTH, source=h / "synth-src")
        yield h


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(dataset=SLUG), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def raw(demo_dir):
    """Oracle: a DuckDB connection with views straight over the raw csv.gz files."""
    con = duckdb.connect()
    for mod in ("hosp", "icu"):
        for f in (demo_dir / mod).glob("*.csv.gz"):
            name = f.name.removesuffix(".csv.gz")
            con.execute(f"CREATE VIEW {mod}_{name} AS SELECT * FROM read_csv_auto('{f}', header=true, sample_size=-1)")
    return con


def one(raw, sql, params=None):
    return raw.execute(sql, params or []).fetchone()[0]


# ---------------------------------------------------------------------------------------------- datasets
def test_datasets_lists_build_with_not_loaded_table_and_commands_for_the_rest(client, raw):
    d = client.get("/api/datasets").json()
    built = {b["slug"]: b for b in d["built"]}
    demo = built[SLUG]
    assert demo["synthetic"] is False
    assert [t["table"] for t in demo["not_loaded"]] == ["mimiciv_icu.chartevents"]
    assert demo["rows"] >= one(raw, "SELECT count(*) FROM hosp_labevents")
    avail = {a["slug"]: a for a in d["available"]}
    assert SLUG not in avail
    assert avail["mimiciv"]["access"] == "credentialed"
    assert avail["mimiciv"]["commands"] == ["mimiclab download mimiciv", "mimiclab build mimiciv"]
    assert any("physionet.org/settings/credentialing" in s["link"] for s in avail["mimiciv"]["steps"])
    assert avail["mimiciii-demo"]["access"] == "open" and avail["mimiciii-demo"]["steps"] == []


def test_access_check_runs_only_on_request(client, monkeypatch):
    """No network at page load; the button's endpoint calls physionet.check_access (stubbed here)."""
    from mimiclab import physionet
    from mimiclab.physionet.access import AccessStatus

    calls = []
    monkeypatch.setattr(physionet, "check_access",
                        lambda slug, *a, **k: calls.append(slug) or AccessStatus(slug, "3.1", "no-credentials", "run mimiclab login"))
    client.get("/")
    client.get("/api/datasets")
    assert calls == []
    r = client.post("/api/access/mimiciv").json()
    assert calls == ["mimiciv"] and r["state"] == "no-credentials" and r["ok"] is False


# ---------------------------------------------------------------------------------------------- dictionary
def test_dictionary_has_every_catalog_column_with_type_and_description(client):
    from mimiclab import catalog

    d = client.get(f"/api/datasets/{SLUG}/dictionary").json()
    got = {t["table"]: t for m in d["modules"] for t in m["tables"]}
    ds = catalog.get(SLUG)
    for t in ds.tables("2.2"):
        key = f"{ds.db_schema(t.module)}.{t.name}"
        cols = {c["name"]: c for c in got[key]["columns"]}
        assert list(cols) == [c.name for c in t.columns_for("2.2")]
    adm = {c["name"]: c for c in got["mimiciv_hosp.admissions"]["columns"]}
    assert adm["admittime"]["type"] == "TIMESTAMP" and adm["admittime"]["description"]
    assert got["mimiciv_icu.chartevents"]["status"] == "not_loaded"


def test_lookup_searches_labitems_and_icd_titles(client, raw):
    r = client.get(f"/api/datasets/{SLUG}/lookups/mimiciv_hosp.d_labitems", params={"q": "creatinine"}).json()
    ids = {row[r["columns"].index("itemid")] for row in r["rows"]}
    want = {x[0] for x in raw.execute("SELECT itemid FROM hosp_d_labitems WHERE label ILIKE '%creatinine%'").fetchall()}
    assert ids == want and 50912 in ids
    r = client.get(f"/api/datasets/{SLUG}/lookups/mimiciv_hosp.d_icd_diagnoses", params={"q": "sepsis severe", "limit": 500}).json()
    want = one(raw, "SELECT count(*) FROM hosp_d_icd_diagnoses WHERE long_title ILIKE '%sepsis%' AND long_title ILIKE '%severe%'")
    assert len(r["rows"]) == want > 0
    names = [x["name"] for x in client.get(f"/api/datasets/{SLUG}/lookups").json()["lookups"]]
    assert names[:4] == ["d_items", "d_labitems", "d_icd_diagnoses", "d_icd_procedures"]


# ---------------------------------------------------------------------------------------------- table browser
def test_rows_filter_sort_paginate_match_raw(client, raw):
    url = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/rows"
    params = {"f": ["itemid:eq:50912", "valuenum:gt:1.5"], "sort": "valuenum", "desc": "true", "limit": 7, "offset": 3}
    r = client.get(url, params=params).json()
    total = one(raw, "SELECT count(*) FROM hosp_labevents WHERE itemid = 50912 AND valuenum > 1.5")
    assert r["total"] == total > 10
    vals = [row[r["columns"].index("valuenum")] for row in r["rows"]]
    want = [x[0] for x in raw.execute("SELECT valuenum FROM hosp_labevents WHERE itemid = 50912 AND valuenum > 1.5 "
                                      "ORDER BY valuenum DESC LIMIT 7 OFFSET 3").fetchall()]
    assert vals == want
    r = client.get(url, params={"f": ["comments:contains:hemolyz"], "limit": 1}).json()
    assert r["total"] == one(raw, "SELECT count(*) FROM hosp_labevents WHERE comments ILIKE '%hemolyz%'")
    # "≠" is the complement of "=": rows without a value are not the value (a non-programmer's reading)
    adm = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/rows"
    eq = client.get(adm, params={"f": ["discharge_location:eq:HOME"], "limit": 1}).json()["total"]
    ne = client.get(adm, params={"f": ["discharge_location:ne:HOME"], "limit": 1}).json()["total"]
    empty = one(raw, "SELECT count(*) FROM hosp_admissions WHERE discharge_location IS NULL")
    assert eq + ne == one(raw, "SELECT count(*) FROM hosp_admissions") and empty > 0
    assert ne == one(raw, "SELECT count(*) FROM hosp_admissions WHERE discharge_location <> 'HOME'") + empty


@pytest.mark.parametrize("table,sort,key,limit,where", [
    ("mimiciv_hosp.admissions", "admission_type", "hadm_id", 10, None),  # ties, a primary key
    # ties and NULLs: 18,529 rows, 2,129 without a value
    ("mimiciv_hosp.labevents", "valuenum", "labevent_id", 500, ("subject_id", "lt", 10006000)),
    ("mimiciv_hosp.drgcodes", "drg_type", None, 50, None),  # ties, no primary key: every column
])
def test_pages_of_a_sorted_table_hold_every_row_once(client, raw, table, sort, key, limit, where):
    """Paging a column with ties: before, each page was cut from its own order of the ties (admissions by
    admission_type: 84 of 275 rows shown twice, 84 never)."""
    url = f"/api/datasets/{SLUG}/tables/{table}/rows"
    rawt = f"{table.split('.')[0].removeprefix('mimiciv_')}_{table.split('.')[1]}"
    cond = f"WHERE {where[0]} < {where[2]}" if where else ""
    f = [f"{where[0]}:{where[1]}:{where[2]}"] if where else []
    total = one(raw, f"SELECT count(*) FROM {rawt} {cond}")
    seen, values = [], []
    for offset in range(0, total, limit):
        r = client.get(url, params={"f": f, "sort": sort, "limit": limit, "offset": offset, "count": "false"}).json()
        cols = r["columns"]
        seen += [tuple(row) if key is None else row[cols.index(key)] for row in r["rows"]]
        values += [row[cols.index(sort)] for row in r["rows"]]
    assert len(seen) == total > 2 * limit
    if key is not None:  # every row once: the keys are the raw file's
        assert sorted(seen) == sorted(x[0] for x in raw.execute(f"SELECT {key} FROM {rawt} {cond}").fetchall())
    else:  # no key: every row's values, as a multiset
        assert sorted(map(str, seen)) == sorted(map(str, (tuple(x) for x in raw.execute(f"SELECT * FROM {rawt}").fetchall())))
    nonnull = [v for v in values if v is not None]
    assert nonnull == sorted(nonnull) and values[len(nonnull):] == [None] * (len(values) - len(nonnull))
    assert len(set(nonnull)) < len(nonnull)  # there are ties to break


def test_text_filters_and_searches_take_percent_and_underscore_literally(client, raw):
    """contains/starts filters, the table's text search and the lookups' search: `%` and `_` are characters."""
    url = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/count"
    for f, want in (("valueuom:contains:%", "contains(valueuom, '%')"),
                    ("comments:contains:_", "contains(lower(comments), '_')"),
                    ("comments:starts:_", "starts_with(lower(comments), '_')"),
                    ("comments:contains:\\", "contains(comments, '\\')")):
        assert client.get(url, params={"f": f}).json()["total"] == one(raw, f"SELECT count(*) FROM hosp_labevents WHERE {want}"), f
    assert one(raw, "SELECT count(*) FROM hosp_labevents WHERE contains(valueuom, '%')") > 1000
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/rows", params={"q": "_", "limit": 1}).json()
    text = [c for c, t in zip(r["columns"], r["types"], strict=True) if t in ("string", "large_string")]  # text columns
    assert "comments" in text
    assert r["total"] == one(raw, "SELECT count(*) FROM hosp_labevents WHERE "
                                  + " OR ".join(f"contains(CAST({c} AS VARCHAR), '_')" for c in text))
    r = client.get(f"/api/datasets/{SLUG}/lookups/mimiciv_hosp.d_icd_diagnoses", params={"q": "100%", "limit": 500}).json()
    want = one(raw, "SELECT count(*) FROM hosp_d_icd_diagnoses WHERE contains(lower(icd_code), '100%') "
                    "OR contains(lower(long_title), '100%')")
    assert len(r["rows"]) == want and not r["truncated"]


def test_rows_first_then_the_count(client, raw):
    """The table page asks for rows without a count, then for the count: a filter not yet counted has total
    null, /count gives the raw files' count, and after it the rows carry it. Unfiltered, the manifest's."""
    url = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents"
    f = ["itemid:eq:50971", "valuenum:lt:4.4321"]  # a filter no other test counts (the client is shared)
    first = client.get(f"{url}/rows", params={"f": f, "count": "false", "sort": "valuenum"}).json()
    want = one(raw, "SELECT count(*) FROM hosp_labevents WHERE itemid = 50971 AND valuenum < 4.4321")
    assert first["total"] is None and len(first["rows"]) == 50 < want
    assert client.get(f"{url}/count", params={"f": f}).json() == {"table": "mimiciv_hosp.labevents", "total": want}
    assert client.get(f"{url}/rows", params={"f": f, "count": "false", "offset": 5}).json()["total"] == want
    assert client.get(f"{url}/count", params={"f": f, "q": "zzz-no-such-text"}).json()["total"] == 0
    # a last page is its own count: offset + its rows, with no count query
    few = ["itemid:eq:50971", "valuenum:gt:6.0123"]
    n = one(raw, "SELECT count(*) FROM hosp_labevents WHERE itemid = 50971 AND valuenum > 6.0123")
    assert 0 < n < 50
    assert client.get(f"{url}/rows", params={"f": few, "count": "false"}).json()["total"] == n
    assert client.get(f"{url}/rows", params={"f": few, "count": "false", "offset": n - 1}).json()["total"] == n
    past = client.get(f"{url}/rows", params={"f": ["itemid:eq:50971", "valuenum:gt:6.0124"], "count": "false",
                                             "offset": 500}).json()
    assert past["rows"] == [] and past["total"] is None  # an empty page past the end says nothing of the count
    plain = client.get(f"{url}/rows", params={"count": "false", "limit": 1}).json()
    assert plain["total"] == one(raw, "SELECT count(*) FROM hosp_labevents")
    r = client.get(f"{url}/count", params={"f": "no_such_column:eq:1"})
    assert r.status_code == 400 and "no column" in r.json()["error"]


def test_rows_errors_are_messages(client):
    url = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/rows"
    r = client.get(url, params={"f": "subject_id:eq:abc"})
    assert r.status_code == 400 and "not a valid INTEGER" in r.json()["error"]
    r = client.get(url, params={"f": "nosuch:eq:1"})
    assert r.status_code == 400 and "no column 'nosuch'" in r.json()["error"]
    r = client.get(url, params={"f": "subject_id:like:1"})
    assert r.status_code == 400 and "unknown operator" in r.json()["error"]
    r = client.get(url, params={"limit": 100000})
    assert r.status_code == 422 and "limit" in r.json()["error"] and "Traceback" not in r.text
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.nosuch/rows")
    assert r.status_code == 404 and "no table" in r.json()["error"]


def test_not_loaded_table_is_empty_not_an_error(client):
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_icu.chartevents/rows").json()
    assert r["total"] == 0 and r["rows"] == [] and r["status"] == "not_loaded"
    assert "valuenum" in r["columns"]


def test_column_stats_and_csv_export_match_raw(client, raw):
    s = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/stats", params={"column": "admission_type"}).json()
    want = raw.execute("SELECT admission_type, count(*) n FROM hosp_admissions GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()
    assert [(t["value"], t["n"]) for t in s["top"]] == [tuple(x) for x in want]
    s = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_icu.icustays/stats", params={"column": "los"}).json()
    assert s["max"] == pytest.approx(one(raw, "SELECT max(los) FROM icu_icustays"))
    assert s["nulls"] == one(raw, "SELECT count(*) - count(los) FROM icu_icustays")
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/export.csv",
                   params={"f": "admission_type:eq:URGENT", "sort": "admittime"})
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == one(raw, "SELECT count(*) FROM hosp_admissions WHERE admission_type = 'URGENT'")
    assert [x["admittime"] for x in rows] == sorted(x["admittime"] for x in rows)


def test_distinct_counts_below_the_sampling_size_are_exact(client, raw):
    """The stats say `estimated` only above EXACT_MAX_ROWS: below it, distinct was DuckDB's HyperLogLog
    estimate (274 of the demo's 275 admissions) under "estimated": null."""
    for table, column, rawt in (("mimiciv_hosp.admissions", "hadm_id", "hosp_admissions"),
                                ("mimiciv_hosp.labevents", "labevent_id", "hosp_labevents"),
                                ("mimiciv_hosp.labevents", "subject_id", "hosp_labevents"),
                                ("mimiciv_hosp.emar", "charttime", "hosp_emar")):
        s = client.get(f"/api/datasets/{SLUG}/tables/{table}/stats", params={"column": column}).json()
        assert s["distinct"] == one(raw, f"SELECT count(DISTINCT {column}) FROM {rawt}") and s["estimated"] is None


# ---------------------------------------------------------------------------------------------- population
def test_grouped_distribution_keeps_rows_of_a_null_group_outside_the_largest(client, raw):
    """emar by event_txt: NULL is not among the 8 largest groups; its rows were in no series at all."""
    d = client.get(f"/api/datasets/{SLUG}/distribution",
                   params={"table": "mimiciv_hosp.emar", "column": "charttime", "by": "event_txt"}).json()
    nulls = one(raw, "SELECT count(*) FROM hosp_emar WHERE event_txt IS NULL")
    assert nulls > 0 and "(missing)" not in [s["name"] for s in d["series"]]
    assert sum(sum(s["counts"]) for s in d["series"]) == d["rows"] == one(raw, "SELECT count(*) FROM hosp_emar")


def test_distribution_categorical_grouped_matches_raw(client, raw):
    d = client.get(f"/api/datasets/{SLUG}/distribution",
                   params={"table": "mimiciv_hosp.admissions", "column": "admission_type", "by": "insurance"}).json()
    assert d["kind"] == "categorical"
    got = {(s["name"], c): n for s in d["series"] for c, n in zip(d["categories"], s["counts"], strict=True) if n}
    want = {(g or "(missing)", c): n for g, c, n in raw.execute(
        "SELECT insurance, admission_type, count(*) FROM hosp_admissions GROUP BY ALL").fetchall()}
    assert got == want


def test_distribution_numeric_and_temporal_histograms_count_every_value(client, raw):
    d = client.get(f"/api/datasets/{SLUG}/distribution",
                   params={"table": "mimiciv_icu.icustays", "column": "los", "bins": 12}).json()
    assert d["kind"] == "numeric" and len(d["edges"]) == 13
    assert sum(d["series"][0]["counts"]) == one(raw, "SELECT count(los) FROM icu_icustays")
    first_bin = one(raw, f"SELECT count(*) FROM icu_icustays WHERE los >= {d['edges'][0]} AND los < {d['edges'][1]}")
    assert d["series"][0]["counts"][0] == first_bin
    d = client.get(f"/api/datasets/{SLUG}/distribution",
                   params={"table": "mimiciv_hosp.admissions", "column": "admittime"}).json()
    assert d["kind"] == "temporal" and sum(d["series"][0]["counts"]) == 275
    d = client.get(f"/api/datasets/{SLUG}/distribution", params={"table": "mimiciv_icu.chartevents", "column": "valuenum"}).json()
    assert d["kind"] == "empty"


# ---------------------------------------------------------------------------------------------- patients
def test_find_patient_by_each_id(client, raw):
    hadm, sid = raw.execute("SELECT hadm_id, subject_id FROM hosp_admissions ORDER BY hadm_id LIMIT 1").fetchone()
    stay, sid2 = raw.execute("SELECT stay_id, subject_id FROM icu_icustays ORDER BY stay_id LIMIT 1").fetchone()
    assert client.get(f"/api/datasets/{SLUG}/patients/find", params={"hadm_id": hadm}).json()["subject_id"] == sid
    assert client.get(f"/api/datasets/{SLUG}/patients/find", params={"stay_id": stay}).json()["subject_id"] == sid2
    assert client.get(f"/api/datasets/{SLUG}/patients/find", params={"subject_id": sid}).json()["subject_id"] == sid
    r = client.get(f"/api/datasets/{SLUG}/patients/find", params={"subject_id": 1})
    assert r.status_code == 400 and "Nearest existing" in r.json()["error"]
    r = client.get(f"/api/datasets/{SLUG}/patients/find", params={"subject_id": 1, "hadm_id": 2})
    assert r.status_code == 422 and "exactly one" in r.json()["error"]


def test_patient_summary_record_and_series_match_raw(client, raw):
    sid = 10000032
    p = client.get(f"/api/datasets/{SLUG}/patients/{sid}").json()
    assert p["demographics"]["gender"] == one(raw, "SELECT gender FROM hosp_patients WHERE subject_id = ?", [sid])
    assert p["demographics"]["n_admissions"] == one(raw, "SELECT count(*) FROM hosp_admissions WHERE subject_id = ?", [sid])
    kinds = [r[p["stays"]["columns"].index("kind")] for r in p["stays"]["rows"]]
    assert kinds.count("icustay") == one(raw, "SELECT count(*) FROM icu_icustays WHERE subject_id = ?", [sid])
    rec = client.get(f"/api/datasets/{SLUG}/patients/{sid}/record").json()
    assert rec["diagnoses"]["total"] == one(raw, "SELECT count(*) FROM hosp_diagnoses_icd WHERE subject_id = ?", [sid])
    assert "long_title" in rec["diagnoses"]["columns"]
    titles = {r[rec["diagnoses"]["columns"].index("long_title")] for r in rec["diagnoses"]["rows"]}
    assert None not in titles
    assert rec["prescriptions"]["total"] == one(raw, "SELECT count(*) FROM hosp_prescriptions WHERE subject_id = ?", [sid])
    assert rec["microbiology"]["total"] == one(raw, "SELECT count(*) FROM hosp_microbiologyevents WHERE subject_id = ?", [sid])
    assert rec["notes"]["available"] is False and "mimic-iv-note" in rec["notes"]["hint"]
    s = client.get(f"/api/datasets/{SLUG}/patients/{sid}/series", params={"item": "50912"}).json()
    assert s["label"] == "Creatinine"
    vals = [r[s["series"]["columns"].index("value")] for r in s["series"]["rows"]]
    want = [x[0] for x in raw.execute("SELECT valuenum FROM hosp_labevents WHERE subject_id = ? AND itemid = 50912 "
                                      "ORDER BY charttime", [sid]).fetchall()]
    assert vals == want
    by_label = client.get(f"/api/datasets/{SLUG}/patients/{sid}/series", params={"item": "creatinine"}).json()
    assert len(by_label["series"]["rows"]) == len(vals)
    r = client.get(f"/api/datasets/{SLUG}/patients/{sid}/series", params={"item": "no such item"})
    assert r.status_code == 400 and "no item" in r.json()["error"]


@pytest.fixture(scope="module")
def synth_raw(home):
    con = duckdb.connect()
    for mod in ("hosp", "icu"):
        for f in (home / "synth-src" / mod).glob("*.csv.gz"):
            con.execute(f"CREATE VIEW {mod}_{f.name.removesuffix('.csv.gz')} AS "
                        f"SELECT * FROM read_csv_auto('{f}', header=true, sample_size=-1)")
    return con


def test_patient_without_icu_stay(client, synth_raw):
    sid = one(synth_raw, "SELECT min(subject_id) FROM hosp_admissions WHERE subject_id NOT IN (SELECT subject_id FROM icu_icustays)")
    p = client.get(f"/api/datasets/{SYNTH}/patients/{sid}").json()
    assert p["has_icu"] is False and p["demographics"]["n_icustays"] == 0
    assert p["demographics"]["n_admissions"] == one(synth_raw, "SELECT count(*) FROM hosp_admissions WHERE subject_id = ?", [sid])
    rec = client.get(f"/api/datasets/{SYNTH}/patients/{sid}/record").json()
    assert rec["icustays"]["total"] == 0 and rec["icustays"]["rows"] == []


def test_vitals_series_from_chartevents(client, synth_raw):
    sid, n = synth_raw.execute("SELECT subject_id, count(*) n FROM icu_chartevents WHERE itemid = 220045 "
                               "GROUP BY 1 ORDER BY n DESC LIMIT 1").fetchone()
    items = client.get(f"/api/datasets/{SYNTH}/patients/{sid}").json()["items"]
    sources = {r[items["columns"].index("source")] for r in items["rows"]}
    assert {"chartevents", "labevents"} <= sources
    s = client.get(f"/api/datasets/{SYNTH}/patients/{sid}/series", params={"item": "220045"}).json()
    assert s["label"] == "Heart Rate" and len(s["series"]["rows"]) == n


def test_synthetic_build_is_flagged(client):
    built = {b["slug"]: b for b in client.get("/api/datasets").json()["built"]}
    assert built[SYNTH]["synthetic"] is True and built[SLUG]["synthetic"] is False
    assert 'badge synthetic' in client.get(f"/d/{SYNTH}/sql").text


def test_patient_list_orders_by_admissions(client, raw):
    r = client.get(f"/api/datasets/{SLUG}/patients", params={"limit": 3}).json()["patients"]
    want = raw.execute("SELECT subject_id, count(*) n FROM hosp_admissions GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1").fetchone()
    assert (r[0]["subject_id"], r[0]["admissions"]) == tuple(want)


# ---------------------------------------------------------------------------------------------- cohorts
SPEC = {"name": "adult icu", "unit": "admission",
        "include": [{"type": "age", "min": 18}, {"type": "has_icu_stay"}],
        "exclude": [{"type": "in_hospital_death"}]}


def test_cohort_run_attrition_matches_raw(client, raw):
    r = client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": SPEC}).json()
    att = [dict(zip(r["attrition"]["columns"], row, strict=True)) for row in r["attrition"]["rows"]]
    all_adm = one(raw, "SELECT count(*) FROM hosp_admissions")
    adults = one(raw, "SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) "
                      "WHERE p.anchor_age + year(a.admittime) - p.anchor_year >= 18")
    icu = one(raw, "SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) "
                   "WHERE p.anchor_age + year(a.admittime) - p.anchor_year >= 18 "
                   "AND a.hadm_id IN (SELECT hadm_id FROM icu_icustays)")
    alive = one(raw, "SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) "
                     "WHERE p.anchor_age + year(a.admittime) - p.anchor_year >= 18 "
                     "AND a.hadm_id IN (SELECT hadm_id FROM icu_icustays) AND a.hospital_expire_flag = 0")
    assert [a["n_after"] for a in att] == [all_adm, adults, icu, alive]
    assert r["n"] == alive
    assert r["table1"]["rows"][0][-1] in (alive, str(alive))
    assert "hadm_id" in r["sql"]


def test_cohort_pickers_offer_what_the_data_holds(client, raw):
    """Picker values come from the data: categories and ICD codes with their row counts, most frequent first;
    lab items from d_labitems; a parameter without a picker says so."""
    crit = {c["name"]: {p["name"]: p["suggest"] for p in c["parameters"]} for c in client.get("/api/cohort/criteria").json()["criteria"]}
    assert crit["diagnosis"]["icd10"] and crit["lab"]["labels"] and not crit["age"]["min"]
    url = f"/api/datasets/{SLUG}/cohort/suggest"
    got = client.get(url, params={"criterion": "admission_type", "param": "values"}).json()["suggestions"]
    want = raw.execute("SELECT admission_type, count(*) FROM hosp_admissions GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    assert [(x["value"], x["n"]) for x in got] == [(v, n) for v, n in want]
    got = client.get(url, params={"criterion": "diagnosis", "param": "icd10", "q": "hypertens"}).json()["suggestions"]
    assert got and all("hypertens" in x["label"].lower() or x["value"].startswith("HYPERTENS") for x in got)
    for x in got:  # each code's count is its number of diagnosis rows in the raw file
        assert x["n"] == one(raw, "SELECT count(*) FROM hosp_diagnoses_icd WHERE icd_version = 10 AND icd_code = ?", [x["value"]])
    assert [x["n"] for x in got] == sorted((x["n"] for x in got), reverse=True)
    top = raw.execute("SELECT d.icd_code FROM hosp_diagnoses_icd d JOIN hosp_d_icd_diagnoses t USING (icd_code, icd_version) "
                      "WHERE d.icd_version = 10 AND t.long_title ILIKE '%hypertens%' "
                      "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
    assert got[0]["value"] == top
    by_code = client.get(url, params={"criterion": "diagnosis", "param": "icd10", "q": "i1"}).json()["suggestions"]
    assert by_code and all(x["value"].startswith("I1") for x in by_code)
    labs = client.get(url, params={"criterion": "lab", "param": "labels", "q": "creatinine"}).json()["suggestions"]
    creat = next(x for x in labs if x["value"] == "Creatinine")
    ids = [r[0] for r in raw.execute("SELECT itemid FROM hosp_d_labitems WHERE label = 'Creatinine' ORDER BY 1").fetchall()]
    assert creat["label"] == "itemid " + ", ".join(map(str, ids)) and 50912 in ids
    item = client.get(url, params={"criterion": "lab", "param": "itemids", "q": "50912"}).json()["suggestions"]
    assert item[0]["value"] == "50912" and item[0]["label"] == "Creatinine"
    drip = client.get(url, params={"criterion": "medication", "param": "itemids", "q": "norepinephrine"}).json()["suggestions"]
    assert ("221906", "Norepinephrine") in [(x["value"], x["label"]) for x in drip]  # d_items, as inputevents use it
    odd = client.get(url, params={"criterion": "diagnosis", "param": "icd10", "q": "%_'\\"}).json()
    assert odd["supported"] and odd["suggestions"] == []  # LIKE wildcards and quotes are taken literally
    none = client.get(url, params={"criterion": "age", "param": "min"}).json()
    assert none == {"criterion": "age", "param": "min", "supported": False, "suggestions": []}


def test_patient_record_shows_notes_from_a_note_build(demo_dir, tmp_path_factory):
    """With mimic-iv-note built beside the demo, a patient's record holds their notes, text intact (newlines,
    commas, quotes), in time order; before that, it says how to get them."""
    from conftest import write_notes

    h = tmp_path_factory.mktemp("notes-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        build(SLUG, source=demo_dir)
        with TestClient(create_app(dataset=SLUG), base_url=LOCAL) as c:
            before = c.get(f"/api/datasets/{SLUG}/patients/10000032/record").json()["notes"]
            assert not before["available"] and "mimiclab build mimic-iv-note" in before["hint"]
        want = write_notes(h / "note-src")
        res = build("mimic-iv-note", source=h / "note-src")
        assert res.manifest.tables["mimiciv_note.discharge"].rows == 2
        with TestClient(create_app(dataset=SLUG), base_url=LOCAL) as c:
            got = c.get(f"/api/datasets/{SLUG}/patients/10000032/record").json()["notes"]
            other = c.get(f"/api/datasets/{SLUG}/patients/10002428/record").json()["notes"]
    mine = sorted((n for n in want if n["subject_id"] == 10000032), key=lambda n: n["time"])
    assert got["available"] and [(n["time"], n["title"], n["subtitle"], n["text"]) for n in got["notes"]] == \
        [(n["time"], n["title"], n["subtitle"], n["text"]) for n in mine]
    assert other == {"available": True, "notes": [], "hint": None}


def test_big_ids_reach_the_browser_exactly(data_root, tmp_path_factory):
    """OMOP's 64-bit person ids (many negative) exceed what a JavaScript number holds exactly: the API sends
    them as strings, finds and opens patients by them, and says which item tables are not loaded."""
    from mimiclab.cells import JS_SAFE_INT
    from mimiclab.web.core import jsonable

    assert jsonable(JS_SAFE_INT) == JS_SAFE_INT and jsonable(JS_SAFE_INT + 1) == str(JS_SAFE_INT + 1)
    assert jsonable(-JS_SAFE_INT - 1) == str(-JS_SAFE_INT - 1) and jsonable(True) is True
    src = data_root / "mimic-iv-demo-omop" / "0.9"
    h = tmp_path_factory.mktemp("omop-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        build("mimic-iv-demo-omop", source=src)
        with TestClient(create_app(dataset="mimic-iv-demo-omop"), base_url=LOCAL) as c:
            d = "/api/datasets/mimic-iv-demo-omop"
            listed = [p["subject_id"] for p in c.get(f"{d}/patients", params={"limit": 500}).json()["patients"]]
            raw_ids = {r[0] for r in duckdb.execute(
                f"SELECT DISTINCT person_id FROM read_csv('{src}/1_omop_data_csv/visit_occurrence.csv', all_varchar=true)").fetchall()}
            assert set(listed) == raw_ids and any(x.startswith("-") for x in listed)
            neg = next(x for x in listed if x.startswith("-"))
            assert c.get(f"{d}/patients/find", params={"subject_id": neg}).json() == {"subject_id": neg}
            s = c.get(f"{d}/patients/{neg}").json()
            assert s["subject_id"] == neg and s["demographics"]["subject_id"] == neg
            assert s["items_not_loaded"] == ["cdm.measurement", "cdm.observation"]  # files missing from this copy


def test_patient_page_of_a_dataset_without_patient_mapping_explains(data_root, tmp_path_factory):
    h = tmp_path_factory.mktemp("ed-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
        with TestClient(create_app(), base_url=LOCAL) as c:
            r = c.get("/d/mimic-iv-ed-demo/patients", headers={"accept": "text/html"})
    assert r.status_code == 404 and "no patient mapping for mimic-iv-ed-demo" in r.text and "Traceback" not in r.text


def test_cohort_empty_invalid_and_spec_files(client):
    empty = dict(SPEC, include=[{"type": "age", "min": 200}])
    r = client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": empty}).json()
    assert r["n"] == 0 and "empty" in r["empty"] and r["table1"] is None
    r = client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": {"unit": "admission", "include": [{"type": "age", "min": "old"}]}})
    assert r.status_code == 400 and "include[0]" in r.json()["error"]
    y = client.post("/api/cohort/spec.yaml", json={"spec": SPEC})
    assert y.headers["content-disposition"].endswith('adult-icu.yaml"')
    assert yaml.safe_load(y.text)["include"][1]["type"] == "has_icu_stay"
    back = client.post("/api/cohort/parse", json={"text": y.text}).json()["spec"]
    assert back["unit"] == "admission" and [c["type"] for c in back["exclude"]] == ["in_hospital_death"]
    r = client.post("/api/cohort/parse", json={"text": "unit: [unclosed"})
    assert r.status_code == 400 and "YAML" in r.json()["error"]
    crit = client.get("/api/cohort/criteria").json()["criteria"]
    assert {"age", "has_icu_stay", "lab", "diagnosis"} <= {c["name"] for c in crit}


def test_cohort_report_zip(client):
    r = client.post(f"/api/datasets/{SLUG}/cohort/report", json={"spec": SPEC})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "adult-icu-report/report.html" in names and "adult-icu-report/ids.csv" in names


# ---------------------------------------------------------------------------------------------- SQL
def test_sql_runs_and_caps_rows(client, raw):
    r = client.post(f"/api/datasets/{SLUG}/sql", json={
        "sql": "SELECT first_careunit, count(*) AS n FROM mimiciv_icu.icustays GROUP BY 1 ORDER BY n DESC, 1"}).json()
    want = raw.execute("SELECT first_careunit, count(*) AS n FROM icu_icustays GROUP BY 1 ORDER BY n DESC, 1").fetchall()
    assert [tuple(x) for x in r["rows"]] == [tuple(x) for x in want]
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT * FROM mimiciv_hosp.labevents ORDER BY labevent_id",
                                                       "max_rows": 100}).json()
    assert r["row_count"] == 100 and r["truncated"] is True
    first = one(raw, "SELECT min(labevent_id) FROM hosp_labevents")
    assert r["rows"][0][r["columns"].index("labevent_id")] == first
    r = client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": "SELECT hadm_id FROM mimiciv_hosp.admissions"})
    assert len(r.text.strip().splitlines()) == 276
    # an interval and a 128-bit sum as a database prints them, not Arrow's triple nor a float
    q = "SELECT dischtime - admittime AS los, sum(hadm_id) OVER () AS s FROM mimiciv_hosp.admissions WHERE hadm_id = 20044587"
    d = raw.execute("SELECT dischtime - admittime FROM hosp_admissions WHERE hadm_id = 20044587").fetchone()[0]
    los = f"{d.days} days {d.seconds // 3600:02d}:{d.seconds % 3600 // 60:02d}:{d.seconds % 60:02d}"
    assert client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": q}).text.splitlines() == ["los,s", f"{los},20044587"]
    assert client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q}).json()["rows"] == [[los, 20044587]]
    for q in ("DESCRIBE mimiciv_hosp.admissions", "SUMMARIZE mimiciv_icu.icustays", "EXPLAIN SELECT 1",
              "WITH a AS (SELECT 1 AS x) SELECT * FROM a"):
        assert client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q}).status_code == 200, q
    ex = client.get(f"/api/datasets/{SLUG}/sql/examples").json()["examples"]
    for e in ex:  # every shipped example runs on the demo
        assert client.post(f"/api/datasets/{SLUG}/sql", json={"sql": e["sql"]}).status_code == 200, e["title"]


HOSTILE = [
    "ATTACH '/tmp/evil.duckdb' AS evil",
    "COPY (SELECT * FROM mimiciv_hosp.patients) TO '/tmp/leak.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT read_text('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET enable_external_access = true",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP VIEW mimiciv_hosp.admissions",
    "CREATE TABLE t AS SELECT 1",
    "DROP VIEW mimiciv_hosp.admissions",
    "SELECT * INTO t FROM mimiciv_hosp.admissions",
    "CALL pragma_version()",
    "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
    "DELETE FROM mimiciv_hosp.admissions",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_sql_is_refused(client, sql, tmp_path):
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": sql})
    assert r.status_code == 400, r.text
    assert r.json()["error"] and "Traceback" not in r.text
    assert not Path("/tmp/leak.csv").exists() and not Path("/tmp/evil.duckdb").exists()


def test_sandbox_refuses_file_reads_even_past_the_guard(home):
    """The second wall: the store itself, with the statement check bypassed."""
    from mimiclab.errors import QueryError
    from mimiclab.web.core import Workbench

    w = Workbench(SLUG)
    st = w.store(SLUG)
    for q in ("SELECT * FROM read_csv('/etc/passwd')", "COPY (SELECT 1) TO '/tmp/mimiclab-web-leak.csv'",
              "ATTACH '/tmp/mimiclab-web-evil.db' AS x", "SET enable_external_access = true"):
        with pytest.raises(QueryError):
            st.arrow(q)
    assert not Path("/tmp/mimiclab-web-leak.csv").exists()
    w.close()


def test_sql_time_limit_interrupts(home):
    with TestClient(create_app(dataset=SLUG, limits=Limits(sql_seconds=0.5)), base_url=LOCAL) as c:
        r = c.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT count(*) FROM range(100000000000) a"})
        assert r.status_code == 400 and "time limit" in r.json()["error"]
        assert c.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT 42"}).json()["rows"] == [[42]]


def test_sql_errors_are_messages(client):
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT nosuch FROM mimiciv_hosp.admissions"})
    assert r.status_code == 400 and "nosuch" in r.json()["error"]
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": ""})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"nope": 1})
    assert r.status_code == 422


# ---------------------------------------------------------------------------------------------- security
def test_every_response_has_strict_csp(client):
    for path in ("/", f"/d/{SLUG}/sql", "/api/datasets", "/static/app.css", "/nope"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-eval" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_foreign_host_refused_without_token(client):
    r = client.get("/api/datasets", headers={"host": "evil.example:8765"})
    assert r.status_code == 403
    assert client.get("/api/datasets", headers={"host": "localhost:8765"}).status_code == 200


def test_cross_site_post_refused(client):
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT 1"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT 1"}, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403


def test_token_enforced_on_every_request(home):
    app = create_app(dataset=SLUG, token="s3cret-token")
    with TestClient(app, base_url="http://192.168.1.20:8765") as c:
        for path in ("/", "/api/datasets", "/static/app.js", "/vendor/plotly.min.js", "/openapi.json"):
            assert c.get(path).status_code == 401, path
        assert c.get("/api/datasets", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/datasets", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/api/datasets", headers={"x-mimiclab-token": "s3cret-token"}).status_code == 200
        assert c.get("/api/datasets", params={"token": "s3cret-token"}).status_code == 200
        r = c.get("/d/mimic-iv-demo/sql", params={"token": "s3cret-token"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/d/mimic-iv-demo/sql"
        assert "mimiclab_token=s3cret-token" in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
        c.cookies.set("mimiclab_token", "s3cret-token")
        assert c.get("/d/mimic-iv-demo/sql").status_code == 200


def test_serve_generates_token_for_non_loopback_host(monkeypatch, home):
    import uvicorn

    from mimiclab import web

    seen = {}

    def fake_run(self, sockets=None):
        seen["app"] = self.config.app
        seen["addr"] = sockets[0].getsockname()[0]

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    out = []
    web.serve(dataset=SLUG, host="0.0.0.0", port=0, open_browser=False, echo=out.append)
    token = re.search(r"token=([\w-]+)", out[0]).group(1)
    assert len(token) >= 24 and seen["app"].state.token == token and seen["addr"] == "0.0.0.0"
    assert "needs the token" in out[1]


def test_serve_on_a_port_in_use_is_a_clear_error_not_a_crash(home):
    """uvicorn exits without the app's shutdown when it cannot bind; the databases opened at startup are
    closed anyway, so the command ends with its message and exit code 1 (not an abort from DuckDB)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mimiclab", "serve", "--dataset", SLUG, "--port", str(port),
                            "--no-browser"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MIMICLAB_HOME=str(home)))
    assert r.returncode == 1, (r.returncode, r.stderr[-500:])
    assert f"could not start on 127.0.0.1:{port}" in r.stdout + r.stderr
    assert "terminate called" not in r.stderr


def test_assets_are_local(client):
    """No page, script or stylesheet of ours refers to another host; plotly.js is served from the package.

    The vendored plotly bundle contains the (hidden: displaylogo false) plotly.com logo link, and the CSP
    would block any request it made; it is checked by the browser test's request log instead."""
    for f in list((WEB / "static").rglob("*")) + list((WEB / "templates").rglob("*")):
        if f.is_file() and f.suffix in (".js", ".css", ".html", ".svg") and "vendor" not in f.parts:
            text = f.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), f
            assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), f
            assert "cdn" not in text.lower(), f
    r = client.get("/vendor/plotly.min.js", headers={"accept-encoding": "gzip"})
    raw = (WEB / "static" / "vendor" / "plotly-basic.min.js").read_bytes()
    assert r.status_code == 200 and r.content == raw
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        r = client.get(f"/static/vendor/{name}")
        assert r.status_code == 200 and r.content == (WEB / "static" / "vendor" / name).read_bytes()
    assert "/static/vendor/uPlot.iife.min.js" in client.get(f"/d/{SLUG}/patients").text
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN
    assert "/api/datasets/{slug}/sql" in client.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------------------------------------- pages
PAGES = ["/", f"/d/{SLUG}/dictionary", f"/d/{SLUG}/tables/mimiciv_hosp.admissions", f"/d/{SLUG}/patients",
         f"/d/{SLUG}/population", f"/d/{SLUG}/cohort", f"/d/{SLUG}/sql", "/apidocs"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_with_nav(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'class="mainnav"' in r.text and f'data-slug="{SLUG}"' in r.text
    assert "<script>" not in r.text  # no inline script: the CSP forbids it


def test_not_built_dataset_page_explains_command(client):
    r = client.get("/d/mimiciv/patients", headers={"accept": "text/html"})
    assert r.status_code == 404 and "Not built yet" in r.text and "mimiclab build mimiciv" in r.text
    r = client.get("/d/mimiciii-demo/sql")
    assert r.status_code == 404 and "mimiclab demo" in r.text
    r = client.get("/d/no-such-dataset/sql")
    assert r.status_code == 404 and "unknown dataset" in r.text
    assert client.get("/api/datasets/mimiciv/tables").json()["kind"] == "NotBuiltError"


def test_empty_home_when_nothing_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    with TestClient(create_app(), base_url=LOCAL) as c:
        d = c.get("/api/datasets").json()
        assert d["built"] == [] and d["default"] is None
        assert len(d["available"]) >= 10
        r = c.get("/")
        assert r.status_code == 200 and 'class="disabled"' in r.text
        assert c.get("/sql", follow_redirects=False).headers["location"] == "/"


def test_cohort_subset_zip_holds_only_cohort_rows(client, raw):
    """Also proves the sandboxed store does not lock the unsandboxed one the export writes with."""
    import gzip

    spec = {"name": "old", "unit": "admission", "include": [{"type": "age", "min": 80}]}
    r = client.post(f"/api/datasets/{SLUG}/cohort/subset", json={"spec": spec})
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    adm = [n for n in z.namelist() if n.endswith("hosp/admissions.csv.gz")]
    assert adm and "old-subset/SHA256SUMS.txt" in z.namelist()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(z.read(adm[0])).decode())))
    want = one(raw, "SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) "
                    "WHERE p.anchor_age + year(a.admittime) - p.anchor_year >= 80")
    assert len(rows) == want > 0
    # whole patients (the page's checkbox): every admission of the patients with one such admission
    r = client.post(f"/api/datasets/{SLUG}/cohort/subset?whole_patients=true", json={"spec": spec})
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(z.read(adm[0])).decode())))
    whole = one(raw, "SELECT count(*) FROM hosp_admissions WHERE subject_id IN (SELECT a.subject_id FROM hosp_admissions a "
                     "JOIN hosp_patients p USING (subject_id) WHERE p.anchor_age + year(a.admittime) - p.anchor_year >= 80)")
    assert len(rows) == whole > want


def test_a_filtered_count_is_remembered_per_filter_and_build(tmp_path, monkeypatch):
    """Paging or sorting a filtered table reuses its count (at full scale a second scan of labevents: 95 of
    320 ms), a new filter counts again, and after a rebuild the count is the new data's, not the old one."""
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    generate(src, patients=30, seed=1)
    build(SYNTH, source=src)
    labs = f"read_csv_auto('{src / 'hosp' / 'labevents.csv.gz'}')"
    item = duckdb.execute(f"SELECT itemid FROM {labs} GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    url = f"/api/datasets/{SYNTH}/tables/mimiciv_hosp.labevents/rows"

    def raw_count(itemid: int) -> int:
        return duckdb.execute(f"SELECT count(*) FROM {labs} WHERE itemid = ?", [itemid]).fetchone()[0]

    with TestClient(create_app(dataset=SYNTH), base_url=LOCAL) as c:
        w = c.app.state.workbench
        counted: list[str] = []

        def spy_store():
            st = w.store(SYNTH)
            if not hasattr(st, "_spied"):
                inner = st.scalar
                st.scalar = lambda q, *a, **k: (counted.append(q), inner(q, *a, **k))[1]
                st._spied = True

        spy_store()
        first = c.get(url, params={"f": f"itemid:eq:{item}", "sort": "valuenum", "desc": "true"}).json()
        assert first["total"] == raw_count(item) > 50
        assert len(counted) == 1
        again = c.get(url, params={"f": f"itemid:eq:{item}", "sort": "charttime", "offset": 50}).json()
        assert again["total"] == first["total"] and len(counted) == 1  # remembered: no second count
        assert again["rows"] != first["rows"]
        other = duckdb.execute(f"SELECT itemid FROM {labs} WHERE itemid <> ? LIMIT 1", [item]).fetchone()[0]
        assert c.get(url, params={"f": f"itemid:eq:{other}"}).json()["total"] == raw_count(other)
        assert len(counted) == 2  # a new filter is counted
        # a rebuild from other data while the workbench runs: its count, not the remembered one
        old = w.store(SYNTH)
        assert any(k[0] == id(old) for k in w._remembered)
        generate(src, patients=12, seed=2)
        build(SYNTH, source=src, force=True)
        time.sleep(1.1)  # the workbench re-reads manifests at most once a second
        spy_store()
        now = c.get(url, params={"f": f"itemid:eq:{item}", "sort": "valuenum", "desc": "true"}).json()
        assert now["total"] == raw_count(item) != first["total"]
        assert len(counted) == 3
        assert not any(k[0] == id(old) for k in w._remembered)  # the old build's entries went with its store


class _Store:  # stands in for a build's store in Workbench.remembered's tests
    pass


def test_remembered_computes_once_forgets_failures_replaced_stores_and_old_entries(monkeypatch):
    import threading

    from mimiclab.web import core

    w = core.Workbench()
    st = _Store()
    w._stores[("x", "1", "t0")] = st
    calls: list[int] = []
    gate = threading.Event()

    def slow() -> int:
        calls.append(1)
        gate.wait(5)
        return 7

    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(w.remembered(st, ("k",), slow))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert got == [7, 7, 7] and len(calls) == 1  # one computation for three askers at once
    assert w.recall(st, ("k",)) == 7 and w.recall(st, ("other",)) is None
    with pytest.raises(ZeroDivisionError):
        w.remembered(st, ("bad",), lambda: 1 // 0)
    assert w.remembered(st, ("bad",), lambda: 3) == 3  # a failure was not remembered
    nan = float("nan")
    assert w.remembered(st, ("count", nan), lambda: 5) == 5
    assert w.remembered(st, ("count", float("nan")), lambda: 6) == 5  # nan filters are one key, not new ones
    # a store replaced by a newer build: its entries go, and a computation finishing after that is not kept
    w._stores.clear()
    assert w.remembered(st, ("late",), lambda: 1) == 1 and w.recall(st, ("late",)) is None
    # entries expire (a server's tables can be republished under the same store)
    w._stores[("x", "1", "t0")] = st
    w.remembered(st, ("old",), lambda: 1)
    monkeypatch.setattr(core, "REMEMBER_SECONDS", 0.0)
    assert w.recall(st, ("old",)) is None and w.remembered(st, ("old",), lambda: 2) == 2


def test_a_store_replaced_by_a_rebuild_serves_its_running_requests_then_closes(tmp_path, monkeypatch, demo_dir):
    """A rebuild opens a new store; the old one had been closed at once, failing a request still reading it
    (a CSV export, a table page) with 'Connection already closed'. It is closed after the longest time limit."""
    import time as _time

    from mimiclab.web import core

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    build(SLUG, source=demo_dir, tables=["hosp/admissions"])
    w = core.Workbench(dataset=SLUG)
    try:
        old = w.store(SLUG)
        _time.sleep(1.1)  # a build's time is kept to the second
        build(SLUG, source=demo_dir, tables=["hosp/admissions"], force=True)
        w._builds_checked = 0.0  # look at the builds again now, not within the second
        new = w.store(SLUG)
        assert new is not old
        want = duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{demo_dir}/hosp/admissions.csv.gz')").fetchone()[0]
        assert old.scalar("SELECT count(*) FROM mimiciv_hosp.admissions") == want  # a request begun before
        monkeypatch.setattr(core, "RETIRE_AFTER", -1e9)  # its grace is over
        assert w.store(SLUG) is new
        with pytest.raises(Exception):  # noqa: B017 - closed: whichever error the driver gives
            old.scalar("SELECT 1")
        assert new.scalar("SELECT count(*) FROM mimiciv_hosp.admissions") == want
    finally:
        w.close()


def test_sql_page_resolves_unqualified_names_without_a_linked_build(client, raw):
    """mimic-code's SQL names tables unqualified (MIMIC-III always): the SQL page had answered "Table with
    name admissions does not exist" unless a linked build (the ED module) happened to be beside the core."""
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT count(*) AS n FROM admissions"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[raw.execute("SELECT count(*) FROM hosp_admissions").fetchone()[0]]]


def test_contains_on_a_double_column_reads_it_as_the_file_writes_it(client, demo_dir):
    """DuckDB spells 15 as "15.0": `contains .0` matched every whole number (50,277 rows, not 1,336)."""
    f = demo_dir / "hosp" / "labevents.csv.gz"
    for needle in (".0", "15", ".5"):
        want = duckdb.execute(f"SELECT count(*) FROM read_csv('{f}', all_varchar=true, header=true) "
                              f"WHERE contains(valuenum, '{needle}')").fetchone()[0]
        got = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/count",
                         params={"f": f"valuenum:contains:{needle}"}).json()["total"]
        assert got == want > 0, needle
