"""A build never silently loses or mislabels data: each case is checked against an independent read of the
raw files (Python's csv/gzip, or plain DuckDB over a single named file), never against mimiclab's output."""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from mimiclab.load import build

ED = ("edstays", "triage", "vitalsign", "diagnosis", "medrecon", "pyxis")


def csv_rows(path: Path) -> int:
    """Independent oracle: data rows counted with Python's csv module (no DuckDB, no globbing)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def _truncate(path: Path, keep: int) -> None:
    with gzip.open(path, "rt") as fh:
        lines = fh.readlines()
    with gzip.open(path, "wt") as fh:
        fh.writelines(lines[: keep + 1])


def _count(db: Path, key: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {key}").fetchone()[0]
    finally:
        con.close()


# -- 1. glob characters in --source ---------------------------------------------------------------------

@pytest.mark.parametrize("name,decoy", [("ed[12]", "ed1"), ("ed*", "ed-other"), ("ed?", "edx")])
def test_source_path_with_glob_characters_reads_exactly_the_named_file(data_root, mimiclab_home, tmp_path,
                                                                       name, decoy):
    """`ed[12]` as a glob matches `ed1`, not itself: the build must read the folder it was given."""
    real = tmp_path / name
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", real)
    other = tmp_path / decoy  # a folder the glob would pick instead, with different contents
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", other)
    for t in ED:
        _truncate(other / "ed" / f"{t}.csv.gz", 7)
    res = build("mimic-iv-ed-demo", source=real)
    assert not res.failed, res.failed
    for t in ED:
        f = real / "ed" / f"{t}.csv.gz"
        entry = res.manifest.tables[f"mimiciv_ed.{t}"]
        assert entry.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
        assert entry.rows == csv_rows(f) == _count(res.database, f"mimiciv_ed.{t}"), t


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")  # MIMICDataset's point lookups: execute()
@pytest.mark.parametrize("storage", ["views", "native"])
def test_a_build_folder_with_glob_characters_serves_its_own_files(data_root, mimiclab_home, tmp_path, storage):
    """The database reads the Parquet files by path; `b[1]` as a glob matches `b1`, not itself, so the paths
    are escaped (sqltext.exact_path) in views as in the native copy."""
    src = data_root / "mimic-iv-ed-demo" / "2.2"
    res = build("mimic-iv-ed-demo", source=src, dest=tmp_path / "b[1]", storage=storage)
    assert not res.failed, res.failed
    decoy = tmp_path / "b1"  # what `b[1]` matches as a glob: the same files, cut to one row each
    shutil.copytree(tmp_path / "b[1]", decoy)
    con = duckdb.connect()
    for f in decoy.rglob("*.parquet"):
        con.execute(f"COPY (SELECT * FROM read_parquet('{f}') LIMIT 1) TO '{f}.cut' (FORMAT parquet)")
        f.with_name(f.name + ".cut").replace(f)
    for t in ED:
        assert _count(res.database, f"mimiciv_ed.{t}") == csv_rows(src / "ed" / f"{t}.csv.gz"), t
    from mimiclab.api import MIMICDataset  # it reads the Parquet files too (patients, dtypes)

    ds = MIMICDataset(res.build_dir, files=["ed/edstays"])
    want = con.execute(f"SELECT count(DISTINCT subject_id) FROM read_csv('{src / 'ed' / 'edstays.csv.gz'}')").fetchone()[0]
    assert len(ds) == want > 1 and len(ds[0].data["ed/edstays"]) >= 1


# -- 2. a previously loaded table whose source is gone ------------------------------------------------------

def _break(path: Path, how: str) -> None:
    path.unlink()
    if how == "directory":
        path.mkdir()
    elif how == "symlink_loop":
        path.symlink_to(path.name)  # a link to itself: ELOOP on open


@pytest.mark.parametrize("how", ["missing", "directory", "symlink_loop"])
def test_rebuild_keeps_a_loaded_table_whose_source_is_gone(data_root, mimiclab_home, tmp_path, how):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    want = csv_rows(src / "ed" / "triage.csv.gz")
    first = build("mimic-iv-ed-demo", source=src)
    _break(src / "ed" / "triage.csv.gz", how)
    res = build("mimic-iv-ed-demo", source=src)
    entry = res.manifest.tables["mimiciv_ed.triage"]
    assert entry.status == "loaded" and entry.rows == want == _count(res.database, "mimiciv_ed.triage")
    assert entry.sha256 == first.manifest.tables["mimiciv_ed.triage"].sha256  # still says what was loaded
    assert entry.source_missing
    assert "mimiciv_ed.triage" in res.gone
    if how == "missing":
        assert any("triage.csv.gz" in w and "--drop-missing" in w for w in res.warnings)
    else:  # something is there, but not a readable file: a failure that names it
        word = {"directory": "directory", "symlink_loop": "symlink"}[how]
        assert word in res.failed["mimiciv_ed.triage"] and "triage.csv.gz" in res.failed["mimiciv_ed.triage"]
    # the other tables are untouched
    assert _count(res.database, "mimiciv_ed.edstays") == csv_rows(src / "ed" / "edstays.csv.gz")


def test_drop_missing_empties_a_table_whose_source_is_gone(data_root, mimiclab_home, tmp_path):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    build("mimic-iv-ed-demo", source=src)
    (src / "ed" / "triage.csv.gz").unlink()
    res = build("mimic-iv-ed-demo", source=src, drop_missing=True)
    entry = res.manifest.tables["mimiciv_ed.triage"]
    assert entry.status == "not_loaded" and _count(res.database, "mimiciv_ed.triage") == 0
    assert res.missing == ["mimiciv_ed.triage"] and not res.gone


def test_cli_rebuild_with_a_gone_source_says_so_and_keeps_rows(data_root, mimiclab_home, tmp_path):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    want = csv_rows(src / "ed" / "pyxis.csv.gz")
    first = build("mimic-iv-ed-demo", source=src)
    (src / "ed" / "pyxis.csv.gz").unlink()
    out = CliRunner().invoke(app, ["build", "mimic-iv-ed-demo", "--source", str(src)], env={"COLUMNS": "200"})
    assert "pyxis" in out.output and "gone" in out.output
    assert _count(first.database, "mimiciv_ed.pyxis") == want
    info = CliRunner().invoke(app, ["info", "mimic-iv-ed-demo"], env={"COLUMNS": "200"})
    line = next(ln for ln in info.output.splitlines() if "mimiciv_ed.pyxis" in ln)
    assert "source file gone" in line and f"{want:,}" in line, line
    out = CliRunner().invoke(app, ["build", "mimic-iv-ed-demo", "--source", str(src), "--drop-missing"])
    assert out.exit_code == 0, out.output
    assert _count(first.database, "mimiciv_ed.pyxis") == 0


# -- 3. declared primary keys are checked --------------------------------------------------------------------

def _duplicate_rows(path: Path, picks: list[int]) -> list[list[str]]:
    """Append copies of the given data rows (0-based) to a csv.gz; return the rows copied."""
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    extra = [rows[1 + i] for i in picks]
    with gzip.open(path, "wt", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows + extra)
    return extra


@pytest.mark.parametrize("storage", ["native", "views"])
def test_duplicate_primary_key_stops_the_table_naming_key_and_rows(data_root, mimiclab_home, tmp_path, storage):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src, storage=storage)
    before = _count(first.database, "mimiciv_ed.edstays")
    copied = _duplicate_rows(src / "ed" / "edstays.csv.gz", [3, 3, 10])  # stay 3 three times, stay 10 twice
    # diagnosis: primary key (stay_id, seq_num); the same stay with another seq_num is no duplicate
    with gzip.open(src / "ed" / "diagnosis.csv.gz", "rt", newline="") as fh:
        diag = list(csv.reader(fh))
    same_stay = list(diag[1])
    same_stay[2] = "99"  # seq_num
    with gzip.open(src / "ed" / "diagnosis.csv.gz", "wt", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(diag + [same_stay])
    res = build("mimic-iv-ed-demo", source=src, storage=storage)
    err = res.failed["mimiciv_ed.edstays"]
    # hand-worked: 2 key values repeated; 3 + 2 = 5 rows share them
    assert "primary key (stay_id)" in err and "5 rows share 2 key values" in err, err
    assert f"stay_id={copied[0][2]}" in err and "3 times" in err, err
    assert "edstays.csv.gz" in err
    assert _count(res.database, "mimiciv_ed.edstays") == before  # the previous rows stay
    assert "mimiciv_ed.diagnosis" not in res.failed
    assert _count(res.database, "mimiciv_ed.diagnosis") == len(diag)  # header + 1 added row


def test_duplicate_composite_primary_key_is_caught(data_root, mimiclab_home, tmp_path):
    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    _duplicate_rows(src / "ed" / "diagnosis.csv.gz", [0])
    res = build("mimic-iv-ed-demo", source=src)
    err = res.failed["mimiciv_ed.diagnosis"]
    assert "primary key (stay_id, seq_num)" in err and "2 rows share 1 key value" in err, err
    assert res.manifest.tables["mimiciv_ed.diagnosis"].status == "failed"
    assert _count(res.database, "mimiciv_ed.diagnosis") == 0  # never loaded before: empty, flagged failed


# -- 4. database and manifest always agree -------------------------------------------------------------------

def test_kill_between_database_rename_and_manifest_write_is_repaired_on_open(data_root, mimiclab_home, tmp_path,
                                                                            monkeypatch):
    from typer.testing import CliRunner

    from mimiclab.cli import app
    from mimiclab.load import manifest as mf
    from mimiclab.sources.registry import find

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    _truncate(src / "ed" / "edstays.csv.gz", 10)

    def killed(*a, **k):  # the process dies right after the database was renamed into place
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(mf, "write", killed)
        with pytest.raises(KeyboardInterrupt):
            build("mimic-iv-ed-demo", source=src)
    db_rows = _count(first.database, "mimiciv_ed.edstays")
    assert db_rows == 10  # the new database is in place ...
    import json
    stale = json.loads((first.build_dir / mf.MANIFEST).read_text())
    assert stale["tables"]["mimiciv_ed.edstays"]["rows"] == 222  # ... and the manifest on disk is the old one
    # opening the build notices and repairs: manifest and database agree again
    b = find("mimic-iv-ed-demo")
    assert b.manifest.tables["mimiciv_ed.edstays"].rows == db_rows == 10
    on_disk = json.loads((first.build_dir / mf.MANIFEST).read_text())
    assert on_disk["tables"]["mimiciv_ed.edstays"]["rows"] == 10
    assert on_disk["tables"]["mimiciv_ed.edstays"]["sha256"] == hashlib.sha256(
        (src / "ed" / "edstays.csv.gz").read_bytes()).hexdigest()
    out = CliRunner().invoke(app, ["info", "mimic-iv-ed-demo"], env={"COLUMNS": "200"})
    line = next(ln for ln in out.output.splitlines() if "mimiciv_ed.edstays" in ln)
    assert " 10 " in line, line
    # and the next build finds every table current (the repaired manifest describes the database)
    again = build("mimic-iv-ed-demo", source=src)
    assert again.loaded == [] and again.manifest.tables["mimiciv_ed.edstays"].rows == 10


def test_kill_during_rebuild_detected_inside_the_build_itself(data_root, mimiclab_home, tmp_path, monkeypatch):
    """The repair also happens when the next thing to run is a build (it holds the lock)."""
    from mimiclab.load import manifest as mf

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    _truncate(src / "ed" / "triage.csv.gz", 5)
    with monkeypatch.context() as mp:
        mp.setattr(mf, "write", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            build("mimic-iv-ed-demo", source=src)
    res = build("mimic-iv-ed-demo", source=src)
    assert res.loaded == []
    import json
    on_disk = json.loads((first.build_dir / mf.MANIFEST).read_text())
    assert on_disk["tables"]["mimiciv_ed.triage"]["rows"] == 5 == _count(first.database, "mimiciv_ed.triage")


def test_database_touched_by_another_client_is_not_mistaken_for_a_mismatch(data_root, mimiclab_home):
    from mimiclab.load import manifest as mf

    first = build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    before = (first.build_dir / mf.MANIFEST).read_text()
    con = duckdb.connect(str(first.database))  # a user's own writable session bumps the file's mtime
    con.execute("CREATE TABLE main.scratch AS SELECT 1 AS x")
    con.close()
    m = mf.read(first.build_dir)
    assert m.tables == first.manifest.tables
    assert (first.build_dir / mf.MANIFEST).read_text() == before


# -- 5. leftovers of a killed build ----------------------------------------------------------------------------

def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _plant_leftovers(build_dir: Path, db: Path, pids: list[int]) -> list[Path]:
    """What `kill -9` leaves mid-build: the next database's copy and its WAL, a table half-written to
    Parquet, a manifest being written, DuckDB's spill file."""
    out = []
    for pid in pids:
        out += [db.with_name(f"{db.name}.tmp-{pid}"), db.with_name(f"{db.name}.tmp-{pid}.wal"),
                build_dir / "parquet" / "ed" / f"edstays.staging.tmp-{pid}",
                build_dir / f"manifest.json.tmp-{pid}",
                build_dir / "parquet" / f"duckdb_temp_{pid}_0_storage_DEFAULT-0.tmp"]
    for p in out:
        p.write_bytes(b"x" * 100_000)
    return out


def _info_total(home: Path) -> str:
    from typer.testing import CliRunner

    from mimiclab.cli import app

    out = CliRunner().invoke(app, ["info"], env={"MIMICLAB_HOME": str(home), "COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    return next(ln for ln in out.output.splitlines() if "mimic-iv-ed-demo" in ln)


def test_info_never_counts_and_removes_leftovers_of_a_killed_build(data_root, mimiclab_home):
    import os

    from mimiclab.sources.registry import find

    first = build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    b = find("mimic-iv-ed-demo")
    # independent: every file of the finished build, summed before anything is planted
    size_before = sum(p.stat().st_size for p in first.build_dir.rglob("*") if p.is_file())
    line_before = _info_total(mimiclab_home)
    # a dead build's pid, and a pid that is alive but was reused by a process that is not building here
    planted = _plant_leftovers(first.build_dir, first.database, [_dead_pid(), os.getppid()])
    assert b.size_bytes() == size_before
    assert _info_total(mimiclab_home) == line_before  # size column unchanged
    assert not [p for p in planted if p.exists()]  # and info removed them: no build holds the lock
    assert _count(first.database, "mimiciv_ed.edstays") == 222


def test_leftovers_are_kept_while_a_live_build_holds_the_lock(data_root, mimiclab_home):
    import subprocess
    import sys

    from mimiclab.sources.registry import find

    first = build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    size_before = find("mimic-iv-ed-demo").size_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(first.build_dir / "build.lock")], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        planted = _plant_leftovers(first.build_dir, first.database, [holder.pid])
        line = _info_total(mimiclab_home)
        assert all(p.exists() for p in planted)  # a live build's files are left alone ...
        assert find("mimic-iv-ed-demo").size_bytes() == size_before  # ... and still not counted
    finally:
        holder.stdin.close()
        holder.wait()
    assert line == _info_total(mimiclab_home)
    assert not [p for p in planted if p.exists()]


# -- 6. the version comes from evidence, never from the catalog's default ------------------------------------

def _recompress(path: Path, lines: list[str] | None = None) -> None:
    """Rewrite a csv.gz (optionally with other lines): same data, a different byte size than published."""
    with gzip.open(path, "rt", newline="") as fh:
        old = fh.read().splitlines(keepends=True)
    with gzip.open(path, "wt", newline="", compresslevel=1) as fh:
        fh.writelines(old if lines is None else lines)


def _full_like(data_root: Path, dest: Path, d_labitems_extra: int = 0) -> Path:
    """A folder in MIMIC-IV's (full dataset's) shape: the demo's files, recompressed so no size matches the
    demo's published sizes. Its dictionaries are MIMIC-IV 2.2's own (d_labitems: 1,622 rows; 3.1 has 1,650)."""
    shutil.copytree(data_root / "mimic-iv-demo" / "2.2", dest, ignore=shutil.ignore_patterns("README.txt", "demo_*"))
    for p in dest.rglob("*.csv.gz"):
        _recompress(p)
    if d_labitems_extra:
        f = dest / "hosp" / "d_labitems.csv.gz"
        with gzip.open(f, "rt", newline="") as fh:
            lines = fh.read().splitlines(keepends=True)
        lines += [f"{990000 + i},Made-up item {i},Blood,Chemistry\n" for i in range(d_labitems_extra)]
        _recompress(f, lines)
    return dest


OTHER_DICTIONARIES = ("icu/caregiver.csv.gz", "icu/d_items.csv.gz", "hosp/provider.csv.gz", "hosp/d_hcpcs.csv.gz",
                      "hosp/d_icd_diagnoses.csv.gz", "hosp/d_icd_procedures.csv.gz")


def test_full_mimic_iv_2_2_folder_without_version_is_2_2_not_the_default(data_root, mimiclab_home, tmp_path):
    from mimiclab import catalog

    src = _full_like(data_root, tmp_path / "mimiciv")
    assert catalog.get("mimiciv").default_version == "3.1"  # the trap: the catalog's default is 3.1
    assert csv_rows(src / "hosp" / "d_labitems.csv.gz") == 1622  # independent: what 2.2 publishes
    res = build("mimiciv", source=src, tables=["patients", "d_labitems"])
    assert res.manifest.version == "2.2" and "/2.2" in str(res.build_dir)


def test_full_mimic_iv_3_1_folder_is_recognised_as_3_1(data_root, mimiclab_home, tmp_path):
    src = _full_like(data_root, tmp_path / "mimiciv", d_labitems_extra=28)
    for p in OTHER_DICTIONARIES:  # the demo's copies are 2.2's; a 3.1 folder would have 3.1's
        (src / p).unlink()
    assert csv_rows(src / "hosp" / "d_labitems.csv.gz") == 1650
    res = build("mimiciv", source=src, tables=["d_labitems"])
    assert res.manifest.version == "3.1"


def test_folder_without_evidence_asks_for_version(data_root, mimiclab_home, tmp_path):
    from typer.testing import CliRunner

    from mimiclab.cli import app
    from mimiclab.errors import MimiclabError

    src = _full_like(data_root, tmp_path / "mimiciv", d_labitems_extra=5)  # 1,627 rows: neither version
    for p in OTHER_DICTIONARIES:
        (src / p).unlink()
    with pytest.raises(MimiclabError, match=r"--version") as exc:
        build("mimiciv", source=src)
    assert "2.2" in str(exc.value) and "3.1" in str(exc.value) and "d_labitems" in str(exc.value)
    assert not (mimiclab_home / "db" / "mimiciv").exists()  # nothing built under a guessed version
    out = CliRunner().invoke(app, ["build", "mimiciv", "--source", str(src)], env={"COLUMNS": "200"})
    assert out.exit_code == 1 and "--version" in out.output and "Traceback" not in out.output
    res = build("mimiciv", source=src, version="2.2", tables=["patients"])  # saying it works
    assert res.manifest.version == "2.2"


def test_conflicting_evidence_is_an_error_not_a_guess(data_root, mimiclab_home, tmp_path):
    from mimiclab.errors import MimiclabError

    src = _full_like(data_root, tmp_path / "mimiciv", d_labitems_extra=28)  # d_labitems says 3.1 ...
    # ... caregiver (15,468 rows) says 2.2
    with pytest.raises(MimiclabError, match="--version"):
        build("mimiciv", source=src)


def test_open_folder_of_full_2_2_is_labelled_2_2(data_root, mimiclab_home, tmp_path):
    import mimiclab
    from mimiclab.api.folder import detect

    src = _full_like(data_root, tmp_path / "mimiciv")
    ds, version = detect(src)
    assert (ds.slug, version) == ("mimiciv", "2.2")
    # the real demo folder is still the demo, 2.2, with no flag
    ds, version = detect(data_root / "mimic-iv-demo" / "2.2")
    assert (ds.slug, version) == ("mimic-iv-demo", "2.2")
    assert mimiclab.open(data_root / "mimic-iv-ed-demo" / "2.2").version == "2.2"


def test_process_dying_between_database_rename_and_manifest_write(data_root, mimiclab_home, tmp_path):
    """The same, with a process that really dies there (os._exit: no finally, no cleanup)."""
    import json
    import os
    import subprocess
    import sys

    from mimiclab.load import manifest as mf
    from mimiclab.sources.registry import find

    src = tmp_path / "ed"
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", src)
    first = build("mimic-iv-ed-demo", source=src)
    _truncate(src / "ed" / "medrecon.csv.gz", 3)
    code = ("import os, sys; import mimiclab.load.manifest as mf; mf.write = lambda *a, **k: os._exit(9); "
            "from mimiclab.load import build; build('mimic-iv-ed-demo', source=sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(src)], env=os.environ.copy())
    assert proc.returncode == 9
    assert json.loads((first.build_dir / mf.MANIFEST).read_text())["tables"]["mimiciv_ed.medrecon"]["rows"] != 3
    assert find("mimic-iv-ed-demo").manifest.tables["mimiciv_ed.medrecon"].rows == 3 == _count(
        first.database, "mimiciv_ed.medrecon")
