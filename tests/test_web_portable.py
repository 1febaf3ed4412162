"""Every query the workbench writes is portable: run with `portable=True`, and rendered by sqlglot into SQL
that PostgreSQL and BigQuery parse. Family differences are catalog data (catalog/workbench/<family>.yaml).

The queries are caught as the routes send them (a recorder on the store), so a new route that forgets
`portable=True`, or writes DuckDB-only SQL, fails here without a PostgreSQL server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlglot
from fastapi.testclient import TestClient

from mimiclab.catalog import workbench as wbcat
from mimiclab.store import render
from mimiclab.web import create_app

SLUG = "mimic-iv-demo"
LOCAL = "http://127.0.0.1"
WEB = str(Path(__file__).resolve().parents[1] / "src" / "mimiclab" / "web")
STORE = str(Path(__file__).resolve().parents[1] / "src" / "mimiclab" / "store")


@pytest.fixture(scope="module")
def recorded(demo_build, tmp_path_factory):
    """(client, calls): the workbench over the local demo build, every store call made from web/ recorded as
    (method, query, portable)."""
    calls: list[tuple[str, str, bool]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(tmp_path_factory.mktemp("portable-home")))
        app = create_app(sources=[demo_build])
        with TestClient(app, base_url=LOCAL) as c:
            st = app.state.workbench.store(SLUG)

            def recording(name):
                real = getattr(st, name)

                def call(query, *a, portable=False, **kw):
                    f = sys._getframe(1)
                    while f is not None and f.f_code.co_filename.startswith(STORE):
                        f = f.f_back
                    if f is not None and f.f_code.co_filename.startswith(WEB):
                        calls.append((name, query, portable))
                    return real(query, *a, portable=portable, **kw)
                return call

            for name in ("arrow", "stream", "scalar", "df", "capped"):
                mp.setattr(st, name, recording(name))
            yield c, calls


def _every_route(c) -> None:
    base = f"/api/datasets/{SLUG}"
    ok = [
        c.get(f"{base}/lookups/mimiciv_hosp.d_labitems", params={"q": "creatinine 5"}),
        c.get(f"{base}/lookups/mimiciv_icu.d_items", params={"q": ""}),
        c.get(f"{base}/tables/mimiciv_hosp.labevents/rows",
              params={"f": ["itemid:eq:50912", "valuenum:gt:1.5", "charttime:ge:2150-01-01", "comments:contains:x",
                            "flag:starts:ab", "ref_range_lower:null"], "q": "mg", "sort": "valuenum", "desc": "true"}),
        c.get(f"{base}/tables/mimiciv_hosp.admissions/rows", params={"limit": 5, "offset": 5,
                                                                      "f": "discharge_location:ne:HOME"}),
        c.get(f"{base}/tables/mimiciv_hosp.labevents/rows", params={"f": "itemid:eq:50813", "count": "false"}),
        c.get(f"{base}/tables/mimiciv_hosp.labevents/count", params={"f": ["itemid:eq:50813", "flag:starts:ab"], "q": "mg"}),
        c.get(f"{base}/tables/mimiciv_icu.icustays/stats", params={"column": "los", "f": "los:gt:1"}),
        c.get(f"{base}/tables/mimiciv_hosp.admissions/stats", params={"column": "admittime"}),
        c.get(f"{base}/tables/mimiciv_hosp.admissions/stats", params={"column": "insurance", "q": "med"}),
        c.get(f"{base}/tables/mimiciv_hosp.admissions/export.csv", params={"f": "admission_type:eq:URGENT",
                                                                          "sort": "admittime"}),
        c.get(f"{base}/tables/mimiciv_icu.chartevents/export.csv"),
        c.get(f"{base}/patients", params={"limit": 5}),
        c.get(f"{base}/patients/10000032"),
        c.get(f"{base}/patients/10000032/record"),
        c.get(f"{base}/sql/examples"),
        c.post(f"{base}/sql", json={"sql": "SELECT 42 AS x"}),
        c.get(f"{base}/cohort/suggest", params={"criterion": "diagnosis", "param": "icd10", "q": "hypertens"}),
        c.get(f"{base}/cohort/suggest", params={"criterion": "medication", "param": "names", "q": "vanc"}),
    ]
    for r in ok:
        assert r.status_code == 200, (r.url, r.text[:300])


def test_every_workbench_query_is_portable_and_renders_for_postgres_and_bigquery(recorded):
    c, calls = recorded
    calls.clear()
    _every_route(c)
    mine = [(m, q) for m, q, portable in calls if not portable]
    assert mine == [("capped", "SELECT 42 AS x")], "only the user's own SQL runs unrendered: " + repr(mine[:3])
    portable = {q for _, q, p in calls if p}
    assert len(portable) >= 10
    for q in portable:
        assert " ALL" not in q.upper().replace("UNION ALL", "") and "TRY_CAST" not in q.upper(), q
        for dialect in ("postgres", "bigquery"):
            out = render(q, dialect)
            sqlglot.parse_one(out.replace("%s", "NULL"), read=dialect)  # the rendered text is that dialect's SQL
            for duck_only in ("TRY_CAST", "APPROX_DISTINCT", "LIST_CONTAINS", "EPOCH(", "//"):
                assert duck_only not in out.upper(), (dialect, out)


def test_catalog_workbench_files_are_valid_and_cover_the_families():
    from mimiclab.catalog import concepts

    assert set(concepts.families()) <= set(wbcat.families())  # every family with patients has workbench data
    for fam in wbcat.families():
        w = wbcat.load(fam)
        assert w.family == fam and w.name
        for e in w.examples:  # examples run as typed: each parses as DuckDB's and PostgreSQL's SQL
            for dialect in ("duckdb", "postgres"):
                sqlglot.parse_one(e.for_dialect(dialect), read=dialect)
    assert wbcat.load("mimiciv").notes_from["mimiciv_note"][0].table == "mimiciv_note.discharge"
    assert wbcat.load("omop").notes[0].patient_id == "person_id"
    empty = wbcat.load("mimiciv_ecg")  # no file: nothing family-specific, no error
    assert empty.lookups == () and empty.examples == ()


def test_lookups_follow_the_catalog_order(recorded, monkeypatch):
    """The search boxes are the family file's lookups, in its order: editing the YAML changes the page."""
    c, _ = recorded
    names = [x["name"] for x in c.get(f"/api/datasets/{SLUG}/lookups").json()["lookups"]]
    assert names == [lk.table for lk in wbcat.load("mimiciv").lookups]
    swapped = wbcat.load("mimiciv").model_copy(update={"lookups": tuple(reversed(wbcat.load("mimiciv").lookups))})
    monkeypatch.setattr(wbcat, "load", lambda fam: swapped if fam == "mimiciv" else wbcat.Workbench(family=fam, name=fam))
    assert [x["name"] for x in c.get(f"/api/datasets/{SLUG}/lookups").json()["lookups"]] == names[::-1]


def test_sql_page_and_examples_name_the_dialect_on_duckdb(recorded):
    c, _ = recorded
    assert 'data-dialect="duckdb"' in c.get(f"/d/{SLUG}/sql").text
    ex = c.get(f"/api/datasets/{SLUG}/sql/examples").json()
    assert ex["dialect"] == "duckdb" and ex["family"] == "mimiciv"
    for e in ex["examples"]:
        r = c.post(f"/api/datasets/{SLUG}/sql", json={"sql": e["sql"]})
        assert r.status_code == 200 and r.json()["rows"], e["title"]


def test_examples_for_bigquery_are_translated_when_the_catalog_has_no_spelling():
    from mimiclab.web.api_sql import example_sql

    e = wbcat.Example(title="t", sql="SELECT a, count(*) AS n FROM s.t GROUP BY a ORDER BY n DESC;",
                      dialects={"postgres": "SELECT 1;"})
    assert example_sql(e, "postgres") == "SELECT 1;" and example_sql(e, "duckdb") == e.sql
    bq = example_sql(e, "bigquery")
    assert bq.endswith(";") and "\n" in bq  # laid out, one statement
    sqlglot.parse_one(bq.rstrip(";"), read="bigquery")


def test_serve_takes_a_postgres_url_through_the_cli(pg_demo_url, tmp_path, monkeypatch):
    """`mimiclab serve postgresql://...` opens the published dataset and serves it (uvicorn stubbed)."""
    import uvicorn
    from typer.testing import CliRunner

    from mimiclab.cli import app

    seen = {}

    def fake_run(self, sockets=None):
        bench = self.config.app.state.workbench
        seen["slugs"] = [b.slug for b in bench.builds()]
        seen["backend"] = bench.store(SLUG).backend
        seen["default"] = bench.current()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    r = CliRunner().invoke(app, ["serve", pg_demo_url, "--port", "0", "--no-browser", "--no-token"],
                           env={"MIMICLAB_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert seen == {"slugs": [SLUG], "backend": "postgres", "default": SLUG}
    assert f"/d/{SLUG}/dictionary" in r.output
    r = CliRunner().invoke(app, ["serve", "mysql://x@y/z", "--port", "0", "--no-browser", "--no-token"],
                           env={"MIMICLAB_HOME": str(tmp_path)})
    assert r.exit_code != 0 and "not a server URL" in r.output and "Traceback" not in r.output
