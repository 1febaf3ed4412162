"""The workbench over the demo published to the real local PostgreSQL server (a RemoteSource), checked against
plain DuckDB over the raw csv.gz, as test_web checks the local build.

The tests of test_web that compare with independent SQL are collected here a second time: this module's
`client` serves the PostgreSQL copy (and nothing else: $MIMICLAB_HOME is empty), so each runs on both backends.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_web import (  # noqa: F401 - collected again here, with this module's `client`
    LOCAL,
    SLUG,
    one,
    raw,
    test_cohort_pickers_offer_what_the_data_holds,
    test_cohort_run_attrition_matches_raw,
    test_column_stats_and_csv_export_match_raw,
    test_dictionary_has_every_catalog_column_with_type_and_description,
    test_distribution_categorical_grouped_matches_raw,
    test_distribution_numeric_and_temporal_histograms_count_every_value,
    test_find_patient_by_each_id,
    test_lookup_searches_labitems_and_icd_titles,
    test_not_loaded_table_is_empty_not_an_error,
    test_patient_list_orders_by_admissions,
    test_patient_summary_record_and_series_match_raw,
    test_rows_errors_are_messages,
    test_rows_filter_sort_paginate_match_raw,
    test_sql_errors_are_messages,
)

from mimiclab.web import create_app

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_source(pg_demo_url):
    from mimiclab.sources import open_source

    return open_source(pg_demo_url, dataset=SLUG)


@pytest.fixture(scope="module")
def client(pg_source, tmp_path_factory):
    """The workbench with the PostgreSQL copy of the demo as its only dataset."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(tmp_path_factory.mktemp("pg-web-home")))
        with TestClient(create_app(sources=[pg_source]), base_url=LOCAL) as c:
            yield c


def test_the_server_dataset_is_listed_and_served_from_postgres(client, pg_source):
    d = client.get("/api/datasets").json()
    assert [b["slug"] for b in d["built"]] == [SLUG] and d["default"] == SLUG
    bench = client.app.state.workbench
    st = bench.store(SLUG)
    assert st.backend == "postgres" and st.dialect == "postgres"
    from mimiclab.errors import QueryError

    assert st.sandboxed and st.read_only  # the second wall, past the SQL page's check
    for q in ("SELECT pg_read_file('/etc/passwd')", "CREATE TABLE x AS SELECT 1", "SELECT 1; SELECT 2"):
        with pytest.raises(QueryError):
            st.arrow(q)
    assert bench.build(SLUG).build_dir is None  # a server: no local folder, and still no open() for routes
    assert not hasattr(bench.build(SLUG), "open")


def test_sql_page_runs_postgres_sql_and_says_so(client, raw):  # noqa: F811 - the imported fixture
    """User SQL runs as written, in PostgreSQL's dialect; the page and the examples say which."""
    page = client.get(f"/d/{SLUG}/sql").text
    assert 'data-dialect="postgres"' in page and "PostgreSQL" in page
    sql = ("SELECT first_careunit, count(*)::int AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY los) AS med "
           "FROM mimiciv_icu.icustays GROUP BY 1 ORDER BY n DESC, 1")
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": sql})
    assert r.status_code == 200, r.text
    got = [tuple(x[:2]) for x in r.json()["rows"]]
    assert got == [tuple(x) for x in raw.execute(
        "SELECT first_careunit, count(*) AS n FROM icu_icustays GROUP BY 1 ORDER BY n DESC, 1").fetchall()]
    r = client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": "SELECT hadm_id FROM mimiciv_hosp.admissions"})
    assert len(r.text.strip().splitlines()) == 1 + one(raw, "SELECT count(*) FROM hosp_admissions")
    ex = client.get(f"/api/datasets/{SLUG}/sql/examples").json()
    assert ex["dialect"] == "postgres" and len(ex["examples"]) >= 5
    for e in ex["examples"]:  # every shipped example runs on PostgreSQL as shown
        r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": e["sql"]})
        assert r.status_code == 200 and r.json()["rows"], (e["title"], r.text[:300])
    adm = next(e for e in ex["examples"] if e["title"].startswith("Admissions per year"))
    rows = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": adm["sql"]}).json()["rows"]
    assert sum(r[2] for r in rows) == one(raw, "SELECT count(*) FROM hosp_admissions")
    for q in ("SELECT pg_read_file('/etc/passwd')", "COPY mimiciv_hosp.admissions TO '/tmp/leak.csv'",
              "SELECT 1; SELECT 2", "DELETE FROM mimiciv_hosp.admissions"):
        r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q})
        assert r.status_code == 400 and r.json()["error"], q


def test_patient_notes_hint_on_postgres(client):
    rec = client.get(f"/api/datasets/{SLUG}/patients/10000032/record").json()
    assert rec["notes"]["available"] is False and "mimic-iv-note" in rec["notes"]["hint"]


def test_filter_values_are_typed_before_any_query(client, raw):  # noqa: F811
    """Dates and times in filters compare as dates and times on PostgreSQL too (no TRY_CAST there)."""
    url = f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/rows"
    r = client.get(url, params={"f": "admittime:ge:2180-07-23 00:00:00", "limit": 1}).json()
    assert r["total"] == one(raw, "SELECT count(*) FROM hosp_admissions WHERE admittime >= TIMESTAMP '2180-07-23'")
    r = client.get(url, params={"f": "admittime:ge:yesterday"})
    assert r.status_code == 400 and "not a valid TIMESTAMP" in r.json()["error"]
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.patients/rows", params={"f": "anchor_age:gt:99999"})
    assert r.status_code == 400 and "SMALLINT" in r.json()["error"]


def test_column_stats_count_distinct_values_exactly_on_postgres(client, raw):  # noqa: F811
    s = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/stats", params={"column": "valuenum"}).json()
    assert s["distinct"] == one(raw, "SELECT count(DISTINCT valuenum) FROM hosp_labevents")
    assert s["median"] == pytest.approx(one(raw, "SELECT median(valuenum) FROM hosp_labevents"))
