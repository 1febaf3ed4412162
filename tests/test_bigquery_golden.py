"""Golden files of the BigQuery SQL mimiclab sends for the example cohorts and a patient timeline
(tests/golden/bigquery/*.sql), and the same SQL run through the fake client gives the DuckDB path's rows.

A change to rendering shows up here as a diff to review. To accept new SQL on purpose:
    MIMICLAB_REGOLD=1 .venv/bin/python -m pytest -q tests/test_bigquery_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.bigquery", reason="the bigquery extra (in the test extra)")

import yaml

import mimiclab
from mimiclab import catalog
from mimiclab.cohort.compile import compile_spec
from mimiclab.cohort.spec import loads
from mimiclab.sources.registry import find
from mimiclab.store.bigquery_store import BigQueryStore
from mimiclab.store.duckdb_store import DuckDBStore

from fake_bigquery import FakeClient, views_of

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "bigquery"
# the MIMIC-IV example cohorts (BigQuery holds MIMIC-IV, not the OMOP demo)
COHORTS = sorted(p for p in (ROOT / "examples" / "cohorts").glob("*.yaml")
                 if catalog.get(yaml.safe_load(p.read_text()).get("dataset") or "mimiciv").family == "mimiciv")
SID = 10000032  # a demo patient with labs, ICU stay, prescriptions, microbiology


@pytest.fixture(autouse=True)
def _no_google(monkeypatch, tmp_path):
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-credentials.json"))


@pytest.fixture(scope="module")
def home(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("bq-golden-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        mimiclab.build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        yield home


@pytest.fixture(scope="module")
def duck(home):
    con = views_of(find("mimic-iv-demo").database)
    yield con
    con.close()


@pytest.fixture()
def store(duck) -> BigQueryStore:
    fake = FakeClient(duck.cursor(), {"mimiciv_2_2_hosp": "mimiciv_hosp", "mimiciv_2_2_icu": "mimiciv_icu"})
    return BigQueryStore("my-lab-123456", "mimiciv", "2.2", client=fake)


def check_golden(name: str, sql: str) -> None:
    """Golden files hold the SQL laid out by sqlglot's pretty printer (a deterministic function of the exact
    text, so any change shows) to keep diffs of 7,000-character one-liners reviewable."""
    import sqlglot

    sql = ";\n".join(sqlglot.transpile(sql, read="bigquery", write="bigquery", pretty=True))
    path = GOLDEN / f"{name}.sql"
    if os.environ.get("MIMICLAB_REGOLD"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql.rstrip() + "\n")
    assert path.exists(), f"no golden file {path}; run with MIMICLAB_REGOLD=1 to write it"
    assert sql.rstrip() + "\n" == path.read_text(), f"the BigQuery SQL of {name} changed; review the diff " \
        "and run with MIMICLAB_REGOLD=1 to accept it"


def rows(table) -> list[tuple]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*cols, strict=True))


@pytest.mark.parametrize("path", COHORTS, ids=[p.stem for p in COHORTS])
def test_example_cohort_bigquery_sql_is_golden_and_counts_match(path, store, duck) -> None:
    assert len(COHORTS) >= 3
    sql = compile_spec(loads(path.read_text(), str(path)), "mimiciv").attrition_sql
    bq = store.render(sql)
    check_golden(f"cohort_{path.stem}", bq)
    assert "MATERIALIZED" not in bq and "`physionet-data`.mimiciv_2_2_" in bq
    got = rows(store.arrow(sql, portable=True))  # through the fake: BigQuery's rules, DuckDB's data
    want = duck.execute(sql).fetchall()  # the DuckDB path, as a local build runs it
    assert got == want and len(want) > 1


def test_patient_timeline_bigquery_sql_is_golden_and_rows_match(home, store, duck, monkeypatch) -> None:
    """The timeline query as the API sends it (captured by a recording store), rendered for BigQuery."""
    seen: list[tuple[str, object]] = []
    real = DuckDBStore.arrow

    def recording(self, query, params=None, *, portable=False):
        seen.append((query, params))
        return real(self, query, params, portable=portable)

    monkeypatch.setattr(DuckDBStore, "arrow", recording)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        ds = mimiclab.open("mimic-iv-demo")
        ds.store.max_seconds = 600  # a time-limited store: the API's queries go through store.arrow
        tl = ds.patient(SID).timeline()
    timeline = [(q, p) for q, p in seen if "ORDER BY time" in q]
    assert timeline, "the timeline query was not captured"
    query, params = timeline[-1]
    check_golden("patient_timeline", store.render(query))
    got = store.arrow(query, params, portable=True)
    assert got.num_rows == len(tl) > 100
    want = duck.execute(query, params).fetchall()
    norm = lambda rs: sorted((tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rs),  # noqa: E731
                             key=repr)
    assert norm(rows(got)) == norm(want)
    # the order BigQuery returns is the timeline's (ties of the ORDER BY keys may come in any order)
    keys = lambda rs: [(r[0], r[2], r[10], r[3], r[4]) for r in rs]  # noqa: E731  time, source, itemid, label, value
    assert keys(rows(got)) == keys(want)
