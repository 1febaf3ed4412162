"""Publishing a build into the local PostgreSQL server (127.0.0.1:5432, trust auth), in a throwaway database."""

from __future__ import annotations

import os
import uuid

import duckdb
import pytest

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

ADMIN = os.environ.get("MIMICLAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def dsn():
    name = f"mimiclab_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable at {ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {ADMIN}")
    admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN.rsplit("/", 1)[0] + "/" + name
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def test_publish_ed_demo_matches_raw_and_types(dsn, data_root, mimiclab_home):
    from mimiclab.load import build
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import find
    from mimiclab.store.postgres_store import PostgresStore

    src = data_root / "mimic-iv-ed-demo" / "2.2"
    build("mimic-iv-ed-demo", source=src)
    counts = to_postgres(find("mimic-iv-ed-demo"), dsn)
    with PostgresStore(dsn) as pg:
        for key, n in counts.items():
            raw = duckdb.execute(
                f"SELECT count(*) FROM read_csv_auto('{src}/ed/{key.split('.')[1]}.csv.gz')").fetchone()[0]
            assert n == raw and pg.scalar(f"SELECT count(*) FROM {key}") == raw, key
        assert ("intime", "timestamp without time zone") in pg.columns("mimiciv_ed.edstays")
        assert ("stay_id", "integer") in pg.columns("mimiciv_ed.triage")
        # values survive, NULLs stay NULL and empty strings stay distinct from NULL
        want = duckdb.execute(
            f"SELECT count(*), count(pain), sum(heartrate) FROM read_csv('{src}/ed/triage.csv.gz', "
            "header=true, types={'heartrate': 'DOUBLE'})").fetchone()
        got = pg.arrow("SELECT count(*), count(pain), sum(heartrate) FROM mimiciv_ed.triage")
        assert got.column_names == ["count", "count", "sum"]
        assert tuple(c[0].as_py() for c in got.columns) == pytest.approx(want)
        # read-only store: writes are refused
        with pytest.raises(Exception, match="read-only"):
            pg.arrow("CREATE TABLE mimiciv_ed.x (a int)")


def test_republish_swaps_atomically(dsn, data_root, mimiclab_home):
    from mimiclab.load import build
    from mimiclab.load.postgres import to_postgres
    from mimiclab.sources.registry import find

    build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    to_postgres(find("mimic-iv-ed-demo"), dsn)
    to_postgres(find("mimic-iv-ed-demo"), dsn)  # second time: replaces the schema, leaves no staging schema behind
    with psycopg.connect(dsn) as con:
        schemas = {r[0] for r in con.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mimiciv_ed%'")}
    assert schemas == {"mimiciv_ed"}


def test_bad_dsn_is_a_clear_error_without_password(mimiclab_home, data_root):
    from mimiclab.errors import MimiclabError
    from mimiclab.store.postgres_store import connect

    with pytest.raises(MimiclabError) as err:
        connect("postgresql://alice:sup3rs3cret@127.0.0.1:1/nowhere?connect_timeout=2")
    assert "sup3rs3cret" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_publish_cli_never_prints_the_password(dsn, data_root, mimiclab_home):
    from typer.testing import CliRunner

    from mimiclab.cli import app
    from mimiclab.load import build

    build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    with_pw = dsn.replace("postgres@", "postgres:hunter2pw@")  # trust auth ignores it; it must never show
    out = CliRunner().invoke(app, ["publish", "mimic-iv-ed-demo", "--postgres", with_pw], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "6 tables" in out.output and "hunter2pw" not in out.output and "***" in out.output
