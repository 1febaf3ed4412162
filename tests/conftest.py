"""Shared fixtures. Real demo data is read in place from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """No test may reach the real physionet.org or the user's keyring: default to a dead loopback port."""
    os.environ.setdefault("MIMICLAB_PHYSIONET_URL", "http://127.0.0.1:9")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


@pytest.fixture(autouse=True)
def _default_duckdb_finished():
    """Oracles query the raw files on DuckDB's default connection (`duckdb.execute(...).fetchone()`); since
    DuckDB 2.0 a result left unread blocks that connection for every later test, so it is finished after each."""
    yield
    import duckdb

    with contextlib.suppress(Exception):
        duckdb.default_connection().abort()


def _data_root() -> Path:
    return Path(os.environ.get("MIMICLAB_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder of PhysioNet demo datasets in PhysioNet's layout. In CI, missing data fails instead of skipping."""
    root = _data_root()
    if not (root / "mimic-iv-demo" / "2.2").is_dir():
        msg = f"demo data not found at {root} (set MIMICLAB_TEST_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def demo_dir(data_root: Path) -> Path:
    return data_root / "mimic-iv-demo" / "2.2"


@pytest.fixture()
def mimiclab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $MIMICLAB_HOME per test, so tests never touch the user's data or each other's."""
    home = tmp_path / "mimiclab-home"
    monkeypatch.setenv("MIMICLAB_HOME", str(home))
    return home


def write_notes(dest: Path) -> list[dict]:
    """A made-up MIMIC-IV-Note folder (note/discharge.csv.gz, note/radiology.csv.gz) for two demo patients.

    The real notes are credentialed and not in the shared data. These texts have what real discharge
    summaries have and CSV loaders trip on: newlines, commas and doubled quotes inside a quoted field.
    Returns the notes as the workbench should show them (subject_id, time, title, subtitle, text).
    """
    import csv
    import gzip

    notes = {
        "discharge": [
            ("10000032-DS-21", 10000032, 22595853, "DS", 21, "2180-05-07 00:00:00", "2180-05-09 15:26:00",
             'Name: ___\nChief Complaint: abdominal distention\n\nHistory: "worsening" ascites, "tense", paracentesis.'),
            ("10000032-DS-22", 10000032, 22841357, "DS", 22, "2180-06-27 00:00:00", "2180-07-01 10:15:00",
             "Discharge Diagnosis:\n1. Cirrhosis, decompensated\n2. Hyponatremia"),
        ],
        "radiology": [
            ("10000032-RR-14", 10000032, 22595853, "RR", 14, "2180-05-06 21:19:00", "2180-05-06 23:32:00",
             "EXAMINATION: Chest (PA and lateral)\nIMPRESSION: No acute process."),
            ("10001217-RR-7", 10001217, None, "RR", 7, "2157-11-18 08:00:00", "2157-11-18 09:00:00",
             "EXAMINATION: CT head\nIMPRESSION: Unremarkable."),
        ],
    }
    header = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    (dest / "note").mkdir(parents=True, exist_ok=True)
    for table, rows in notes.items():
        with gzip.open(dest / "note" / f"{table}.csv.gz", "wt", newline="") as fh:
            w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            w.writerow(header)
            w.writerows(["" if v is None else v for v in r] for r in rows)
    return [{"subject_id": r[1], "time": r[5], "title": r[3], "subtitle": r[0], "text": r[7]}
            for rows in notes.values() for r in rows]


# ------------------------------------------------------------------------------------------- backends
PG_ADMIN = os.environ.get("MIMICLAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("duckdb", "postgres")


def _pg_admin():
    """A connection to the local PostgreSQL server; in CI a missing server fails instead of skipping."""
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")


@pytest.fixture(scope="session")
def demo_build(demo_dir: Path, tmp_path_factory):
    """The MIMIC-IV demo built once per session into its own $MIMICLAB_HOME (a registry Build: absolute paths,
    usable whatever $MIMICLAB_HOME a test sets later)."""
    home = tmp_path_factory.mktemp("backend-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        from mimiclab.load import build
        from mimiclab.sources.registry import find

        build("mimic-iv-demo", source=demo_dir)
        yield find("mimic-iv-demo")


@pytest.fixture(scope="session")
def pg_demo_url(demo_build):
    """The same build published into a throwaway PostgreSQL database (dropped at the end of the session)."""
    import uuid

    from mimiclab.load.postgres import to_postgres

    admin = _pg_admin()
    name = f"mimiclab_backend_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        to_postgres(demo_build, url)
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=BACKENDS)
def backend_source(request, demo_build):
    """The demo as a Source on each backend: a local DuckDB build, and the same data on PostgreSQL. Tests that
    compare API, cohort and web results with independent SQL take this fixture, so they run on both."""
    if request.param == "duckdb":
        return demo_build
    from mimiclab.sources import open_postgres

    return open_postgres(request.getfixturevalue("pg_demo_url"), "mimic-iv-demo", "2.2")
