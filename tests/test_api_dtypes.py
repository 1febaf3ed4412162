"""One dtype policy for every pandas frame the API returns (docs/api.md), checked on the real demo against
DuckDB SQL over the raw csv.gz (no mimiclab code)."""

from __future__ import annotations

import datetime as dt
import decimal

import duckdb
import numpy as np
import pandas as pd
import pytest
from test_api_dataset import home  # noqa: F401 - the three demos, built once per session

import mimiclab
from mimiclab import MIMICDataset
from mimiclab.errors import QueryError

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")

SID = 10014729  # a demo patient with a date of death (patients.dod)


@pytest.fixture(scope="module")
def ds(home):  # noqa: F811
    return mimiclab.open("mimic-iv-demo")


def raw(demo_dir, rel: str) -> str:
    return f"read_csv_auto('{demo_dir / rel}', header=true, sample_size=-1)"


def no_python_objects(df: pd.DataFrame) -> None:
    """No datetime.date, Decimal or other Python objects hiding in object columns."""
    for c in df.columns:
        vals = df[c].dropna().tolist()[:50]
        assert not any(isinstance(v, (dt.date, decimal.Decimal)) and not isinstance(v, pd.Timestamp)
                       for v in vals), (c, df[c].dtype)


def test_every_path_gives_dates_as_datetime64_and_small_ints_as_int64(ds, demo_dir):
    frames = {
        "sql": ds.sql("SELECT * FROM mimiciv_hosp.patients"),
        "table": ds.table("patients").df(),
        "head": ds.table("patients").head(100),
        "seed": MIMICDataset("mimic-iv-demo", ["hosp/patients"]).data["hosp/patients"],
    }
    for name, df in frames.items():
        assert pd.api.types.is_datetime64_dtype(df["dod"]), (name, df["dod"].dtype)
        assert df["anchor_year"].dtype in (np.dtype("int64"), pd.Int64Dtype()), (name, df["anchor_year"].dtype)
        no_python_objects(df)
    df = frames["table"].set_index("subject_id").sort_index()
    # the frame's own arithmetic no longer wraps around at 32767 (int16 gave -16282 here)
    want = dict(duckdb.execute(f"SELECT subject_id, CAST(anchor_year AS BIGINT) * 365 FROM "
                               f"{raw(demo_dir, 'hosp/patients.csv.gz')}").fetchall())
    assert (df["anchor_year"] * 365).to_dict() == want
    dod = dict(duckdb.execute(f"SELECT subject_id, dod FROM {raw(demo_dir, 'hosp/patients.csv.gz')} "
                              f"WHERE dod IS NOT NULL").fetchall())
    assert {k: v.date() for k, v in df["dod"].dropna().items()} == dod
    assert frames["sql"]["dod"].dtype == frames["seed"]["dod"].dtype == frames["table"]["dod"].dtype


def test_aggregates_come_back_as_numbers_not_decimals(ds, demo_dir):
    got = ds.sql("SELECT sum(anchor_age) AS s, sum(anchor_age * 1.5) AS s15, avg(anchor_age) AS a, "
                 "count(*) AS n, sum(CAST(subject_id AS HUGEINT)) AS big FROM mimiciv_hosp.patients")
    no_python_objects(got)
    s, s15, a, n, big = duckdb.execute(
        f"SELECT sum(anchor_age)::BIGINT, sum(anchor_age) * 1.5, avg(anchor_age), count(*), sum(subject_id)::BIGINT "
        f"FROM {raw(demo_dir, 'hosp/patients.csv.gz')}").fetchone()
    row = got.iloc[0]
    assert got["s"].dtype in (np.dtype("int64"), pd.Int64Dtype()) and row["s"] == s
    assert got["s15"].dtype == np.float64 and row["s15"] == pytest.approx(float(s15))
    assert got["a"].dtype == np.float64 and row["a"] == pytest.approx(a)
    assert row["n"] == n and row["big"] == big and got["big"].dtype in (np.dtype("int64"), pd.Int64Dtype())


def test_a_hugeint_beyond_int64_becomes_float_not_an_error(ds):
    got = ds.sql("SELECT CAST(2 AS HUGEINT) ** 70 AS x, CAST('170141183460469231731687303715884105727' AS HUGEINT) AS y")
    assert got["y"].dtype == np.float64 and got["y"][0] == pytest.approx(1.7014118346046923e38)


def test_patient_frames_follow_the_policy(ds, demo_dir):
    p = ds.patient(SID)
    for name in ("admissions", "icustays", "transfers", "stays", "timeline"):
        df = getattr(p, name)
        df = df() if callable(df) else df
        no_python_objects(df)
        for c in df.columns:
            assert df[c].dtype != np.int16 and df[c].dtype != np.int32, (name, c)
    adm = p.admissions
    assert pd.api.types.is_datetime64_dtype(adm["admittime"])
    want = duckdb.execute(f"SELECT count(*) FROM {raw(demo_dir, 'hosp/admissions.csv.gz')} "
                          f"WHERE subject_id = {SID}").fetchone()[0]
    assert len(adm) == want > 0


def test_smallint_overflow_in_sql_says_how_to_fix_it(ds):
    with pytest.raises(QueryError, match=r"CAST\(anchor_year AS INTEGER\)|CAST\(.* AS INTEGER\)"):
        ds.sql("SELECT anchor_year * 365 FROM mimiciv_hosp.patients")
    assert len(ds.sql("SELECT CAST(anchor_year AS INTEGER) * 365 AS d FROM mimiciv_hosp.patients")) == 100
