"""The whole product on BigQuery (through tests/fake_bigquery.FakeClient on the demo build): the Python API,
cohorts and the workbench opened with `bigquery://<billing-project>/mimiciv-2.2` give the answers of plain
DuckDB SQL over the raw csv.gz files; every query they send passes the fake's BigQuery checks."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

pytest.importorskip("google.cloud.bigquery", reason="the bigquery extra (in the test extra)")

import mimiclab
from mimiclab.sources.registry import find

from fake_bigquery import FakeClient, views_of

ROOT = Path(__file__).resolve().parents[1]
URL = "bigquery://my-lab-123456/mimiciv-2.2"
SID = 10000032
HF = ROOT / "examples" / "cohorts" / "heart_failure_admissions.yaml"
LOCAL: dict = {}  # the same cohort on the local DuckDB build


@pytest.fixture(autouse=True)
def _no_google(monkeypatch, tmp_path):
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-credentials.json"))


@pytest.fixture(scope="module")
def fake(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("bq-api-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        mimiclab.build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        con = views_of(find("mimic-iv-demo").database)
        local = mimiclab.open("mimic-iv-demo").cohort(str(HF))
        LOCAL["table1"], LOCAL["ids"] = local.table1, local.ids
    # an empty home from here on: nothing local can answer in BigQuery's place
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(tmp_path_factory.mktemp("bq-api-empty-home")))
        yield FakeClient(con, {"mimiciv_2_2_hosp": "mimiciv_hosp", "mimiciv_2_2_icu": "mimiciv_icu"})
    con.close()


@pytest.fixture(scope="module")
def ds(fake):
    return mimiclab.open(URL, client=fake)


def raw(data_root: Path, path: str) -> str:
    return f"read_csv_auto('{data_root / 'mimic-iv-demo' / '2.2' / path}.csv.gz')"


def test_dataset_and_patient(ds, fake, data_root) -> None:
    n = len(fake.calls)
    assert ds.sql("SELECT count(*) AS n FROM mimiciv_hosp.admissions")["n"].tolist() == [275]
    p = ds.patient(SID)
    g, age = duckdb.sql(f"SELECT gender, anchor_age FROM {raw(data_root, 'hosp/patients')} WHERE subject_id = {SID}").fetchall()[0]
    assert (p.demographics["gender"], p.demographics["anchor_age"]) == (g, age)
    adm = duckdb.sql(f"SELECT hadm_id FROM {raw(data_root, 'hosp/admissions')} WHERE subject_id = {SID} "
                     "ORDER BY admittime").fetchall()
    assert p.admissions["hadm_id"].tolist() == [r[0] for r in adm]
    labs = duckdb.sql(f"SELECT count(*) FROM {raw(data_root, 'hosp/labevents')} WHERE subject_id = {SID}").fetchall()[0][0]
    tl = p.timeline()
    assert (tl["source"] == "labevents").sum() == labs > 0
    assert len(fake.calls) > n and all("`physionet-data`." in c.sql or "physionet-data." in c.sql
                                       for c in fake.calls[n:])


def test_distribution(ds, data_root) -> None:
    d = ds.distribution("mimiciv_hosp.admissions", "admission_type")
    want = dict(duckdb.sql(f"SELECT admission_type, count(*) FROM {raw(data_root, 'hosp/admissions')} GROUP BY 1").fetchall())
    got = dict(zip(d.iloc[:, 0], d["count"], strict=False))
    assert got == want
    # a time column: bins over seconds since 1970 (date_diff in seconds, DATETIME_DIFF on BigQuery)
    t = ds.distribution("mimiciv_hosp.admissions", "admittime", bins=12)
    lo, hi = duckdb.sql(f"SELECT min(admittime), max(admittime) FROM {raw(data_root, 'hosp/admissions')}").fetchall()[0]
    assert int(t["count"].sum()) == 275 and len(t) == 12
    assert str(t["bin_start"].min())[:16] == str(lo)[:16] and str(t["bin_end"].max())[:16] == str(hi)[:16]


def test_cohort_attrition_equals_raw(ds, data_root) -> None:
    c = ds.cohort(str(HF))
    adm, pat, dx = raw(data_root, "hosp/admissions"), raw(data_root, "hosp/patients"), raw(data_root, "hosp/diagnoses_icd")
    hf = (f"SELECT DISTINCT hadm_id FROM {dx} WHERE (icd_version = 9 AND (icd_code LIKE '428%' OR icd_code IN "
          f"('40201', '40211', '40291'))) OR (icd_version = 10 AND (icd_code LIKE 'I50%' OR icd_code = 'I110'))")
    n = duckdb.sql(f"SELECT count(*) FROM {adm} a JOIN {pat} p USING (subject_id) WHERE "
                   f"p.anchor_age + year(a.admittime) - p.anchor_year >= 18 AND a.hadm_id IN ({hf}) "
                   "AND a.admission_type NOT IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')").fetchall()[0][0]
    assert c.attrition["n_after"].tolist()[-1] == n > 0
    # ids and Table 1 as the DuckDB path gives them
    assert sorted(map(tuple, c.ids.values.tolist())) == sorted(map(tuple, LOCAL["ids"].values.tolist()))
    assert c.table1.astype(str).values.tolist() == LOCAL["table1"].astype(str).values.tolist()


def test_workbench_serves_bigquery(fake, data_root) -> None:
    from fastapi.testclient import TestClient

    from mimiclab.sources import open_source
    from mimiclab.web.app import create_app

    app = create_app(dataset="mimiciv", sources=[open_source(URL, client=fake)])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        built = {b["slug"]: b for b in client.get("/api/datasets").json()["built"]}
        assert "mimiciv" in built
        s = client.get("/api/datasets/mimiciv/tables/mimiciv_hosp.admissions/stats",
                       params={"column": "admission_type"})
        assert s.status_code == 200, s.text
        want = dict(duckdb.sql(f"SELECT admission_type, count(*) FROM {raw(data_root, 'hosp/admissions')} "
                               "GROUP BY 1").fetchall())
        assert {t["value"]: t["n"] for t in s.json()["top"]} == want
        # the SQL page runs what a user typed, in BigQuery's dialect, under mimic-code's names
        r = client.post("/api/datasets/mimiciv/sql", json={
            "sql": "SELECT first_careunit, COUNT(*) AS n FROM mimiciv_icu.icustays GROUP BY 1 ORDER BY n DESC, 1"})
        assert r.status_code == 200, r.text
        want = duckdb.sql(f"SELECT first_careunit, count(*) AS n FROM {raw(data_root, 'icu/icustays')} "
                          "GROUP BY 1 ORDER BY n DESC, 1").fetchall()
        assert [tuple(x) for x in r.json()["rows"]] == want
        r = client.post("/api/datasets/mimiciv/sql", json={"sql": "DROP TABLE mine.x"})
        assert r.status_code == 400
        r = client.get("/api/datasets/mimiciv/patients/find", params={"subject_id": SID})
        assert r.status_code == 200 and r.json()["subject_id"] == SID
        # every page's data endpoints answer on BigQuery (each sends SQL the fake holds to BigQuery's rules)
        S = "/api/datasets/mimiciv"
        for url, params in [
                (f"{S}/lookups/mimiciv_hosp.d_labitems", {"q": "creatinine"}),
                (f"{S}/patients", {"limit": 3}), (f"{S}/patients/{SID}/record", {}),
                (f"{S}/patients/{SID}/series", {"item": "50912"}), (f"{S}/tables/mimiciv_icu.icustays/stats", {"column": "los"}),
                (f"{S}/tables/mimiciv_hosp.labevents/rows", {"f": ["comments:contains:hemolyz"], "limit": 5}),
                (f"{S}/distribution", {"table": "mimiciv_hosp.patients", "column": "anchor_age", "by": "gender"}),
                (f"{S}/tables/mimiciv_hosp.admissions/export.csv", {})]:
            n = len(fake.calls)
            r = client.get(url, params=params)
            assert r.status_code == 200 and len(fake.calls) > n, (url, r.text[:300])
        spec = {"unit": "admission", "include": [{"type": "age", "min": 18}, {"type": "has_icu_stay"}]}
        r = client.post(f"{S}/cohort/run", json={"spec": spec})
        assert r.status_code == 200, r.text[:300]
        att = [dict(zip(r.json()["attrition"]["columns"], row, strict=True)) for row in r.json()["attrition"]["rows"]]
        want = duckdb.sql(f"SELECT count(DISTINCT hadm_id) FROM {raw(data_root, 'icu/icustays')}").fetchall()[0][0]
        assert att[-1]["n_after"] == want
        assert client.get(f"{S}/dictionary").status_code == 200
        # the workbench's warm-up reads one row of each table: free previews, never a billed full scan
        assert not [c.sql for c in fake.calls if c.sql.startswith("SELECT * FROM") and c.sql.endswith("LIMIT 1")]
        for e in client.get(f"{S}/sql/examples").json()["examples"]:
            r = client.post(f"{S}/sql", json={"sql": e["sql"]})
            assert r.status_code == 200, (e["sql"], r.text[:300])
