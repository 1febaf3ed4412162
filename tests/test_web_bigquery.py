"""The workbench over BigQuery, without network: the BigQuery store talks to tests/fake_bigquery.FakeClient
(which holds the SQL to BigQuery's rules and runs it on the demo), checked against DuckDB over the raw csv.gz."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_bigquery import _no_google, demo_con  # noqa: F401 - no Google; the demo under mimic-code's names
from test_web import LOCAL, one, raw  # noqa: F401

from mimiclab.web import create_app

from fake_bigquery import FakeClient

SLUG = "mimiciv"  # PhysioNet's BigQuery holds the full dataset; the fake serves the demo's rows under its names
URL = "bigquery://my-lab-123456/mimiciv-2.2"


@pytest.fixture()
def client(demo_con, tmp_path, monkeypatch):  # noqa: F811
    from mimiclab.sources import open_source

    fake = FakeClient(demo_con.cursor(), {"mimiciv_2_2_hosp": "mimiciv_hosp", "mimiciv_2_2_icu": "mimiciv_icu"})
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    src = open_source(URL, client=fake)
    with TestClient(create_app(sources=[src]), base_url=LOCAL) as c:
        c.fake = fake
        yield c


def test_workbench_serves_bigquery(client, raw):  # noqa: F811
    d = f"/api/datasets/{SLUG}"
    assert [b["slug"] for b in client.get("/api/datasets").json()["built"]] == [SLUG]
    r = client.get(f"{d}/tables/mimiciv_hosp.labevents/rows",
                   params={"f": ["itemid:eq:50912", "valuenum:gt:1.5"], "sort": "valuenum", "desc": "true", "limit": 7})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["total"] == one(raw, "SELECT count(*) FROM hosp_labevents WHERE itemid = 50912 AND valuenum > 1.5")
    s = client.get(f"{d}/tables/mimiciv_hosp.admissions/stats", params={"column": "admission_type"})
    assert s.status_code == 200, s.text[:300]
    want = raw.execute("SELECT admission_type, count(*) n FROM hosp_admissions GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()
    assert [(t["value"], t["n"]) for t in s.json()["top"]] == [tuple(x) for x in want]
    lk = client.get(f"{d}/lookups/mimiciv_hosp.d_labitems", params={"q": "creatinine"})
    assert lk.status_code == 200, lk.text[:300]
    ids = {row[lk.json()["columns"].index("itemid")] for row in lk.json()["rows"]}
    assert ids == {x[0] for x in raw.execute("SELECT itemid FROM hosp_d_labitems WHERE label ILIKE '%creatinine%'").fetchall()}
    p = client.get(f"{d}/patients", params={"limit": 3})
    assert p.status_code == 200, p.text[:300]
    want = raw.execute("SELECT subject_id, count(*) n FROM hosp_admissions GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1").fetchone()
    assert (p.json()["patients"][0]["subject_id"], p.json()["patients"][0]["admissions"]) == tuple(want)
    # `_` and `%` taken literally (BigQuery has no ESCAPE clause: its LIKE escapes with a backslash)
    for f, want in (("comments:contains:_", "contains(lower(comments), '_')"), ("valueuom:contains:%", "contains(valueuom, '%')")):
        r = client.get(f"{d}/tables/mimiciv_hosp.labevents/count", params={"f": f})
        assert r.status_code == 200, r.text[:300]
        assert r.json()["total"] == one(raw, f"SELECT count(*) FROM hosp_labevents WHERE {want}") > 0, f
    csv = client.get(f"{d}/tables/mimiciv_hosp.admissions/export.csv", params={"f": "admission_type:eq:URGENT"})
    assert csv.status_code == 200, csv.text[:300]
    assert len(csv.text.strip().splitlines()) == 1 + one(raw, "SELECT count(*) FROM hosp_admissions WHERE admission_type = 'URGENT'")


def test_sql_page_on_bigquery_names_the_dialect_and_examples_are_bigquery_sql(client):
    assert 'data-dialect="bigquery"' in client.get(f"/d/{SLUG}/sql").text
    ex = client.get(f"/api/datasets/{SLUG}/sql/examples").json()
    assert ex["dialect"] == "bigquery" and ex["examples"]
    for e in ex["examples"]:
        r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": e["sql"]})
        assert r.status_code == 200, (e["title"], e["sql"], r.text[:300])


def test_sql_page_takes_bigquery_spelling_and_refuses_writes(client, raw):  # noqa: F811
    """What a BigQuery user types (backquoted names, BigQuery functions) runs; anything but a query is refused."""
    sql = ("SELECT admission_type, COUNT(*) AS n FROM `physionet-data.mimiciv_2_2_hosp.admissions` "
           "WHERE SAFE_CAST(hospital_expire_flag AS INT64) = 0 GROUP BY admission_type ORDER BY n DESC, admission_type")
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": sql})
    assert r.status_code == 200, r.text[:300]
    want = raw.execute("SELECT admission_type, count(*) n FROM hosp_admissions WHERE hospital_expire_flag = 0 "
                       "GROUP BY 1 ORDER BY n DESC, 1").fetchall()
    assert [tuple(x) for x in r.json()["rows"]] == [tuple(x) for x in want]
    for q in ("DELETE FROM mimiciv_hosp.admissions WHERE true", "SELECT 1; SELECT 2", ""):
        r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q})
        assert r.status_code == 400 and r.json()["error"], q
