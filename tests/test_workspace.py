"""One workspace per population: the MIMIC-IV demo and the MIMIC-IV-ED demo, built separately, are queried
together under mimic-code's names, on DuckDB (Python API, sandboxed workbench store) and PostgreSQL; the
answer is checked against plain DuckDB over the raw csv.gz."""

from __future__ import annotations

import duckdb
import pytest
from fastapi.testclient import TestClient

JOIN = ("SELECT count(*) AS n, count(DISTINCT a.subject_id) AS patients "
        "FROM mimiciv_ed.edstays e JOIN mimiciv_hosp.admissions a USING (hadm_id)")


@pytest.fixture(scope="module")
def home(data_root, tmp_path_factory):
    h = tmp_path_factory.mktemp("workspace-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        from mimiclab.load import build

        build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
        yield h


@pytest.fixture(scope="module")
def want(data_root):
    ed = data_root / "mimic-iv-ed-demo" / "2.2" / "ed" / "edstays.csv.gz"
    adm = data_root / "mimic-iv-demo" / "2.2" / "hosp" / "admissions.csv.gz"
    row = duckdb.execute(f"SELECT count(*), count(DISTINCT a.subject_id) FROM read_csv_auto('{ed}') e "
                         f"JOIN read_csv_auto('{adm}') a USING (hadm_id)").fetchone()
    assert row[0] > 0
    return {"n": row[0], "patients": row[1]}


@pytest.mark.parametrize("opened", ["mimic-iv-demo", "mimic-iv-ed-demo"])
def test_modules_of_one_population_join_under_mimic_code_names(home, want, opened):
    import mimiclab

    ds = mimiclab.open(opened)
    try:
        got = ds.sql(JOIN).iloc[0]
        assert (int(got["n"]), int(got["patients"])) == (want["n"], want["patients"])
        assert int(ds.sql("SELECT count(*) AS n FROM edstays")["n"][0]) > 0  # unqualified names across modules
    finally:
        ds.close()


def _raw(data_root, rel: str, sql: str = "SELECT count(*) FROM t"):
    """Plain DuckDB over one raw csv.gz of the demos (the oracle)."""
    path = data_root / rel
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_csv('{path}', header=true)")
    return con.execute(sql).fetchall()


def _api_sees_the_linked_tables(ds, data_root, other: str) -> None:
    """The Python API's table surface over the workspace: listed, resolved, read, described, counted."""
    edstays = _raw(data_root, "mimic-iv-ed-demo/2.2/ed/edstays.csv.gz")[0][0]
    admissions = _raw(data_root, "mimic-iv-demo/2.2/hosp/admissions.csv.gz")[0][0]
    assert ds.tables["mimiciv_ed.edstays"] == edstays and ds.tables["mimiciv_hosp.admissions"] == admissions
    info = ds.table_info().set_index("table")
    assert info.loc["mimiciv_ed.edstays", "dataset"] == "mimic-iv-ed-demo"
    assert info.loc["mimiciv_hosp.admissions", "dataset"] == "mimic-iv-demo"
    assert "ed stay" in info.loc["mimiciv_ed.edstays", "description"].lower()  # the ED catalog's words
    assert ds.resolve("edstays") == "mimiciv_ed.edstays" and ds.resolve("ed/triage") == "mimiciv_ed.triage"
    assert ds.table("edstays").count() == edstays and len(ds.table("admissions").df()) == admissions
    d = ds.describe("mimiciv_ed.edstays").set_index("column")
    assert d.attrs["rows"] == edstays
    want_dist = dict(_raw(data_root, "mimic-iv-ed-demo/2.2/ed/edstays.csv.gz",
                          "SELECT disposition, count(*) FROM t WHERE disposition IS NOT NULL GROUP BY 1"))
    got = ds.distribution("edstays", "disposition")
    assert dict(zip(got["value"], got["count"], strict=True)) == want_dist
    # triage acuity is DOUBLE (as mimic-code types it) holding the levels 1-5: counted per level, as text
    # the file writes ("2", not "2.0"); heart rate, whole numbers over a wide range, stays a histogram
    want_acuity = {str(int(v)): n for v, n in _raw(data_root, "mimic-iv-ed-demo/2.2/ed/triage.csv.gz",
                                                   "SELECT acuity, count(*) FROM t WHERE acuity IS NOT NULL GROUP BY 1")}
    got = ds.distribution("mimiciv_ed.triage", "acuity")
    assert got.attrs["kind"] == "categorical" and dict(zip(got["value"], got["count"], strict=True)) == want_acuity
    hr = ds.distribution("mimiciv_ed.triage", "heartrate")
    assert hr.attrs["kind"] == "numeric" and hr["count"].sum() == _raw(
        data_root, "mimic-iv-ed-demo/2.2/ed/triage.csv.gz", "SELECT count(heartrate) FROM t")[0][0]
    assert ds.column("mimiciv_ed.diagnosis", "ICD_TITLE")[0] == "icd_title"  # the type in the database's words
    assert other in repr(ds)


@pytest.mark.parametrize(("opened", "other"), [("mimic-iv-demo", "mimic-iv-ed-demo"), ("mimic-iv-ed-demo", "mimic-iv-demo")])
def test_the_api_lists_reads_and_describes_the_linked_tables(home, data_root, opened, other):
    import mimiclab

    ds = mimiclab.open(opened)
    try:
        assert ds.linked == [f"{other} 2.2"]
        _api_sees_the_linked_tables(ds, data_root, other)
    finally:
        ds.close()


def test_a_module_built_while_open_joins_the_workspace_on_the_next_rebuild_only(tmp_path, monkeypatch, data_root):
    """What the API lists is what the store attached: a module built later is not listed (nor queryable)
    until the dataset reopens, as after a rebuild of its own."""
    import mimiclab
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/admissions"])
    ds = mimiclab.open("mimic-iv-demo")
    try:
        assert ds.linked == [] and not any(k.startswith("mimiciv_ed.") for k in ds.tables)
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2", tables=["ed/edstays"])
        assert "mimiciv_ed.edstays" not in ds.tables
        build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/admissions", "hosp/patients"])
        assert ds.linked == []  # listing reads what the store last attached: no reopen for a list
        assert ds.table("edstays").count() == _raw(data_root, "mimic-iv-ed-demo/2.2/ed/edstays.csv.gz")[0][0]
        assert ds.linked == ["mimic-iv-ed-demo 2.2"]  # a query reopened it
    finally:
        ds.close()


def test_a_patient_shows_the_linked_ed_stays_as_the_raw_files_have_them(home, data_root):
    """Patient.ed_stays is edstays LEFT JOIN triage for the patient (acuity, chief complaint), in time order,
    and stays() carries each ED stay as an interval; a patient without ED stays has an empty frame."""
    import mimiclab

    ed = data_root / "mimic-iv-ed-demo" / "2.2" / "ed"
    con = duckdb.connect()
    rows = con.execute(f"SELECT e.subject_id, e.stay_id, e.intime, e.outtime, t.acuity, t.chiefcomplaint "
                       f"FROM read_csv('{ed}/edstays.csv.gz') e LEFT JOIN read_csv('{ed}/triage.csv.gz') t "
                       "USING (stay_id) ORDER BY e.subject_id, e.intime, e.stay_id").fetchall()
    by_patient: dict[int, list] = {}
    for r in rows:
        by_patient.setdefault(r[0], []).append(r[1:])
    hosp = con.execute(f"SELECT DISTINCT subject_id FROM read_csv('{data_root}/mimic-iv-demo/2.2/hosp/patients.csv.gz')"
                       ).fetchall()
    without = sorted({h[0] for h in hosp} - set(by_patient))
    busiest = sorted(by_patient, key=lambda s: (-len(by_patient[s]), s))[:8]
    ds = mimiclab.open("mimic-iv-demo")
    try:
        for sid in busiest:
            p = ds.patient(sid)
            got = p.ed_stays
            want = by_patient[sid]
            assert got["stay_id"].tolist() == [w[0] for w in want], sid
            assert [None if a != a else a for a in got["acuity"].tolist()] == [w[3] for w in want], sid
            assert got["chiefcomplaint"].fillna("").tolist() == [w[4] or "" for w in want], sid
            st = p.stays()
            eds = st[st["kind"] == "edstay"]
            assert eds["id"].tolist() == [w[0] for w in want]
            assert [x.to_pydatetime() for x in eds["start"]] == [w[1] for w in want]
        if without:
            p = ds.patient(without[0])
            assert len(p.ed_stays) == 0 and "stay_id" in p.ed_stays.columns
            assert "edstay" not in set(p.stays()["kind"])
    finally:
        ds.close()


def test_without_the_ed_module_a_patient_has_no_ed_frame(tmp_path, monkeypatch, data_root):
    import mimiclab
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/admissions", "hosp/patients"])
    with mimiclab.open("mimic-iv-demo") as ds:
        p = ds.patient(10000032)
        assert p.ed_stays.empty and not len(p.ed_stays.columns)
        assert set(p.stays()["kind"]) == {"admission"}


def test_the_workbench_sql_page_sees_the_workspace_sandboxed(home, want):
    from mimiclab.web import create_app

    with TestClient(create_app(dataset="mimic-iv-demo"), base_url="http://127.0.0.1") as c:
        r = c.post("/api/datasets/mimic-iv-demo/sql", json={"sql": JOIN})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[want["n"], want["patients"]]]
        assert c.app.state.workbench.store("mimic-iv-demo").sandboxed


def test_a_core_without_its_modules_opens_alone(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    from mimiclab.load import build
    from mimiclab.sources.registry import find

    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/admissions"])
    b = find("mimic-iv-demo")
    assert b.linked() == []
    st = b.open()
    try:
        assert st.scalar("SELECT count(*) FROM mimiciv_hosp.admissions") == 275
    finally:
        st.close()


@pytest.mark.postgres
def test_the_same_join_on_postgresql(home, want, data_root):
    import uuid

    from conftest import PG_ADMIN, _pg_admin

    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources import open_postgres
    from mimiclab.sources.registry import find

    admin = _pg_admin()
    name = f"mimiclab_ws_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        to_postgres(find("mimic-iv-demo"), url)
        to_postgres(find("mimic-iv-ed-demo"), url)
        st = open_postgres(url, "mimic-iv-demo", "2.2").open(sandbox=True)
        try:
            assert st.arrow(JOIN).to_pylist() == [want]
            # unqualified names as on a local build: the dataset's schemas, then its population's
            assert st.scalar("SELECT count(*) FROM admissions") == 275
            assert st.scalar("SELECT count(*) FROM edstays") == st.scalar("SELECT count(*) FROM mimiciv_ed.edstays") > 0
        finally:
            st.close()
        import mimiclab

        ds = mimiclab.open(url, dataset="mimic-iv-demo")
        try:
            assert ds.linked == ["mimic-iv-ed-demo 2.2"]
            _api_sees_the_linked_tables(ds, data_root, "mimic-iv-ed-demo")
        finally:
            ds.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_cli_sql_and_patient_take_a_postgresql_url(pg_demo_url, demo_dir):
    """`mimiclab sql` and `mimiclab patient` open the same sources as mimiclab.open (here PostgreSQL)."""
    import json

    from typer.testing import CliRunner

    from mimiclab.cli import app

    want = duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{demo_dir / 'hosp' / 'admissions.csv.gz'}') "
                          "WHERE admission_type = 'URGENT'").fetchone()[0]
    r = CliRunner().invoke(app, ["sql", pg_demo_url, "SELECT count(*) AS n FROM mimiciv_hosp.admissions "
                                 "WHERE admission_type = 'URGENT'", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [{"n": want}]
    sid = duckdb.execute(f"SELECT min(subject_id) FROM read_csv_auto('{demo_dir / 'hosp' / 'patients.csv.gz'}')").fetchone()[0]
    r = CliRunner().invoke(app, ["patient", pg_demo_url, str(sid), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert str(sid) in r.output and "password" not in r.output


def test_the_workbench_follows_a_rebuilt_linked_module(tmp_path, monkeypatch, data_root):
    """A rebuilt ED module opens a new store for the hospital data: a patient page seen before keeps working
    (its cached Patient had kept the closed store: 'Connection already closed' on every later request)."""
    import time

    from mimiclab.load import build
    from mimiclab.web import create_app

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/patients", "hosp/admissions"])
    build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    sid = 10014354
    n = _raw(data_root, "mimic-iv-ed-demo/2.2/ed/edstays.csv.gz", f"SELECT count(*) FROM t WHERE subject_id = {sid}")[0][0]
    url = f"/api/datasets/mimic-iv-demo/patients/{sid}/record"
    with TestClient(create_app(dataset="mimic-iv-demo"), base_url="http://127.0.0.1") as c:
        assert c.get(url).json()["ed_stays"]["total"] == n > 1
        time.sleep(1.1)  # the workbench looks at the builds at most once a second
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2", force=True)
        time.sleep(1.1)
        for _ in range(2):
            r = c.get(url)
            assert r.status_code == 200, r.text
            assert r.json()["ed_stays"]["total"] == n


def test_listing_a_closed_dataset_opens_no_store(tmp_path, monkeypatch, data_root):
    """tables, linked and repr read what the store last attached: a closed Dataset is not reopened by them
    (a notebook shows repr(ds) after the `with` block), even after a rebuild."""
    import time

    import mimiclab
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path))
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/patients"])
    build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2", tables=["ed/edstays"])
    with mimiclab.open("mimic-iv-demo") as ds:
        store = ds._store
    time.sleep(0.01)
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/patients"], force=True)
    assert "mimiciv_ed.edstays" in ds.tables and ds.linked == ["mimic-iv-ed-demo 2.2"] and "linked" in repr(ds)
    assert ds._store is store and ds.generation == 0


def test_a_module_without_patients_points_to_its_core(home, monkeypatch):
    """The ED demo has no patient mapping: asking it for a patient names the dataset whose patients show ED
    stays (it had said 'no concept mapping for the mimiciv_ed family. Did you mean: mimiciv?')."""
    import mimiclab
    from mimiclab.errors import MimiclabError

    monkeypatch.setenv("MIMICLAB_HOME", str(home))  # a session fixture set up since may have set its own
    with mimiclab.open("mimic-iv-ed-demo") as ds, pytest.raises(MimiclabError) as err:
        ds.patient(10014354)
    assert "no patient view" in str(err.value) and "mimiclab.open('mimic-iv-demo')" in str(err.value)


def test_pl_without_polars_says_how_to_get_it(home, monkeypatch):
    import sys

    import mimiclab
    from mimiclab.errors import MimiclabError

    monkeypatch.setenv("MIMICLAB_HOME", str(home))
    monkeypatch.setitem(sys.modules, "polars", None)  # as if not installed
    with mimiclab.open("mimic-iv-demo") as ds, pytest.raises(MimiclabError, match=r"mimiclab\[polars\]"):
        ds.table("admissions").pl()
