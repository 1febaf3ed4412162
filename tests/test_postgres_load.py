"""Loading builds into the local PostgreSQL server (127.0.0.1:5432, trust auth): typed round trip of the open
demos against plain DuckDB over the raw csv.gz, re-publishing next to users' own objects, OMOP's unqualified
names, row-count validation. Each test gets a throwaway database."""

from __future__ import annotations

import uuid

import duckdb
import pytest
from test_postgres import ADMIN, psycopg

pytestmark = pytest.mark.postgres

DATASETS = {"mimic-iv-demo": "mimic-iv-demo/2.2", "mimic-iv-ed-demo": "mimic-iv-ed-demo/2.2",
            "mimic-iv-demo-omop": "mimic-iv-demo-omop/0.9"}


@pytest.fixture(scope="module")
def built(data_root, tmp_path_factory):
    """The three demos built once into a private MIMICLAB_HOME for this module."""
    from mimiclab.load import build

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        home.chmod(0o700)
        mp.setenv("MIMICLAB_HOME", str(home))
        for slug, folder in DATASETS.items():
            build(slug, source=data_root / folder)
        yield home


@pytest.fixture()
def db(built, monkeypatch):
    monkeypatch.setenv("MIMICLAB_HOME", str(built))
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN}")
    name = f"mimiclab_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN.rsplit("/", 1)[0] + "/" + name
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def publish(slug: str, dsn: str, **kw) -> dict[str, int]:
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import find

    return to_postgres(find(slug), dsn, **kw)


def raw(data_root, folder: str, sql: str):
    """`sql` over raw csv.gz files by plain DuckDB: {f:hosp/admissions} names a file of the dataset."""
    import re

    def file(m):
        path = data_root / folder / f"{m.group(1)}.csv.gz"
        return f"read_csv('{path}', header=true, sample_size=-1)"

    return duckdb.execute(re.sub(r"\{f:([\w/]+)\}", file, sql)).fetchone()


def row(table) -> tuple:
    """The first row of an Arrow table (columns may share a name: count, count)."""
    return tuple(c[0].as_py() for c in table.columns)


def oid(con, qualified: str):
    return con.execute("SELECT to_regclass(%s)::oid", [qualified]).fetchone()[0]


def test_demo_round_trip_matches_raw_files(db, data_root):
    from mimiclab.store.postgres_store import PostgresStore

    counts = publish("mimic-iv-demo", db) | publish("mimic-iv-ed-demo", db)
    with PostgresStore(db) as pg:
        for key, n in counts.items():
            schema, table = key.split(".")
            slug = "mimic-iv-ed-demo" if schema == "mimiciv_ed" else "mimic-iv-demo"
            module = schema.removeprefix("mimiciv_")
            path = data_root / DATASETS[slug] / module / f"{table}.csv.gz"
            want = duckdb.execute(f"SELECT count(*) FROM read_csv('{path}', header=true, all_varchar=true)"
                                  ).fetchone()[0] if path.exists() else 0  # icu/chartevents is absent: empty table
            assert n == want and pg.scalar(f"SELECT count(*) FROM {key}") == want, key
        assert pg.tables()["mimiciv_hosp.labevents"] == counts["mimiciv_hosp.labevents"]  # from the manifest
        assert {m["dataset"] for m in pg.manifests()} == {"mimic-iv-demo", "mimic-iv-ed-demo"}
        # types are mimic-code's
        cols = dict(pg.columns("mimiciv_hosp.admissions"))
        assert cols["admittime"] == "timestamp without time zone" and cols["subject_id"] == "integer"
        assert dict(pg.columns("mimiciv_hosp.patients"))["anchor_age"] == "smallint"
        # values, NULLs and timestamps survive
        hosp = DATASETS["mimic-iv-demo"]
        got = pg.arrow("SELECT sum(anchor_age), count(dod), min(dod) FROM mimiciv_hosp.patients")
        assert row(got) == raw(data_root, hosp, "SELECT sum(anchor_age), count(dod), min(dod) "
                                                           "FROM {f:hosp/patients}")
        got = pg.arrow("SELECT min(admittime), max(dischtime), count(deathtime), count(DISTINCT race) "
                       "FROM mimiciv_hosp.admissions")
        assert row(got) == raw(data_root, hosp, "SELECT min(admittime), max(dischtime), count(deathtime), "
                                                           "count(DISTINCT race) FROM {f:hosp/admissions}")
        # fractions of a second stay (TIMESTAMP(0) rounded 242 procedureevents storetimes): every value, as text
        q = "SELECT strftime(storetime, '%Y-%m-%d %H:%M:%S.%f') FROM {f:icu/procedureevents} WHERE storetime IS NOT NULL"
        got = pg.arrow("SELECT to_char(storetime, 'YYYY-MM-DD HH24:MI:SS.US') FROM mimiciv_icu.procedureevents "
                       "WHERE storetime IS NOT NULL").column(0).to_pylist()
        want = [r[0] for r in duckdb.execute(q.replace("{f:icu/procedureevents}", "read_csv('"
                                             f"{data_root}/{hosp}/icu/procedureevents.csv.gz')")).fetchall()]
        assert sorted(got) == sorted(want) and sum(not w.endswith(".000000") for w in want) > 100
        got = pg.arrow("SELECT count(valuenum), sum(valuenum), count(*) FILTER (WHERE value = '') "
                       "FROM mimiciv_hosp.labevents")
        want = raw(data_root, hosp, "SELECT count(valuenum), sum(valuenum), 0 FROM {f:hosp/labevents}")
        assert row(got) == pytest.approx(want)
        # one workspace: ED stays joined to hospital admissions under mimic-code's names
        join = ("SELECT count(*), sum(a.hospital_expire_flag) FROM mimiciv_ed.edstays e "
                "JOIN mimiciv_hosp.admissions a USING (hadm_id)")
        want = duckdb.execute(join.replace("mimiciv_ed.edstays", f"read_csv('{data_root}/mimic-iv-ed-demo/2.2/ed/"
                                                                  "edstays.csv.gz')")
                              .replace("mimiciv_hosp.admissions", f"read_csv('{data_root}/{hosp}/hosp/"
                                                                  "admissions.csv.gz')")).fetchone()
        assert row(pg.arrow(join)) == want and want[0] > 0
        # mimic-code's concept scripts write into an empty mimiciv_derived
        assert pg.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'mimiciv_derived'") == 1
        assert pg.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'mimiciv_derived'") == 0
        assert pg.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%%mimiclab_new'", []) == 0
    # two datasets in one database: opening it without naming one was the newest (ED), silently
    import mimiclab
    from mimiclab.errors import MimiclabError

    with pytest.raises(MimiclabError, match=r"holds 2 datasets.*mimic-iv-demo, mimic-iv-ed-demo.*name one"):
        mimiclab.open(db)
    n_adm = raw(data_root, hosp, "SELECT count(*) FROM {f:hosp/admissions}")[0]
    ds = mimiclab.open(db, dataset="mimic-iv-demo")
    try:
        assert ds.table("mimiciv_hosp.admissions").count() == n_adm
    finally:
        ds.close()
    from typer.testing import CliRunner

    from mimiclab.cli import app

    q = ["sql", db, "SELECT count(*) AS n FROM mimiciv_hosp.admissions", "--format", "csv"]
    res = CliRunner().invoke(app, q)
    assert res.exit_code == 1 and "--published mimic-iv-demo" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*q, "--published", "mimic-iv-demo"])
    assert res.exit_code == 0 and res.output.split() == ["n", str(n_adm)], res.output
    sid = raw(data_root, hosp, "SELECT min(subject_id) FROM {f:hosp/admissions}")[0]
    res = CliRunner().invoke(app, ["patient", db, str(sid), "--published", "mimic-iv-demo", "--format", "json"])
    assert res.exit_code == 0 and str(sid) in res.output, res.output


def test_republish_keeps_users_views_tables_indexes_and_grants(db, data_root):
    role = f"mimiclab_reader_{uuid.uuid4().hex[:6]}"
    publish("mimic-iv-ed-demo", db)
    ed = data_root / DATASETS["mimic-iv-ed-demo"] / "ed"
    with psycopg.connect(db, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role}")
        try:
            for sql in [
                "CREATE SCHEMA IF NOT EXISTS mimiciv_derived",  # as mimic-code's scripts do (ED alone has none)
                "CREATE VIEW mimiciv_derived.ed_admitted AS SELECT stay_id, intime FROM mimiciv_ed.edstays "
                "WHERE disposition = 'ADMITTED'",
                "CREATE VIEW public.n_admitted AS SELECT count(*) AS n FROM mimiciv_derived.ed_admitted",  # view on view
                "CREATE MATERIALIZED VIEW mimiciv_derived.triage_n AS SELECT count(*) AS n FROM mimiciv_ed.triage",
                "CREATE TABLE mimiciv_derived.my_stays AS SELECT stay_id FROM mimiciv_ed.edstays LIMIT 3",
                "CREATE TABLE mimiciv_ed.my_table (a int)",  # in mimiclab's own schema
                "INSERT INTO mimiciv_ed.my_table VALUES (7)",
                "CREATE INDEX my_edstays_subject ON mimiciv_ed.edstays (subject_id)",
                "ALTER TABLE mimiciv_ed.edstays ADD CONSTRAINT my_edstays_pk PRIMARY KEY (stay_id)",
                # a foreign key between two tables the publish replaces (as mimic-code's constraint script adds)
                "ALTER TABLE mimiciv_ed.triage ADD CONSTRAINT my_triage_fk FOREIGN KEY (stay_id) "
                "REFERENCES mimiciv_ed.edstays (stay_id)",
                f"GRANT SELECT ON mimiciv_ed.edstays TO {role}",
                f"GRANT SELECT ON mimiciv_derived.ed_admitted TO {role}",
            ]:
                con.execute(sql)
            before = oid(con, "mimiciv_ed.edstays")
            con.execute("DELETE FROM mimiciv_ed.edstays WHERE stay_id NOT IN (SELECT stay_id FROM mimiciv_ed.triage)")
            con.execute("UPDATE mimiciv_ed.edstays SET disposition = 'X'")  # the new data must show through the view
            assert con.execute("SELECT n FROM public.n_admitted").fetchone()[0] == 0

            publish("mimic-iv-ed-demo", db)

            assert oid(con, "mimiciv_ed.edstays") != before  # a new table, swapped in
            want = duckdb.execute(f"SELECT count(*) FROM read_csv('{ed}/edstays.csv.gz') "
                                  "WHERE disposition = 'ADMITTED'").fetchone()[0]
            assert want > 0 and con.execute("SELECT n FROM public.n_admitted").fetchone()[0] == want
            triage = duckdb.execute(f"SELECT count(*) FROM read_csv('{ed}/triage.csv.gz')").fetchone()[0]
            assert con.execute("SELECT n FROM mimiciv_derived.triage_n").fetchone()[0] == triage
            assert con.execute("SELECT count(*) FROM mimiciv_derived.my_stays").fetchone()[0] == 3
            assert con.execute("SELECT a FROM mimiciv_ed.my_table").fetchone()[0] == 7
            indexes = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'edstays'")}
            assert indexes == {"my_edstays_subject", "my_edstays_pk"}
            fks = con.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'mimiciv_ed.triage'::regclass")
            assert [r[0] for r in fks] == ["my_triage_fk"]
            for obj in ("mimiciv_ed.edstays", "mimiciv_derived.ed_admitted"):
                assert con.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, obj]).fetchone()[0], obj
            assert not con.execute("SELECT has_table_privilege(%s, 'mimiciv_ed.triage', 'SELECT')",
                                   [role]).fetchone()[0]
            left = con.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%mimiclab_new'").fetchone()[0]
            assert left == 0
        finally:
            con.execute(f"DROP OWNED BY {role}")
            con.execute(f"DROP ROLE {role}")


def test_republish_stops_and_names_what_it_cannot_keep(db):
    from mimiclab.errors import MimiclabError

    publish("mimic-iv-ed-demo", db)
    with psycopg.connect(db, autocommit=True) as con:
        con.execute("ALTER TABLE mimiciv_ed.edstays ADD PRIMARY KEY (stay_id)")
        con.execute("CREATE TABLE public.followup (stay_id int REFERENCES mimiciv_ed.edstays)")
        before = {t: oid(con, t) for t in ("mimiciv_ed.edstays", "mimiciv_ed.triage", "mimiciv_ed.vitalsign")}
        with pytest.raises(MimiclabError, match=r"cannot replace mimiciv_ed\.edstays: .*followup.*Nothing was changed"):
            publish("mimic-iv-ed-demo", db)
        assert {t: oid(con, t) for t in before} == before  # not even the tables before it were swapped
        assert con.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%mimiclab_new'").fetchone()[0] == 0


def test_row_count_mismatch_is_an_error_and_swaps_nothing(db, data_root):
    from mimiclab.errors import MimiclabError
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import Build, find

    publish("mimic-iv-ed-demo", db)
    b = find("mimic-iv-ed-demo")
    tables = dict(b.manifest.tables)
    e = tables["mimiciv_ed.triage"]
    tables["mimiciv_ed.triage"] = e.model_copy(update={"rows": e.rows + 1})
    wrong = Build(b.build_dir, b.manifest.model_copy(update={"tables": tables}))
    with psycopg.connect(db, autocommit=True) as con:
        before = oid(con, "mimiciv_ed.diagnosis"), con.execute("SELECT digest FROM mimiclab.manifests").fetchall()
        with pytest.raises(MimiclabError, match=rf"mimiciv_ed\.triage: {e.rows:,} rows reached PostgreSQL but the "
                                                rf"build's manifest says {e.rows + 1:,}; nothing was replaced"):
            to_postgres(wrong, db)
        assert (oid(con, "mimiciv_ed.diagnosis"), con.execute("SELECT digest FROM mimiclab.manifests").fetchall()) == before
        assert con.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%mimiclab_new'").fetchone()[0] == 0


def test_one_publish_at_a_time(db):
    from mimiclab.errors import MimiclabError
    from mimiclab.load.postgres import LOCK

    with psycopg.connect(db, autocommit=True) as other:  # as a publish running elsewhere holds it
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [LOCK])
        with pytest.raises(MimiclabError, match="another mimiclab publish is loading into this database"):
            publish("mimic-iv-ed-demo", db)
        assert other.execute("SELECT to_regclass('mimiciv_ed.edstays')").fetchone()[0] is None
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [LOCK])
    assert publish("mimic-iv-ed-demo", db)["mimiciv_ed.edstays"] > 0  # once the other has finished


def test_omop_tables_answer_to_unqualified_names(db, data_root):
    from mimiclab.store.postgres_store import PostgresStore

    publish("mimic-iv-demo-omop", db)
    want = raw(data_root, DATASETS["mimic-iv-demo-omop"], "SELECT count(*) FROM read_csv('"
               + str(data_root / DATASETS["mimic-iv-demo-omop"] / "1_omop_data_csv/person.csv") + "')")[0]
    with psycopg.connect(db) as con:  # any client: the database's search_path has cdm
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == want == 100
        con.execute("ALTER DATABASE " + db.rsplit("/", 1)[1] + " RESET search_path")
    with PostgresStore(db) as pg:  # mimiclab's own connections set it themselves
        assert pg.scalar("SELECT count(*) FROM person") == 100
        assert ("person_id", "bigint") in pg.columns("person")


def test_build_backend_postgres_loads_the_build(db, data_root, mimiclab_home):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    src = data_root / DATASETS["mimic-iv-ed-demo"]
    out = CliRunner().invoke(app, ["build", "mimic-iv-ed-demo", "--source", str(src), "--backend", "postgres",
                                   "--postgres", db.replace("postgres@", "postgres:hunter2pw@")],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "6 tables" in out.output and "hunter2pw" not in out.output
    with psycopg.connect(db) as con:
        n = con.execute("SELECT count(*) FROM mimiciv_ed.edstays").fetchone()[0]
    assert n == duckdb.execute(f"SELECT count(*) FROM read_csv('{src}/ed/edstays.csv.gz')").fetchone()[0]
    out = CliRunner().invoke(app, ["build", "mimic-iv-ed-demo", "--source", str(src), "--backend", "postgres"],
                             env={"COLUMNS": "200", "MIMICLAB_POSTGRES_DSN": ""})
    assert out.exit_code != 0 and "--backend postgres needs --postgres" in out.output
