"""Build: real demos in, typed database out, checked against plain DuckDB over the raw files."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from mimiclab import catalog
from mimiclab.errors import NotBuiltError
from mimiclab.load import build
from mimiclab.load import manifest as mf
from mimiclab.sources.registry import find

DEMOS = [
    ("mimic-iv-demo", "2.2"),
    ("mimic-iv-ed-demo", "2.2"),
    ("mimiciii-demo", "1.4"),
    ("mimic-iv-demo-omop", "0.9"),
]


def raw_count(path: Path) -> int:
    """Independent oracle: DuckDB's own sniffer over the raw file, no mimiclab code involved."""
    return duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{path}', header=true, sample_size=-1)").fetchone()[0]


@pytest.fixture(scope="module")
def built_demos(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        results = {slug: build(slug, source=data_root / slug / ver) for slug, ver in DEMOS}
        yield home, results


@pytest.mark.parametrize("slug,version", DEMOS)
def test_every_demo_table_matches_raw_row_counts(built_demos, data_root, slug, version):
    _, results = built_demos
    res = results[slug]
    assert not res.failed
    src = data_root / slug / version
    con = duckdb.connect(str(res.database), read_only=True)
    present = 0
    for key, entry in res.manifest.tables.items():
        n = con.execute(f"SELECT count(*) FROM {key}").fetchone()[0]
        if entry.status == "loaded":
            present += 1
            assert n == raw_count(src / entry.source_file), key
        else:
            assert n == 0, key
    # every data file in the folder that the catalog knows was loaded
    ds = catalog.get(slug)
    expected_files = [t for t in ds.tables(version) if any((src / (t.file + e)).exists() for e in (".csv", ".csv.gz"))]
    assert present == len(expected_files) > 0


def test_schema_names_and_types_follow_mimic_code(built_demos):
    _, results = built_demos
    con = duckdb.connect(str(results["mimic-iv-demo"].database), read_only=True)
    types = dict(con.execute(
        "SELECT table_schema || '.' || table_name || '.' || column_name, data_type FROM information_schema.columns"
    ).fetchall())
    assert types["mimiciv_hosp.admissions.admittime"] == "TIMESTAMP"
    assert types["mimiciv_hosp.admissions.subject_id"] == "INTEGER"
    assert types["mimiciv_hosp.patients.dod"] == "DATE"
    assert types["mimiciv_hosp.labevents.valuenum"] == "DOUBLE"
    assert types["mimiciv_icu.icustays.los"] == "DOUBLE"
    con3 = duckdb.connect(str(results["mimiciii-demo"].database), read_only=True)
    (n,) = con3.execute("SELECT count(*) FROM mimiciii.admissions WHERE admittime < dischtime").fetchone()
    assert n > 100  # timestamps are real timestamps, comparable
    omop = duckdb.connect(str(results["mimic-iv-demo-omop"].database), read_only=True)
    assert omop.execute("SELECT count(*) FROM person").fetchone() == omop.execute("SELECT count(*) FROM cdm.person").fetchone()


def test_typed_values_equal_raw_values(built_demos, demo_dir):
    """Same rows and values as the csv: compare a whole table with EXCEPT against the raw file read as text."""
    _, results = built_demos
    con = duckdb.connect(str(results["mimic-iv-demo"].database), read_only=True)
    raw = f"read_csv('{demo_dir}/hosp/admissions.csv.gz', all_varchar=true, header=true)"
    diff = con.execute(
        f"""SELECT count(*) FROM (
              SELECT subject_id::VARCHAR, hadm_id::VARCHAR, strftime(admittime, '%Y-%m-%d %H:%M:%S'),
                     strftime(deathtime, '%Y-%m-%d %H:%M:%S'), race, hospital_expire_flag::VARCHAR
              FROM mimiciv_hosp.admissions
              EXCEPT
              SELECT subject_id, hadm_id, admittime, deathtime, race, hospital_expire_flag FROM {raw})"""
    ).fetchone()[0]
    assert diff == 0


def test_missing_file_is_empty_typed_table_flagged_not_loaded(built_demos):
    home, results = built_demos
    m = results["mimic-iv-demo"].manifest
    ce = m.tables["mimiciv_icu.chartevents"]
    assert ce.status == "not_loaded" and ce.rows == 0
    con = duckdb.connect(str(results["mimic-iv-demo"].database), read_only=True)
    cols = con.execute("DESCRIBE mimiciv_icu.chartevents").fetchall()
    assert ("valuenum", "DOUBLE") in [(c[0], c[1]) for c in cols]
    # SQL that mentions it still runs
    q = ("SELECT count(*) FROM mimiciv_icu.icustays ie LEFT JOIN mimiciv_icu.chartevents ce "
         "ON ce.stay_id = ie.stay_id")
    assert con.execute(q).fetchone()[0] >= 140
    from typer.testing import CliRunner

    from mimiclab.cli import app

    out = CliRunner().invoke(app, ["info", "mimic-iv-demo"], env={"MIMICLAB_HOME": str(home), "COLUMNS": "200"})
    assert out.exit_code == 0
    line = next(ln for ln in out.output.splitlines() if "mimiciv_icu.chartevents" in ln)
    assert "not loaded" in line


def test_mimic_code_concept_sql_runs_unchanged(built_demos, demo_dir, tmp_path):
    """A mimic-code-style derived script (CREATE TABLE mimiciv_derived.x AS ...) on a writable copy."""
    _, results = built_demos
    db = tmp_path / "copy.duckdb"
    shutil.copy(results["mimic-iv-demo"].database, db)
    con = duckdb.connect(str(db))
    con.execute(
        """DROP TABLE IF EXISTS mimiciv_derived.age; CREATE TABLE mimiciv_derived.age AS
        SELECT ad.subject_id, ad.hadm_id, ad.admittime, pa.anchor_age, pa.anchor_year,
          pa.anchor_age + DATE_DIFF('YEAR', MAKE_TIMESTAMP(pa.anchor_year, 1, 1, 0, 0, 0), ad.admittime) AS age
        FROM mimiciv_hosp.admissions AS ad INNER JOIN mimiciv_hosp.patients AS pa ON ad.subject_id = pa.subject_id"""
    )
    got = dict(con.execute("SELECT hadm_id, age FROM mimiciv_derived.age").fetchall())
    # independent: raw csv.gz, computed in Python
    raw = duckdb.execute(
        f"""SELECT a.hadm_id, a.admittime, p.anchor_age, p.anchor_year
            FROM read_csv_auto('{demo_dir}/hosp/admissions.csv.gz') a
            JOIN read_csv_auto('{demo_dir}/hosp/patients.csv.gz') p USING (subject_id)"""
    ).fetchall()
    want = {h: int(age) + (int(str(t)[:4]) - int(year)) for h, t, age, year in raw}
    assert got == want and len(got) == 275


def test_rebuild_is_idempotent_and_force_reloads(data_root, mimiclab_home):
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    first = build("mimic-iv-ed-demo", source=src)
    assert len(first.loaded) == 6
    again = build("mimic-iv-ed-demo", source=src)
    assert again.loaded == [] and len(again.skipped) == 6
    assert {k: e.parquet for k, e in again.manifest.tables.items()} == {k: e.parquet for k, e in first.manifest.tables.items()}
    forced = build("mimic-iv-ed-demo", source=src, force=True)
    assert len(forced.loaded) == 6


def test_changed_source_file_reloads_only_that_table(data_root, mimiclab_home, tmp_path):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    build("mimic-iv-ed-demo", source=src)
    with gzip.open(src / "ed" / "edstays.csv.gz", "rt") as fh:
        lines = fh.readlines()
    with gzip.open(src / "ed" / "edstays.csv.gz", "wt") as fh:
        fh.writelines(lines[:11])  # header + 10 rows
    res = build("mimic-iv-ed-demo", source=src)
    assert res.loaded == ["mimiciv_ed.edstays"]
    assert res.manifest.tables["mimiciv_ed.edstays"].rows == 10
    assert res.manifest.tables["mimiciv_ed.edstays"].count_check == "mismatch"
    assert any("edstays" in w for w in res.warnings)


def test_selective_build_keeps_other_tables(data_root, mimiclab_home):
    src = data_root / "mimic-iv-demo" / "2.2"
    res = build("mimic-iv-demo", source=src, tables=["patients", "admissions"])
    assert sorted(res.loaded) == ["mimiciv_hosp.admissions", "mimiciv_hosp.patients"]
    assert res.manifest.tables["mimiciv_hosp.labevents"].status == "not_loaded"
    res2 = build("mimic-iv-demo", source=src, modules=["icu"])
    assert res2.manifest.tables["mimiciv_hosp.patients"].status == "loaded"  # kept from the first build
    assert res2.manifest.tables["mimiciv_icu.icustays"].rows == 140


def _corrupt(src: Path, rel: str, transform) -> None:
    p = src / rel
    data = gzip.decompress(p.read_bytes()).decode()
    p.write_bytes(gzip.compress(transform(data).encode()))


@pytest.mark.parametrize(
    "case",
    ["truncated_gzip", "wrong_header", "bad_value"],
)
def test_malformed_file_names_file_line_column_and_keeps_previous_build(data_root, mimiclab_home, tmp_path, case):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    good = build("mimic-iv-ed-demo", source=src)
    db = good.database
    before = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM mimiciv_ed.triage").fetchone()[0]
    target = src / "ed" / "triage.csv.gz"
    if case == "truncated_gzip":
        blob = target.read_bytes()
        target.write_bytes(blob[: len(blob) // 2])
        expect = ["triage.csv.gz", "gzip"]
    elif case == "wrong_header":
        _corrupt(src, "ed/triage.csv.gz", lambda d: d.replace("heartrate", "heart_rate", 1))
        expect = ["triage.csv.gz", "line 1", "heartrate"]
    else:
        def bad(d: str) -> str:
            lines = d.split("\n")
            cells = lines[5].split(",")
            cells[1] = "not-a-number"  # stay_id, an INTEGER
            lines[5] = ",".join(cells)
            return "\n".join(lines)

        _corrupt(src, "ed/triage.csv.gz", bad)
        expect = ["triage.csv.gz", "line 6", "column stay_id", "not-a-number"]
    res = build("mimic-iv-ed-demo", source=src)
    err = res.failed["mimiciv_ed.triage"]
    for word in expect:
        assert word.lower() in err.lower(), (word, err)
    # previous build intact: same rows still queryable, other tables unaffected, nothing half-written
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM mimiciv_ed.triage").fetchone()[0] == before
    assert con.execute("SELECT count(*) FROM mimiciv_ed.edstays").fetchone()[0] == 222
    assert not list(good.build_dir.rglob("*.tmp-*"))


def test_build_error_surfaces_in_cli_with_exit_code(data_root, mimiclab_home, tmp_path):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    _corrupt(src, "ed/pyxis.csv.gz", lambda d: d.replace("\n", "\nxx,", 2)[::1])
    out = CliRunner().invoke(app, ["build", "mimic-iv-ed-demo", "--source", str(src)])
    assert out.exit_code == 1
    assert "pyxis.csv.gz" in out.output


def test_interrupt_midway_leaves_previous_build_usable(data_root, mimiclab_home, monkeypatch):
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    first = build("mimic-iv-ed-demo", source=src)
    manifest_before = (first.build_dir / mf.MANIFEST).read_text()
    import mimiclab.load as b

    calls = {"n": 0}
    real = b.load_csv_to_parquet

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(b, "load_csv_to_parquet", flaky)
    with pytest.raises(KeyboardInterrupt):
        build("mimic-iv-ed-demo", source=src, force=True)
    assert (first.build_dir / mf.MANIFEST).read_text() == manifest_before
    con = duckdb.connect(str(first.database), read_only=True)
    assert con.execute("SELECT count(*) FROM mimiciv_ed.vitalsign").fetchone()[0] == 1038
    for e in first.manifest.tables.values():
        assert (first.build_dir / e.parquet).exists()


@pytest.mark.slow
def test_sigkill_during_build_keeps_previous_build_and_next_run_cleans_up(data_root, mimiclab_home, tmp_path):
    """A real kill -9 of a build process midway through a large table."""
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    # make vitalsign big enough that the build is still running when killed
    rows = gzip.decompress((src / "ed" / "vitalsign.csv.gz").read_bytes()).decode().split("\n")
    header, body = rows[0], [r for r in rows[1:] if r]
    with gzip.open(src / "ed" / "vitalsign.csv.gz", "wt", compresslevel=1) as fh:
        fh.write(header + "\n")
        for _ in range(3000):
            fh.write("\n".join(body) + "\n")
    proc = subprocess.Popen([sys.executable, "-c", "from mimiclab.load import build; import sys; "
                             f"build('mimic-iv-ed-demo', source={str(src)!r})"], env=os.environ.copy())
    deadline = time.time() + 60
    while time.time() < deadline and not list(first.build_dir.rglob("*.tmp-*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    con = duckdb.connect(str(first.database), read_only=True)
    assert con.execute("SELECT count(*) FROM mimiciv_ed.vitalsign").fetchone()[0] == 1038
    con.close()
    assert json.loads((first.build_dir / mf.MANIFEST).read_text())["tables"]["mimiciv_ed.vitalsign"]["rows"] == 1038
    (first.build_dir / "parquet" / f"duckdb_temp_{proc.pid}_0_storage_DEFAULT-0.tmp").write_bytes(b"spill")  # as DuckDB names them
    res = build("mimic-iv-ed-demo", source=src)
    assert res.manifest.tables["mimiciv_ed.vitalsign"].rows == 1038 * 3000
    assert not list(first.build_dir.rglob("*.tmp-*")) and not list(first.build_dir.rglob("duckdb_temp_*"))


def test_not_built_error_gives_the_command(mimiclab_home):
    with pytest.raises(NotBuiltError, match="mimiclab download mimic-iv-ed-demo"):
        find("mimic-iv-ed-demo")
    with pytest.raises(Exception, match="Did you mean"):
        find("mimic-iv-dem")


def test_missing_source_folder_is_a_clear_error(mimiclab_home, tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        build("mimic-iv-demo", source=tmp_path / "nowhere")


def test_sql_cli_formats(built_demos, demo_dir):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    home, _ = built_demos
    q = "SELECT gender, count(*) AS n FROM mimiciv_hosp.patients GROUP BY 1 ORDER BY 1"
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", q, "--format", "json"], env={"MIMICLAB_HOME": str(home)})
    assert out.exit_code == 0, out.output
    got = {r["gender"]: r["n"] for r in json.loads(out.output)}
    want = dict(duckdb.execute(f"SELECT gender, count(*) FROM read_csv_auto('{demo_dir}/hosp/patients.csv.gz') GROUP BY 1").fetchall())
    assert got == want
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", q, "--format", "csv"], env={"MIMICLAB_HOME": str(home)})
    assert out.output.splitlines()[0] == "gender,n"
    bad = CliRunner().invoke(app, ["sql", "mimic-iv-demo", "SELECT * FROM nope"], env={"MIMICLAB_HOME": str(home)})
    assert bad.exit_code == 1 and "nope" in bad.output
    # columns sharing a name (a join's ids) all kept; an interval, a 128-bit sum, NaN as the file would have them
    q = ("SELECT a.subject_id, p.subject_id, a.hadm_id, a.dischtime - a.admittime AS los, sum(a.hadm_id) OVER () AS s, "
         "CAST('nan' AS DOUBLE) AS v FROM mimiciv_hosp.admissions a JOIN mimiciv_hosp.patients p "
         "ON p.subject_id = a.subject_id AND a.hadm_id = 20044587")
    adm = duckdb.execute(f"SELECT subject_id, hadm_id, dischtime - admittime FROM read_csv_auto('{demo_dir}/hosp/admissions.csv.gz') "
                         "WHERE hadm_id = 20044587").fetchone()
    days, secs = adm[2].days, adm[2].seconds
    los = f"{days} days {secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", q, "--format", "csv"], env={"MIMICLAB_HOME": str(home)})
    assert out.output.splitlines() == ["subject_id,subject_id,hadm_id,los,s,v",
                                       f"{adm[0]},{adm[0]},{adm[1]},{los},{adm[1]},"], out.output
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", q, "--format", "json"], env={"MIMICLAB_HOME": str(home)})
    assert json.loads(out.output) == {"columns": ["subject_id", "subject_id", "hadm_id", "los", "s", "v"],
                                      "rows": [[adm[0], adm[0], adm[1], los, adm[1], None]]}
    # the table shows text as it is: ICD titles with [brackets] had lost them to rich's markup
    title = duckdb.execute(f"SELECT long_title FROM read_csv_auto('{demo_dir}/hosp/d_icd_diagnoses.csv.gz') "
                           "WHERE long_title LIKE '%[%]%' ORDER BY 1 LIMIT 1").fetchone()[0]
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", "SELECT long_title FROM mimiciv_hosp.d_icd_diagnoses "
                                   "WHERE long_title = $$" + title + "$$"], env={"MIMICLAB_HOME": str(home), "COLUMNS": "400"})
    assert title in out.output, out.output


def test_row_groups_sized_for_patient_lookups(demo_dir, mimiclab_home):
    """Row-group size follows the estimated row count (about 64 groups), within [16k, 123k] rows."""
    import pyarrow.parquet as pq

    from mimiclab.load.loader import MAX_ROW_GROUP, MIN_ROW_GROUP, estimate_rows, row_group_size
    from mimiclab.load.source import locate

    table = next(t for t in catalog.get("mimic-iv-demo").tables() if t.name == "labevents")
    src = locate(demo_dir, table)
    est = estimate_rows(src)
    actual = raw_count(src.path)
    assert 0.7 * actual <= est <= 1.3 * actual
    assert row_group_size(10) == MIN_ROW_GROUP and row_group_size(10**9) == MAX_ROW_GROUP
    assert row_group_size(64 * 50_000) == 51_200  # 50,000 rounded up to a multiple of 2048
    res = build("mimic-iv-demo", source=demo_dir, tables=["labevents"])
    meta = pq.ParquetFile(res.build_dir / res.manifest.tables["mimiciv_hosp.labevents"].parquet).metadata
    assert meta.num_rows == actual
    assert meta.row_group(0).num_rows == row_group_size(est)


def test_storage_native_tables_or_views_same_answers(data_root, mimiclab_home, tmp_path):
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    native = build("mimic-iv-ed-demo", source=src)
    views = build("mimic-iv-ed-demo", source=src, dest=tmp_path / "views", storage="views")
    q = "SELECT count(*), sum(heartrate), min(intime) FROM mimiciv_ed.triage JOIN mimiciv_ed.edstays USING (stay_id)"
    a = duckdb.connect(str(native.database), read_only=True)
    b = duckdb.connect(str(views.database), read_only=True)
    assert a.execute(q).fetchall() == b.execute(q).fetchall()
    kinds = lambda c: c.execute(  # noqa: E731
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'mimiciv_ed' GROUP BY 1").fetchall()
    assert kinds(a) == [("BASE TABLE",)] and kinds(b) == [("VIEW",)]
    assert views.database.stat().st_size < native.database.stat().st_size
    with pytest.raises(Exception, match="storage"):
        build("mimic-iv-ed-demo", source=src, storage="bogus")


def test_unchanged_rebuild_does_not_rewrite_the_database(data_root, mimiclab_home):
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    first = build("mimic-iv-ed-demo", source=src)
    stamp = first.database.stat().st_mtime_ns, (first.build_dir / mf.MANIFEST).read_text()
    again = build("mimic-iv-ed-demo", source=src)
    assert again.loaded == [] and (again.database.stat().st_mtime_ns, (first.build_dir / mf.MANIFEST).read_text()) == stamp


def _table_sums(db: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM mimiciv_ed.{t}").fetchone()
                for t in ("edstays", "triage", "vitalsign", "diagnosis", "medrecon", "pyxis")}
    finally:
        con.close()


def _raw_sums(src: Path) -> dict[str, tuple]:
    """Independent oracle: the typed database must hold exactly the raw rows (hash over every column)."""
    out = {}
    for t in ("edstays", "triage", "vitalsign", "diagnosis", "medrecon", "pyxis"):
        cols = next(x for x in catalog.get("mimic-iv-ed-demo").tables("2.2") if x.name == t).columns_for("2.2")
        spec = "{" + ", ".join(f"'{c.name}': '{c.type}'" for c in cols) + "}"
        out[t] = duckdb.execute(
            f"SELECT count(*), sum(hash(COLUMNS(*))) FROM read_csv('{src}/ed/{t}.csv.gz', header=true, "
            f"auto_detect=false, columns={spec})").fetchone()
    return out


def test_native_rebuild_of_one_table_keeps_the_others_from_the_previous_database(data_root, mimiclab_home, tmp_path,
                                                                                monkeypatch):
    """Reloading one table copies the previous database and replaces that table only; the result holds exactly
    the build's tables (an object left in the previous file is dropped) and equals the raw files."""
    from mimiclab.store import duckdb_store

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    con = duckdb.connect(str(first.database))
    con.execute("CREATE TABLE mimiciv_ed.left_over AS SELECT 1 AS x")
    con.close()
    with gzip.open(src / "ed" / "pyxis.csv.gz", "rt") as fh:
        lines = fh.readlines()
    with gzip.open(src / "ed" / "pyxis.csv.gz", "wt") as fh:
        fh.writelines(lines[:101])
    seen = {}
    real_commit = duckdb_store.DatabaseWriter.commit

    def spy(self, tables, current=frozenset(), extra_schemas=()):
        seen.update(from_base=self.from_base, current=set(current))
        return real_commit(self, tables, current, extra_schemas)

    monkeypatch.setattr(duckdb_store.DatabaseWriter, "commit", spy)
    res = build("mimic-iv-ed-demo", source=src)
    assert res.loaded == ["mimiciv_ed.pyxis"]
    assert seen["from_base"] and {"mimiciv_ed.edstays", "mimiciv_ed.triage", "mimiciv_ed.pyxis"} <= seen["current"]
    assert _table_sums(res.database) == _raw_sums(src)
    con = duckdb.connect(str(res.database), read_only=True)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'left_over'").fetchone()[0] == 0
    con.close()
    # --force starts from an empty file and copies nothing from the previous one
    forced = build("mimic-iv-ed-demo", source=src, force=True)
    assert not seen["from_base"] and len(forced.loaded) == 6
    assert _table_sums(forced.database) == _raw_sums(src)


def test_unreadable_previous_database_is_rebuilt_from_parquet(data_root, mimiclab_home, tmp_path):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    first.database.write_bytes(b"not a duckdb file" * 100)
    with gzip.open(src / "ed" / "pyxis.csv.gz", "rt") as fh:
        lines = fh.readlines()
    with gzip.open(src / "ed" / "pyxis.csv.gz", "wt") as fh:
        fh.writelines(lines[:51])
    res = build("mimic-iv-ed-demo", source=src)
    assert res.loaded == ["mimiciv_ed.pyxis"]
    assert _table_sums(res.database) == _raw_sums(src)
    assert not list(res.build_dir.rglob("*.tmp-*"))


def test_second_build_of_the_same_dataset_waits_for_the_first(data_root, mimiclab_home):
    """Two builds of one version (two notebooks opening the same folder): the second waits for the first's
    lock, then finds every table current; the database and manifest always come from one build."""
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    first = build("mimic-iv-ed-demo", source=src)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(1.5)",
         str(first.build_dir / "build.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    events = []
    t0 = time.monotonic()
    again = build("mimic-iv-ed-demo", source=src, progress=lambda ev, key, **kw: events.append(ev))
    waited = time.monotonic() - t0
    holder.wait()
    assert events[0] == "waiting" and waited >= 1.0
    assert again.loaded == [] and len(again.skipped) == 6
    assert json.loads((first.build_dir / mf.MANIFEST).read_text())["tables"].keys() == first.manifest.tables.keys()


def test_a_source_folder_one_level_too_high_is_an_error_that_points_below(mimiclab_home, data_root, tmp_path):
    """--source at the folder above the release built 31 empty tables and reported success; now it says
    where the files are. An empty folder is an error too, and nothing is built."""
    from mimiclab.errors import MimiclabError

    above = data_root / "mimic-iv-demo"  # holds 2.2/
    for slug in ("mimic-iv-demo", "mimiciv"):
        with pytest.raises(MimiclabError, match="holds no file of") as err:
            build(slug, source=above)
        assert f"--source {above / '2.2'}" in str(err.value)
    with pytest.raises(MimiclabError, match="holds no file of") as err:  # one level too low: the module folder
        build("mimic-iv-demo", source=above / "2.2" / "hosp")
    assert f"--source {(above / '2.2').resolve()}" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MimiclabError, match="holds no file of mimic-iv-demo"):
        build("mimic-iv-demo", source=tmp_path / "empty")
    assert not (mimiclab_home / "db" / "mimic-iv-demo").exists()


def test_full_mimiciii_builds_and_answers_under_its_schema_name(mimiclab_home, data_root):
    """Full MIMIC-III (slug mimiciii, schema mimiciii): the database file had the schema's name, so DuckDB's
    catalog 'mimiciii' made every `mimiciii.admissions` ambiguous and the build failed at its last step. The
    demo's files stand in for the full release here."""
    import mimiclab

    src = data_root / "mimiciii-demo" / "1.4"
    res = build("mimiciii", source=src)
    assert not res.failed and res.database.name != "mimiciii.duckdb"
    want = duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{src}/ADMISSIONS.csv')").fetchone()[0]
    with mimiclab.open("mimiciii") as ds:
        assert ds.sql("SELECT count(*) AS n FROM mimiciii.admissions")["n"][0] == want
        assert ds.sql("SELECT count(*) AS n FROM admissions")["n"][0] == want
        c = ds.cohort({"unit": "admission", "include": [{"type": "age", "min": 18}]})
        assert 0 < c.counts[-1] <= want


def test_file_names_in_another_case_are_found(mimiclab_home, data_root, tmp_path):
    """MIMIC-III's files are upper case on PhysioNet; a copy whose names were lower-cased (an export, an
    unzip tool, a case-insensitive disk copied to Linux) was refused as holding no file. It builds, with
    the rows of the original files; a name that two files share but for case is not guessed."""
    import mimiclab
    from mimiclab.errors import MimiclabError

    orig = data_root / "mimiciii-demo" / "1.4"
    lower = tmp_path / "lower"
    lower.mkdir()
    for f in orig.iterdir():
        if f.name.endswith(".csv"):
            (lower / f.name.lower()).symlink_to(f)
    res = build("mimiciii-demo", source=lower)
    assert not res.failed and len(res.loaded) == len([f for f in orig.iterdir() if f.name.endswith(".csv")])
    con = duckdb.connect(str(res.database), read_only=True)
    try:
        for name in ("ADMISSIONS", "PRESCRIPTIONS", "D_ITEMS"):
            got = con.execute(f"SELECT count(*) FROM mimiciii.{name.lower()}").fetchone()[0]
            assert got == raw_count(orig / f"{name}.csv") > 0
    finally:
        con.close()
    assert res.manifest.tables["mimiciii.admissions"].source_file == "admissions.csv"
    ds = mimiclab.MIMICDataset(str(lower), files=["ADMISSIONS"])  # the datathon's drop-in over the folder
    assert len(ds.data["ADMISSIONS"]) == raw_count(orig / "ADMISSIONS.csv")
    # two files for one table, differing only in case: neither is taken for it (the table counts as gone)
    both = tmp_path / "both"
    both.mkdir()
    for f in orig.iterdir():
        if f.name.endswith(".csv"):
            (both / f.name).symlink_to(f)
    (both / "ADMISSIONS.csv").unlink()
    (both / "admissions.csv").symlink_to(orig / "ADMISSIONS.csv")
    (both / "Admissions.csv").symlink_to(orig / "ADMISSIONS.csv")
    again = build("mimiciii-demo", source=both, tables=["admissions"])
    assert "mimiciii.admissions" in again.gone  # loaded from `lower` before: kept, not replaced by a guess
    (tmp_path / "empty").mkdir()
    with pytest.raises(MimiclabError, match="holds no file"):
        build("mimiciii-demo", source=tmp_path / "empty")
