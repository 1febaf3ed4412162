"""mimiclab.open -> Dataset on the real demos, checked against plain DuckDB SQL over the raw csv files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import mimiclab
from mimiclab.api import Dataset, UnknownNameError
from mimiclab.errors import NotBuiltError
from mimiclab.load import build

# the API fetches point lookups with execute() + Arrow on purpose (see Dataset.fetch)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")

DEMOS = {"mimic-iv-demo": "2.2", "mimiciii-demo": "1.4", "mimic-iv-demo-omop": "0.9"}


def api_home(tmp_path_factory, data_root, mp: pytest.MonkeyPatch) -> Path:
    """One MIMICLAB_HOME with the three demos built, shared by the test_api_* modules of a session (the
    second module's build only re-checks checksums)."""
    home = tmp_path_factory.getbasetemp() / "api-demos-home"
    mp.setenv("MIMICLAB_HOME", str(home))
    for slug, ver in DEMOS.items():
        res = build(slug, source=data_root / slug / ver)
        assert not res.failed
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory, data_root):
    with pytest.MonkeyPatch.context() as mp:
        yield api_home(tmp_path_factory, data_root, mp)


@pytest.fixture(scope="module")
def ds(home) -> Dataset:
    return mimiclab.open("mimic-iv-demo")


def raw(path: Path) -> str:
    """Oracle: DuckDB's own csv reader over the raw file (no mimiclab code)."""
    return f"read_csv_auto('{path}', header=true, sample_size=-1)"


def q(sql: str, params=None):
    return duckdb.execute(sql, params or []).fetchall()


def test_lazy_exports_keep_import_light():
    code = "import sys, mimiclab; assert 'pandas' not in sys.modules; print(mimiclab.open.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "mimiclab.api.dataset"
    assert mimiclab.MIMICDataset.__name__ == "MIMICDataset"


def test_tables_have_raw_row_counts(ds, demo_dir):
    tables = ds.tables
    for key, file in [("mimiciv_hosp.admissions", "hosp/admissions"), ("mimiciv_icu.icustays", "icu/icustays"),
                      ("mimiciv_hosp.labevents", "hosp/labevents")]:
        assert tables[key] == q(f"SELECT count(*) FROM {raw(demo_dir / (file + '.csv.gz'))}")[0][0]
    assert tables["mimiciv_icu.chartevents"] == 0  # not in this copy of the demo
    info = ds.table_info().set_index("table")
    assert info.loc["mimiciv_icu.chartevents", "status"] == "not_loaded"


def test_table_names_resolve_and_frames_agree(ds, demo_dir):
    a = ds.table("mimiciv_hosp.admissions")
    for alias in ("admissions", "hosp/admissions", "ADMISSIONS"):
        assert ds.table(alias).name == "mimiciv_hosp.admissions"
    n, ncols = q(f"SELECT count(*), (SELECT count(*) FROM (DESCRIBE SELECT * FROM {raw(demo_dir / 'hosp/admissions.csv.gz')})) "
                 f"FROM {raw(demo_dir / 'hosp/admissions.csv.gz')}")[0]
    assert a.count() == n
    assert a.df().shape == (n, ncols)
    assert a.pl().shape == (n, ncols)
    assert a.arrow().num_rows == n
    emerg = a.filter("admission_type = 'EW EMER.'").select("subject_id", "hadm_id").df()
    assert len(emerg) == q(f"SELECT count(*) FROM {raw(demo_dir / 'hosp/admissions.csv.gz')} "
                           f"WHERE admission_type = 'EW EMER.'")[0][0]
    assert list(emerg.columns) == ["subject_id", "hadm_id"]


def test_sql_with_parameters(ds, demo_dir):
    df = ds.sql("SELECT hadm_id FROM mimiciv_hosp.admissions WHERE subject_id = ? ORDER BY hadm_id", [10000032])
    want = [r[0] for r in q(f"SELECT hadm_id FROM {raw(demo_dir / 'hosp/admissions.csv.gz')} "
                            f"WHERE subject_id = 10000032 ORDER BY 1")]
    assert df["hadm_id"].tolist() == want and want


def test_describe_matches_sql_over_the_raw_file(ds, demo_dir):
    d = ds.describe("admissions").set_index("column")
    src = raw(demo_dir / "hosp/admissions.csv.gz")
    n, nulls, distinct = q(f"SELECT count(*), count(*) - count(deathtime), count(DISTINCT deathtime) FROM {src}")[0]
    assert d.loc["deathtime", "null_pct"] == round(100 * nulls / n, 2)
    assert d.loc["deathtime", "distinct"] == distinct
    lo, hi = q(f"SELECT min(hadm_id), max(hadm_id) FROM {src}")[0]
    assert (int(d.loc["hadm_id", "min"]), int(d.loc["hadm_id", "max"])) == (lo, hi)
    top = q(f"SELECT admission_type, count(*) n FROM {src} GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1")[0]
    assert d.loc["admission_type", "top_values"].startswith(f"{top[0]} ({top[1]:,})")
    assert d.loc["admission_type", "type"] == "VARCHAR"
    assert "admitted" in d.loc["admittime", "description"].lower()


def test_numeric_distribution_is_numpys_histogram(ds, demo_dir):
    vals = pd.read_csv(demo_dir / "hosp/labevents.csv.gz", usecols=["valuenum"])["valuenum"].dropna()
    dist = ds.distribution("labevents", "valuenum", bins=37)
    counts, edges = np.histogram(vals, bins=37)
    assert dist.attrs["kind"] == "numeric"
    assert dist["count"].tolist() == counts.tolist()
    np.testing.assert_allclose(dist["bin_start"], edges[:-1])
    assert dist.attrs["nulls"] == q(f"SELECT count(*) - count(valuenum) FROM {raw(demo_dir / 'hosp/labevents.csv.gz')}")[0][0]


def test_grouped_and_temporal_distributions(ds, demo_dir):
    pat = pd.read_csv(demo_dir / "hosp/patients.csv.gz")
    dist = ds.distribution("patients", "anchor_age", by="gender", bins=8)
    edges = np.histogram_bin_edges(pat["anchor_age"], bins=8)
    for g, sub in pat.groupby("gender"):
        got = dist[dist["gender"] == g]["count"].tolist()
        assert got == np.histogram(sub["anchor_age"], bins=edges)[0].tolist()
    adm = pd.to_datetime(pd.read_csv(demo_dir / "hosp/admissions.csv.gz")["admittime"])
    tdist = ds.distribution("admissions", "admittime", bins=12)
    us = adm.astype("datetime64[us]").astype("int64").astype(float)
    assert tdist["count"].tolist() == np.histogram(us, bins=12)[0].tolist()
    assert tdist["bin_start"].iloc[0] == adm.min()


def test_categorical_distribution_counts_and_top(ds, demo_dir):
    src = raw(demo_dir / "hosp/admissions.csv.gz")
    want = q(f"SELECT admission_location, count(*) n FROM {src} WHERE admission_location IS NOT NULL "
             f"GROUP BY 1 ORDER BY n DESC, 1")
    dist = ds.distribution("admissions", "admission_location", top=3)
    assert dist["value"].tolist()[:3] == [w[0] for w in want[:3]]
    assert dist["count"].tolist() == [w[1] for w in want[:3]] + [sum(w[1] for w in want[3:])]
    assert dist["value"].iloc[-1] == "(other)"
    flag = ds.distribution("admissions", "hospital_expire_flag")  # integer with two values: categorical
    assert flag.attrs["kind"] == "categorical"
    assert dict(zip(flag["value"], flag["count"], strict=True)) == {
        str(k): v for k, v in q(f"SELECT hospital_expire_flag, count(*) FROM {src} GROUP BY 1")}


def test_plot_distribution_bars_and_files(ds, demo_dir, tmp_path):
    fig = ds.plot_distribution("patients", "anchor_age", bins=20, path=tmp_path / "age.html")
    assert len(fig.data) == 1 and len(fig.data[0].y) == 20
    ages = pd.read_csv(demo_dir / "hosp/patients.csv.gz")["anchor_age"]
    assert list(fig.data[0].y) == np.histogram(ages, bins=20)[0].tolist()
    html = (tmp_path / "age.html").read_text()
    # plotly.js embedded (megabytes), nothing fetched from a CDN: works offline
    assert len(html) > 1_000_000 and 'src="http' not in html
    fig2 = ds.plot_distribution("admissions", "race", by="insurance", path=tmp_path / "race.png")
    assert (tmp_path / "race.png").read_bytes()[:4] == b"\x89PNG"
    n_ins = q(f"SELECT count(DISTINCT insurance) FROM {raw(demo_dir / 'hosp/admissions.csv.gz')}")[0][0]
    assert len(fig2.data) == n_ins


def test_unknown_table_column_and_patient_suggest(ds, demo_dir):
    with pytest.raises(UnknownNameError, match="admissions"):
        ds.table("admisions")
    with pytest.raises(KeyError, match="anchor_age"):
        ds.distribution("patients", "anchor_agee")
    ids = [r[0] for r in q(f"SELECT subject_id FROM {raw(demo_dir / 'hosp/patients.csv.gz')} "
                           f"ORDER BY abs(subject_id - 10000033), subject_id LIMIT 3")]
    with pytest.raises(UnknownNameError) as err:
        ds.patient(10000033)
    assert f"Nearest existing: {', '.join(map(str, ids))}" in str(err.value)


def test_not_built_names_the_command(home):
    with pytest.raises(NotBuiltError, match=r"mimiclab download mimiciv.*mimiclab build mimiciv"):
        mimiclab.open("mimiciv")
    with pytest.raises(Exception, match="mimic-iv-demo"):
        mimiclab.open("mimic-iv-dem")


def test_open_a_raw_folder_or_a_build_folder(home, data_root, ds, tmp_path):
    from mimiclab.sources.registry import find

    folder = data_root / "mimiciii-demo" / "1.4"
    assert mimiclab.open(folder).build.build_dir == find("mimiciii-demo").build_dir  # built already: reused
    copy = tmp_path / "m3"
    copy.mkdir()
    for f in ("ADMISSIONS.csv", "PATIENTS.csv"):
        shutil.copy2(folder / f, copy / f)
    d3 = mimiclab.open(copy)
    assert d3.slug == "mimiciii-demo" and d3.build.build_dir.parent.name == "folders"
    assert d3.tables["mimiciii.admissions"] == q(f"SELECT count(*) FROM {raw(folder / 'ADMISSIONS.csv')}")[0][0]
    assert d3.tables["mimiciii.icustays"] == 0
    again = mimiclab.open(ds.build.build_dir)
    assert again.tables == ds.tables


def test_find_patient_by_any_id(ds, demo_dir):
    hadm, sid = q(f"SELECT hadm_id, subject_id FROM {raw(demo_dir / 'hosp/admissions.csv.gz')} ORDER BY hadm_id LIMIT 1")[0]
    assert ds.find_patient(hadm_id=hadm) == sid
    stay, sid2 = q(f"SELECT stay_id, subject_id FROM {raw(demo_dir / 'icu/icustays.csv.gz')} ORDER BY stay_id DESC LIMIT 1")[0]
    assert ds.find_patient(stay_id=stay) == sid2
    assert ds.find_patient(subject_id=sid) == sid
    with pytest.raises(UnknownNameError, match="hadm_id"):
        ds.find_patient(hadm_id=1)
    with pytest.raises(Exception, match="exactly one"):
        ds.find_patient(hadm_id=hadm, stay_id=stay)


def test_a_double_holding_a_few_whole_levels_is_categorical(tmp_path):
    """Hand-worked: levels stored as DOUBLE (ED triage acuity) are counted per level like an integer code;
    whole numbers more than 9 apart, or any fraction, keep the histogram."""
    import duckdb

    from mimiclab.api.describe import counts
    from mimiclab.store.duckdb_store import DuckDBStore

    db = tmp_path / "t.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA s; CREATE TABLE s.t (levels DOUBLE, wide DOUBLE, frac DOUBLE, ends DOUBLE)")
    con.execute("INSERT INTO s.t VALUES (1, 1, 1, 1.5), (2, 11, 1.5, 2), (2, 1, 3, 3), (NULL, NULL, NULL, NULL)")
    con.close()
    st = DuckDBStore(db)
    try:
        got = counts(st, "s.t", "levels", "DOUBLE")
        assert (got.kind, got.categories, got.counts["all"], got.nulls) == ("categorical", ["2", "1"], [2, 1], 1)
        for col in ("wide", "frac", "ends"):
            res = counts(st, "s.t", col, "DOUBLE", bins=4)
            assert res.kind == "numeric" and sum(res.counts["all"]) == 3, col
        assert counts(st, "s.t", "levels", "DOUBLE", kind="numeric").kind == "numeric"  # asked for: as asked
    finally:
        st.close()
