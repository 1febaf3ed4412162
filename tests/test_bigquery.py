"""BigQuery as a store, proven without network: BigQueryStore talks to tests/fake_bigquery.FakeClient, which
holds the rendered SQL to BigQuery's rules, translates it back to DuckDB and runs it on the demo builds.
Every result is compared with plain DuckDB SQL over the raw csv.gz files, written here independently."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("google.cloud.bigquery", reason="the bigquery extra (in the test extra)")

import mimiclab
from mimiclab import catalog
from mimiclab.errors import MimiclabError, QueryError
from mimiclab.sources.registry import find
from mimiclab.store import work
from mimiclab.store.bigquery_store import (
    BigQueryError,
    BigQueryStore,
    _names,
    open_bigquery,
    parse_url,
    rewrite,
    workspace,
)

from fake_bigquery import FakeClient, views_of

BILLING = "my-lab-123456"


@pytest.fixture(autouse=True)
def _no_google(monkeypatch, tmp_path):
    """No test may reach Google: no credentials file, and no probe of the GCE metadata server."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-credentials.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


@pytest.fixture(scope="module")
def demo_con(data_root: Path, tmp_path_factory):
    """An in-memory DuckDB with the MIMIC-IV and ED demo builds' tables under mimic-code's schema names."""
    home = tmp_path_factory.mktemp("bq-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        mimiclab.build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        mimiclab.build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
        con = views_of(find("mimic-iv-demo").database, find("mimic-iv-ed-demo").database)
    yield con
    con.close()


@pytest.fixture()
def fake(demo_con) -> FakeClient:
    return FakeClient(demo_con.cursor(), {"mimiciv_2_2_hosp": "mimiciv_hosp", "mimiciv_2_2_icu": "mimiciv_icu",
                                          "mimiciv_ed": "mimiciv_ed"})


@pytest.fixture()
def store(fake) -> BigQueryStore:
    return BigQueryStore(BILLING, "mimiciv", "2.2", client=fake)


def raw(data_root: Path, path: str) -> str:
    """A raw PhysioNet file as a DuckDB table expression (the independent side of every comparison)."""
    slug = "mimic-iv-ed-demo" if path.startswith("ed/") else "mimic-iv-demo"
    return f"read_csv_auto('{data_root / slug / '2.2' / path}.csv.gz')"


def rows(table) -> list[tuple]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return sorted(zip(*cols, strict=True), key=repr)


def norm(rs: list[tuple]) -> list[tuple]:
    """Floats to 6 places (BigQuery's FLOAT64 sums may differ in the last bits), sorted."""
    return sorted((tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rs), key=repr)


# ---------------------------------------------------------------------------------------------- catalog


def test_catalog_names_every_version_and_module() -> None:
    iv = catalog.get("mimiciv")
    assert {d.db_schema: d.path for d in iv.bigquery_datasets("3.1")} == {
        "mimiciv_hosp": "physionet-data.mimiciv_3_1_hosp", "mimiciv_icu": "physionet-data.mimiciv_3_1_icu",
        "mimiciv_derived": "physionet-data.mimiciv_3_1_derived"}
    assert {d.db_schema: d.dataset for d in iv.bigquery_datasets("2.2")} == {
        "mimiciv_hosp": "mimiciv_2_2_hosp", "mimiciv_icu": "mimiciv_2_2_icu", "mimiciv_derived": "mimiciv_2_2_derived"}
    assert [(d.db_schema, d.dataset) for d in catalog.get("mimic-iv-ed").bigquery_datasets()] == [("mimiciv_ed", "mimiciv_ed")]
    assert [(d.db_schema, d.dataset) for d in catalog.get("mimic-iv-note").bigquery_datasets()] == [("mimiciv_note", "mimiciv_note")]
    iii = catalog.get("mimiciii").bigquery_datasets()
    assert ("mimiciii", "mimiciii_clinical", None) in [(d.db_schema, d.dataset, d.tables) for d in iii]
    assert ("mimiciii", "mimiciii_notes", ("noteevents",)) in [(d.db_schema, d.dataset, d.tables) for d in iii]
    # a store on MIMIC-IV 3.1 reaches ED and notes too, under their mimic-code names
    assert {d.db_schema for d in workspace("mimiciv", "3.1")} >= {"mimiciv_hosp", "mimiciv_ed", "mimiciv_note"}
    with pytest.raises(BigQueryError, match="not on PhysioNet's BigQuery"):
        workspace("mimic-iv-demo")


def test_rewrite_only_touches_known_schemas() -> None:
    names = _names(workspace("mimiciii"))
    out = rewrite("WITH admissions AS (SELECT 1 AS x) SELECT * FROM admissions, mimiciii.noteevents n, "
                  "mimiciii.patients p, mine.cohort c, `physionet-data.mimiciii_clinical.icustays` i", names)
    assert "`physionet-data`.mimiciii_notes.noteevents AS n" in out
    assert "`physionet-data`.mimiciii_clinical.patients AS p" in out
    assert "mine.cohort AS c" in out  # the user's own dataset in the billing project stays theirs
    assert "`physionet-data.mimiciii_clinical.icustays`" in out
    assert "FROM admissions" in out  # a CTE is not a table


# ---------------------------------------------------------------------------------------------- results

CASES = [
    ("join + group",
     "SELECT a.admission_type, p.gender, count(*) AS n, sum(a.hospital_expire_flag) AS deaths "
     "FROM mimiciv_hosp.admissions a JOIN mimiciv_hosp.patients p ON p.subject_id = a.subject_id GROUP BY 1, 2",
     "SELECT a.admission_type, p.gender, count(*), sum(a.hospital_expire_flag) FROM {hosp/admissions} a "
     "JOIN {hosp/patients} p ON p.subject_id = a.subject_id GROUP BY 1, 2", None),
    ("window + QUALIFY",
     "SELECT subject_id, hadm_id, admittime FROM mimiciv_hosp.admissions "
     "QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY admittime) = 1",
     "SELECT subject_id, hadm_id, admittime FROM (SELECT *, rank() OVER (PARTITION BY subject_id ORDER BY admittime) r "
     "FROM {hosp/admissions}) WHERE r = 1", None),
    ("lag window",
     "SELECT hadm_id, admittime - lag(dischtime) OVER (PARTITION BY subject_id ORDER BY admittime) IS NOT NULL AS readm "
     "FROM mimiciv_hosp.admissions",
     "SELECT hadm_id, (SELECT count(*) FROM {hosp/admissions} b WHERE b.subject_id = a.subject_id "
     "AND b.admittime < a.admittime) > 0 FROM {hosp/admissions} a", None),
    ("date arithmetic",
     "SELECT stay_id, date_diff('hour', intime, outtime) AS hours, CAST(intime AS DATE) AS day, "
     "extract(year FROM intime) AS y FROM mimiciv_icu.icustays WHERE outtime > intime + INTERVAL 2 DAY",
     "SELECT stay_id, (epoch(date_trunc('hour', outtime)) - epoch(date_trunc('hour', intime)))::BIGINT // 3600, "
     "intime::DATE, year(intime) FROM {icu/icustays} "
     "WHERE epoch(outtime) - epoch(intime) > 2 * 86400", None),
    ("int, string, float params",
     "SELECT subject_id FROM mimiciv_hosp.patients WHERE anchor_age >= $age AND gender = $g AND anchor_age < $top",
     "SELECT subject_id FROM {hosp/patients} WHERE anchor_age >= 60 AND gender = 'F' AND anchor_age < 80.5",
     {"age": 60, "g": "F", "top": 80.5}),
    ("datetime and date params",
     "SELECT hadm_id FROM mimiciv_hosp.admissions WHERE admittime >= $t AND CAST(dischtime AS DATE) < $d",
     "SELECT hadm_id FROM {hosp/admissions} WHERE admittime >= TIMESTAMP '2150-01-01 00:00:00' "
     "AND dischtime::DATE < DATE '2170-06-30'",
     {"t": dt.datetime(2150, 1, 1), "d": dt.date(2170, 6, 30)}),
    ("list params",
     "SELECT hadm_id, admission_type FROM mimiciv_hosp.admissions WHERE list_contains($ids, subject_id) "
     "AND list_contains($types, admission_type)",
     "SELECT hadm_id, admission_type FROM {hosp/admissions} WHERE subject_id IN (10000032, 10001217, 10005817) "
     "AND admission_type IN ('EW EMER.', 'URGENT')",
     {"ids": [10000032, 10001217, 10005817], "types": ["EW EMER.", "URGENT"]}),
    ("bool param and CASE",
     "SELECT hadm_id, CASE WHEN hospital_expire_flag = 1 THEN 'died' ELSE 'alive' END AS outcome "
     "FROM mimiciv_hosp.admissions WHERE (hospital_expire_flag = 1) = $dead",
     "SELECT hadm_id, 'died' FROM {hosp/admissions} WHERE hospital_expire_flag = 1", {"dead": True}),
    ("positional params",
     "SELECT itemid, count(*) AS n FROM mimiciv_hosp.labevents WHERE subject_id = ? AND valuenum > ? GROUP BY itemid",
     "SELECT itemid, count(*) FROM {hosp/labevents} WHERE subject_id = 10000032 AND valuenum > 10 GROUP BY itemid",
     [10000032, 10.0]),
    ("ED with hosp, one query",
     "SELECT e.disposition, a.admission_type, count(*) AS n FROM mimiciv_ed.edstays e "
     "JOIN mimiciv_hosp.admissions a USING (hadm_id) GROUP BY ALL",
     "SELECT e.disposition, a.admission_type, count(*) FROM {ed/edstays} e JOIN {hosp/admissions} a "
     "ON a.hadm_id = e.hadm_id GROUP BY 1, 2", None),
    ("CTE, LEFT JOIN, COALESCE, HAVING, COUNT DISTINCT",
     "WITH d AS (SELECT hadm_id, count(DISTINCT icd_code) AS k FROM mimiciv_hosp.diagnoses_icd GROUP BY hadm_id "
     "HAVING count(*) > 5) SELECT a.hadm_id, coalesce(d.k, 0) AS k FROM mimiciv_hosp.admissions a "
     "LEFT JOIN d ON d.hadm_id = a.hadm_id",
     "SELECT a.hadm_id, coalesce((SELECT count(DISTINCT icd_code) FROM {hosp/diagnoses_icd} x WHERE x.hadm_id = a.hadm_id "
     "HAVING count(*) > 5), 0) FROM {hosp/admissions} a", None),
    ("strings and averages",
     "SELECT lower(d.label) AS label, round(avg(l.valuenum), 3) AS mean FROM mimiciv_hosp.labevents l "
     "JOIN mimiciv_hosp.d_labitems d USING (itemid) WHERE d.label LIKE 'Hemo%' AND l.valuenum IS NOT NULL GROUP BY 1",
     "SELECT lower(d.label), round(avg(l.valuenum), 3) FROM {hosp/labevents} l JOIN {hosp/d_labitems} d "
     "ON d.itemid = l.itemid WHERE starts_with(d.label, 'Hemo') AND l.valuenum IS NOT NULL GROUP BY 1", None),
]


@pytest.mark.parametrize("name,query,truth,params", CASES, ids=[c[0] for c in CASES])
def test_portable_queries_give_the_rows_of_the_raw_files(store, fake, data_root, name, query, truth, params) -> None:
    got = store.arrow(query, params, portable=True)
    import re

    want = duckdb.sql(re.sub(r"\{([a-z_/]+)\}", lambda m: raw(data_root, m[1]), truth)).fetchall()
    assert want, "the comparison must cover rows"
    assert norm(rows(got)) == norm(want)
    dry, real = fake.calls[-2:]
    assert dry.dry_run and not real.dry_run and dry.sql == real.sql
    assert "`physionet-data`.mimiciv_" in real.sql and "$" not in real.sql
    assert real.config.maximum_bytes_billed == store.maximum_bytes_billed


def test_user_sql_in_bigquery_dialect_runs_with_mimic_code_names(store, fake, data_root) -> None:
    """mimic-code's BigQuery SQL is written against `mimiciv_icu.` and BigQuery functions: it runs as is."""
    got = store.arrow("SELECT ie.stay_id, DATETIME_DIFF(ie.outtime, ie.intime, HOUR) AS hours "
                      "FROM mimiciv_icu.icustays ie INNER JOIN `mimiciv_hosp.patients` pat ON ie.subject_id = pat.subject_id "
                      "WHERE pat.anchor_age >= @age", {"age": 65})
    want = duckdb.sql(f"SELECT ie.stay_id, date_diff('hour', ie.intime, ie.outtime) FROM {raw(data_root, 'icu/icustays')} ie "
                      f"JOIN {raw(data_root, 'hosp/patients')} p ON ie.subject_id = p.subject_id "
                      "WHERE p.anchor_age >= 65").fetchall()
    assert want and norm(rows(got)) == norm(want)
    assert "`physionet-data`.mimiciv_2_2_icu.icustays" in fake.calls[-1].sql


def test_user_sql_is_one_reading_statement(store, fake) -> None:
    for bad, msg in [("CREATE TABLE mine.x AS SELECT 1", "not allowed"),
                     ("SELECT 1; SELECT 2", "one statement"),
                     ("DELETE FROM mine.x WHERE true", "not allowed")]:
        with pytest.raises(QueryError, match=msg):
            store.arrow(bad)
    assert fake.calls == []


def test_columns_and_tables_from_metadata(store, data_root) -> None:
    cols = store.columns("mimiciv_hosp.admissions")
    want = duckdb.sql(f"DESCRIBE SELECT * FROM {raw(data_root, 'hosp/admissions')}").fetchall()
    assert [c for c, _ in cols] == [r[0] for r in want]
    assert dict(cols)["admittime"] == "TIMESTAMP" and dict(cols)["subject_id"] == "BIGINT"
    tables = store.tables()
    for path in ("hosp/admissions", "hosp/labevents", "icu/icustays", "ed/edstays"):
        n = duckdb.sql(f"SELECT count(*) FROM {raw(data_root, path)}").fetchall()[0][0]
        schema = "mimiciv_ed" if path.startswith("ed/") else f"mimiciv_{path.split('/')[0]}"
        assert tables[f"{schema}.{path.split('/')[1]}"] == n
    # the fake has no notes nor derived datasets: they are reported, the rest still listed
    assert set(store.unavailable) == {"physionet-data.mimiciv_2_2_derived", "physionet-data.mimiciv_note"}
    with pytest.raises(BigQueryError, match="no BigQuery dataset for schema 'nowhere'"):
        store.columns("nowhere.x")


def test_table_previews_are_free(store, fake, data_root) -> None:
    """`SELECT * FROM t LIMIT n` would be billed for all of t: it is read with tabledata.list instead."""
    want = duckdb.sql(f"SELECT * FROM {raw(data_root, 'hosp/admissions')} LIMIT 3").fetchall()
    for query, portable in [("SELECT * FROM mimiciv_hosp.admissions LIMIT 3", True),
                            ("SELECT * FROM `mimiciv_hosp.admissions` LIMIT 3", False)]:
        t = store.arrow(query, portable=portable)
        assert t.num_rows == 3 and t.schema.names == [c for c, _ in store.columns("mimiciv_hosp.admissions")]
        assert {r[0] for r in rows(t)} <= {r[0] for r in duckdb.sql(
            f"SELECT subject_id FROM {raw(data_root, 'hosp/admissions')}").fetchall()} and len(want) == 3
    n = len(fake.calls)
    t, more, _ = store.capped("SELECT * FROM mimiciv_hosp.patients", 40)  # the SQL page's first look
    assert (t.num_rows, more) == (40, True) and len(fake.calls) == n
    assert fake.listed[-1] == ("physionet-data.mimiciv_2_2_hosp.patients", 41)
    # anything more than a bare preview is a query (dry run first)
    store.arrow("SELECT * FROM mimiciv_hosp.patients WHERE anchor_age > 80 LIMIT 3", portable=True)
    store.arrow("SELECT subject_id FROM mimiciv_hosp.patients LIMIT 3", portable=True)
    assert len(fake.calls) == n + 4


def test_capped_reads_page_by_page(store, data_root) -> None:
    t, more, _ = store.capped("SELECT labevent_id FROM mimiciv_hosp.labevents ORDER BY labevent_id", 120, portable=True)
    want = duckdb.sql(f"SELECT labevent_id FROM {raw(data_root, 'hosp/labevents')} ORDER BY 1 LIMIT 120").fetchall()
    assert more and t.column(0).to_pylist() == [r[0] for r in want]
    t, more, _ = store.capped("SELECT subject_id, admittime FROM mimiciv_hosp.admissions WHERE subject_id < 0", 10,
                              portable=True)
    assert (t.num_rows, more, t.schema.names) == (0, False, ["subject_id", "admittime"])
    assert str(t.schema.field("admittime").type) == "timestamp[us]"


def test_parameter_types() -> None:
    from mimiclab.store.bigquery_store import query_parameters

    ps = query_parameters({"a": 1, "b": 1.5, "c": True, "d": "x", "e": dt.datetime(2150, 1, 1),
                           "f": dt.datetime(2150, 1, 1, tzinfo=dt.UTC), "g": dt.date(2150, 1, 1),
                           "h": [1, 2], "i": [], "j": None})
    assert [(p.name, getattr(p, "type_", None) or p.array_type) for p in ps] == [
        ("a", "INT64"), ("b", "FLOAT64"), ("c", "BOOL"), ("d", "STRING"), ("e", "DATETIME"), ("f", "TIMESTAMP"),
        ("g", "DATE"), ("h", "INT64"), ("i", "STRING"), ("j", "STRING")]
    assert [p.name for p in query_parameters([1, "x"])] == [None, None]
    with pytest.raises(QueryError, match="one type"):
        query_parameters({"x": [1, "a"]})
    with pytest.raises(QueryError, match="no type for a dict"):
        query_parameters({"x": {}})


# ---------------------------------------------------------------------------------------------- cost and time


def test_dry_run_refuses_a_query_above_the_cap_with_the_estimate(fake) -> None:
    fake.table_bytes["mimiciv_2_2_hosp.labevents"] = 25_300_000_000
    store = BigQueryStore(BILLING, "mimiciv", "2.2", client=fake, maximum_bytes_billed=10 * 10**9)
    assert store.dry_run("SELECT * FROM mimiciv_hosp.labevents", portable=True) == 25_300_000_000
    with pytest.raises(BigQueryError, match=r"would scan 25\.30 GB, above the 10\.00 GB cap"):
        store.arrow("SELECT * FROM mimiciv_hosp.labevents", portable=True)
    assert all(c.dry_run for c in fake.calls)  # nothing was billed
    assert store.scalar("SELECT count(*) FROM mimiciv_hosp.patients", portable=True) == 100


def test_the_cap_is_also_given_to_bigquery(fake, monkeypatch) -> None:
    """Were the dry run wrong, BigQuery itself stops the job at maximum_bytes_billed."""
    monkeypatch.setattr(BigQueryStore, "_dry_run", lambda self, sql, qp: 0)
    store = BigQueryStore(BILLING, "mimiciv", "2.2", client=fake, maximum_bytes_billed=1000)
    with pytest.raises(BigQueryError, match="bytes billed"):
        store.arrow("SELECT * FROM mimiciv_hosp.admissions", portable=True)


def test_time_limit_cancels_the_job(fake) -> None:
    fake.delay = 5.0
    store = BigQueryStore(BILLING, "mimiciv", "2.2", client=fake, max_seconds=0.2)
    t0 = time.monotonic()
    with pytest.raises(QueryError, match=r"0\.2 s time limit"):
        store.arrow("SELECT 1 AS x FROM mimiciv_hosp.patients", portable=True)
    assert time.monotonic() - t0 < 2
    assert int(fake.calls[-1].config.job_timeout_ms) == 200


def test_cancelling_the_work_cancels_the_job(fake) -> None:
    fake.delay = 5.0
    store = BigQueryStore(BILLING, "mimiciv", "2.2", client=fake)
    w = work.Work(what="the request")
    threading.Timer(0.2, w.cancel, args=("the client went away",)).start()
    t0 = time.monotonic()
    with w.running(), pytest.raises(work.Cancelled, match="client went away"):
        store.arrow("SELECT 1 AS x FROM mimiciv_hosp.patients", portable=True)
    assert time.monotonic() - t0 < 2


# ---------------------------------------------------------------------------------------------- setup


def test_missing_extra_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.bigquery", None)
    store = BigQueryStore(BILLING, "mimiciv", "3.1")
    with pytest.raises(BigQueryError, match=r"pip install 'mimiclab\[bigquery\]'"):
        store.arrow("SELECT 1")


def test_no_credentials_says_how_to_log_in() -> None:
    store = BigQueryStore(BILLING, "mimiciv", "3.1")
    with pytest.raises(BigQueryError, match="gcloud auth application-default login"):
        store.arrow("SELECT 1")


def test_urls() -> None:
    assert parse_url("bigquery://my-lab-123456/mimiciv-3.1") == ("my-lab-123456", "mimiciv", "3.1")
    assert parse_url("bigquery://my-lab-123456/mimic-iv-ed/2.2") == ("my-lab-123456", "mimic-iv-ed", "2.2")
    assert parse_url("bigquery://my-lab-123456/mimiciii") == ("my-lab-123456", "mimiciii", None)
    s = open_bigquery("bigquery://my-lab-123456/mimiciv-2.2?max_gb=2.5", client=object())
    assert (s.billing_project, s.slug, s.version, s.maximum_bytes_billed) == ("my-lab-123456", "mimiciv", "2.2", 2_500_000_000)
    assert s.paramstyle == "at" and s.dialect == "bigquery" and s.capabilities.dry_run
    with pytest.raises(MimiclabError, match=r"has no version '9\.9'"):
        open_bigquery("bigquery://my-lab-123456/mimiciv-9.9")
    with pytest.raises(QueryError, match="expected bigquery://"):
        open_bigquery("bigquery:/nope")
    with pytest.raises(BigQueryError, match="not a Google Cloud project id"):
        open_bigquery("bigquery://X/mimiciv-3.1")


def test_the_api_on_bigquery_lists_and_reads_the_linked_ed_tables(fake, data_root) -> None:
    """On PhysioNet's BigQuery the store reaches ED beside hosp: the Python API lists its tables (counts
    from metadata), reads them, and a patient's ED stays are the raw edstays + triage rows."""
    ds = mimiclab.open(f"bigquery://{BILLING}/mimiciv-2.2", client=fake)
    try:
        assert [x.split()[0] for x in ds.linked] == ["mimic-iv-ed"]
        n = duckdb.sql(f"SELECT count(*) FROM {raw(data_root, 'ed/edstays')}").fetchall()[0][0]
        assert ds.tables["mimiciv_ed.edstays"] == n and ds.table("edstays").count() == n
        assert "mimiciv_note.discharge" not in ds.tables  # not visible to this user: not listed
        sid = 10014354
        want = duckdb.sql(f"SELECT e.stay_id, t.acuity FROM {raw(data_root, 'ed/edstays')} e LEFT JOIN "
                          f"{raw(data_root, 'ed/triage')} t USING (stay_id) WHERE e.subject_id = {sid} "
                          "ORDER BY e.intime, e.stay_id").fetchall()
        got = ds.patient(sid).ed_stays
        assert len(want) > 1 and list(zip(got["stay_id"], got["acuity"], strict=True)) == want
    finally:
        ds.close()
