"""Lifecycles of the Python API: rebuilds while a Dataset is open, forks, pickles, other processes.

Every count is checked against DuckDB's own csv reader over the raw file (no mimiclab code).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import duckdb
import pytest

import mimiclab
from mimiclab import MIMICDataset
from mimiclab.errors import MimiclabError
from mimiclab.load import build

# the API fetches point lookups with execute() + Arrow on purpose (see Dataset.fetch)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")


def raw_count(path: Path, where: str = "true") -> int:
    """Oracle: rows of a raw csv.gz, read by DuckDB's own csv reader."""
    return duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{path}', header=true) WHERE {where}").fetchone()[0]


def raw_ids(path: Path) -> list[int]:
    return [r[0] for r in duckdb.execute(
        f"SELECT DISTINCT subject_id FROM read_csv_auto('{path}', header=true) ORDER BY 1").fetchall()]


# ---------------------------------------------------------------------- 1. rebuilds in the same process

def test_a_rebuild_in_the_same_process_is_seen_by_new_and_open_datasets(mimiclab_home, demo_dir):
    """The issue's own sequence: a MIMICDataset of admissions, then one with icustays (which rebuilds the
    folder's database), then mimiclab.open of the folder (which builds everything)."""
    a = MIMICDataset(demo_dir, ["hosp/admissions"])
    assert len(a[0].data["hosp/admissions"]) > 0
    b = MIMICDataset(demo_dir, ["hosp/admissions", "icu/icustays"])
    stays = demo_dir / "icu" / "icustays.csv.gz"
    assert b._subject_ids == raw_ids(stays)
    for i in (0, len(b) - 1):
        sample = b[i]
        assert len(sample.data["icu/icustays"]) == raw_count(stays, f"subject_id = {sample.subject_id}") > 0
    ds = mimiclab.open(demo_dir)
    for table, rel in (("mimiciv_icu.icustays", "icu/icustays"), ("mimiciv_hosp.labevents", "hosp/labevents"),
                       ("mimiciv_hosp.admissions", "hosp/admissions")):
        want = raw_count(demo_dir / f"{rel}.csv.gz")
        assert ds.sql(f"SELECT count(*) AS n FROM {table}")["n"][0] == want > 0, table
        assert ds.table(table).count() == want
    # the first, long-lived objects see the new build too
    assert a.dataset.sql("SELECT count(*) AS n FROM mimiciv_icu.icustays")["n"][0] == raw_count(stays)
    assert len(a[0].data["hosp/admissions"]) == raw_count(
        demo_dir / "hosp/admissions.csv.gz", f"subject_id = {a[0].subject_id}")


def test_an_open_dataset_follows_a_rebuild_with_changed_data(mimiclab_home, demo_dir, tmp_path):
    src = tmp_path / "mimic-iv-demo" / "2.2"
    (src / "hosp").mkdir(parents=True)
    adm = src / "hosp" / "admissions.csv.gz"
    shutil.copy2(demo_dir / "hosp/admissions.csv.gz", adm)
    shutil.copy2(demo_dir / "hosp/patients.csv.gz", src / "hosp/patients.csv.gz")
    build("mimic-iv-demo", source=src, tables=["hosp/admissions", "hosp/patients"])
    ds = mimiclab.open("mimic-iv-demo")
    seed = MIMICDataset("mimic-iv-demo", ["hosp/admissions", "hosp/patients"])
    before = raw_count(adm)
    assert ds.table("admissions").count() == before and len(seed) == len(raw_ids(adm))
    gone = raw_ids(adm)[0]
    duckdb.execute(f"COPY (SELECT * FROM read_csv_auto('{demo_dir / 'hosp/admissions.csv.gz'}', header=true, "
                   f"all_varchar=true) WHERE subject_id <> '{gone}') TO '{adm}' (HEADER, COMPRESSION gzip)")
    res = build("mimic-iv-demo", source=src, tables=["hosp/admissions", "hosp/patients"])
    assert not res.failed and res.loaded == ["mimiciv_hosp.admissions"]
    after = raw_count(adm)
    assert after < before
    assert ds.table("admissions").count() == after  # the open Dataset reopened the new database
    assert ds.tables["mimiciv_hosp.admissions"] == after  # ... and reads the new manifest
    assert len(seed) == len(raw_ids(adm)) and gone not in seed._subject_ids
    sid = seed[0].subject_id
    assert len(seed[0].data["hosp/admissions"]) == raw_count(adm, f"subject_id = {sid}")
    fresh = mimiclab.open("mimic-iv-demo")
    assert fresh.table("admissions").count() == after


# ---------------------------------------------------------------------- 3. forks, spawns, pickles

FILES = ["hosp/admissions", "icu/icustays"]
_INHERITED = None  # the parent's MIMICDataset, reached by forked workers through fork() itself


def _rows(ds, i: int) -> tuple[int, dict[str, int]]:
    s = ds[i]
    return s.subject_id, {k: len(v) for k, v in s.data.items()}


def _rows_inherited(i: int) -> tuple[int, dict[str, int]]:
    return _rows(_INHERITED, i)


def _expected(demo_dir: Path, ds, idx) -> list[tuple[int, dict[str, int]]]:
    """Oracle: each patient's rows per file, counted over the raw csv.gz."""
    out = []
    for i in idx:
        sid = ds._subject_ids[i]
        out.append((sid, {k: raw_count(demo_dir / f"{k}.csv.gz", f"subject_id = {sid}") for k in FILES}))
    return out


@pytest.fixture()
def used_seed(mimiclab_home, demo_dir):
    """A MIMICDataset the parent has already used (connection open, thread pool started)."""
    ds = MIMICDataset(demo_dir, FILES)
    assert len(ds[0].data["icu/icustays"]) > 0 and len(ds[1].data["hosp/admissions"]) > 0
    return ds


def test_pickle_round_trip_gives_the_same_samples(used_seed, demo_dir):
    import pickle

    blob = pickle.dumps(used_seed)
    assert len(blob) < 100_000  # paths, names and ids: no data, no connection
    copy = pickle.loads(blob)
    idx = [0, 5, len(used_seed) - 1]
    assert [_rows(copy, i) for i in idx] == _expected(demo_dir, used_seed, idx)
    assert list(copy.data["hosp/admissions"].columns) == list(used_seed.data["hosp/admissions"].columns)
    dpickle = pickle.loads(pickle.dumps(used_seed.dataset))
    assert dpickle.table("icustays").count() == raw_count(demo_dir / "icu/icustays.csv.gz")


def test_forked_workers_use_the_parents_dataset(used_seed, demo_dir):
    import multiprocessing as mp

    global _INHERITED
    _INHERITED = used_seed
    idx = list(range(0, len(used_seed), 9))
    try:
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map_async(_rows_inherited, idx).get(timeout=60)  # hung forever before
            via_pickle = pool.starmap_async(_rows, [(used_seed, i) for i in idx[:3]]).get(timeout=60)
    finally:
        _INHERITED = None
    assert got == _expected(demo_dir, used_seed, idx)
    assert via_pickle == got[:3]
    assert _rows(used_seed, idx[-1]) == got[-1]  # the parent still works after its children


def test_spawned_workers_and_joblib(used_seed, demo_dir):
    import multiprocessing as mp

    from joblib import Parallel, delayed

    idx = [0, 7, len(used_seed) - 1]
    want = _expected(demo_dir, used_seed, idx)
    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.starmap_async(_rows, [(used_seed, i) for i in idx]).get(timeout=120) == want
    got = Parallel(n_jobs=2, backend="loky", timeout=120)(delayed(_rows)(used_seed, i) for i in idx)
    assert got == want


# ---------------------------------------------------------------------- 2. a plain Jupyter kernel

NOTEBOOK = [
    "import sys\nsys.modules['ipywidgets'] = None  # a plain kernel, even where ipywidgets is installed",
    "import mimiclab\nfrom mimiclab import MIMICDataset\nfrom mimiclab.load import build",
    "res = build('mimic-iv-demo', source=DEMO, tables=['hosp/patients'])\nassert not res.failed",
    "ds = mimiclab.open(DEMO)\n"
    "print('icustays', ds.sql('SELECT count(*) AS n FROM mimiciv_icu.icustays')['n'][0])\n"
    "print('labevents', ds.table('labevents').count())",
    "m = MIMICDataset(DEMO, ['hosp/admissions', 'icu/icustays'])\nprint('patients', len(m))\n"
    "print('first', m[0].subject_id, len(m[0].data['icu/icustays']))",
    "m.plot_distribution('hosp/admissions', 'race', savepath='race.png')",
]


def test_build_open_and_mimicdataset_in_a_plain_jupyter_kernel(mimiclab_home, demo_dir):
    """DuckDB refuses to change its progress bar setting in a kernel without ipywidgets; the API must work
    there anyway, and show its own build progress as notebook output."""
    import nbclient  # test extras: nbclient, nbformat, ipykernel
    import nbformat
    setup = (f"import os\nos.environ['MIMICLAB_HOME'] = {str(mimiclab_home)!r}\nDEMO = {str(demo_dir)!r}\n"
             f"os.chdir({str(mimiclab_home.parent)!r})\nimport sys\nassert sys.executable == {sys.executable!r}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [setup, *NOTEBOOK]])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()  # raises on a cell's error
    text = "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.output_type == "stream")
    got = dict(line.split(" ", 1) for line in text.splitlines() if line.split(" ", 1)[0] in
               ("icustays", "labevents", "patients", "first"))
    stays, labs = demo_dir / "icu/icustays.csv.gz", demo_dir / "hosp/labevents.csv.gz"
    assert int(got["icustays"]) == raw_count(stays) > 0
    assert int(got["labevents"]) == raw_count(labs) > 0
    assert int(got["patients"]) == len(raw_ids(stays))
    sid, n = map(int, got["first"].split())
    assert sid == raw_ids(stays)[0] and n == raw_count(stays, f"subject_id = {sid}")
    # the folder build showed its progress as a notebook display (text, no widget), updated in place
    shown = [o for o in nb.cells[4].outputs if o.output_type in ("display_data", "update_display_data")]
    assert shown and "mimic-iv-demo" in shown[-1]["data"]["text/plain"]
    assert all("application/vnd.jupyter.widget-view+json" not in o["data"] for o in shown)
    # the datathon's plot call shows its figure once (not again as the cell's value)
    images = [o for o in nb.cells[6].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and not any(o.output_type == "execute_result" for o in nb.cells[6].outputs)


# ---------------------------------------------------------------------- 5. memory and spilling

def _setting(ds, name: str) -> str:
    return ds.store.scalar(f"SELECT current_setting('{name}')")


def _as_duckdb_prints(limit: str) -> str:
    """What DuckDB itself shows for a memory_limit of `limit` ('2GB' -> '1.8 GiB'): the oracle."""
    con = duckdb.connect(config={"memory_limit": limit})
    try:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()


def test_the_api_caps_duckdbs_memory_by_default_and_takes_the_users_choice(demo_build, monkeypatch):
    """DuckDB's own default is 80% of RAM, kept full of every block a query read: a process looking up
    patient after patient (a DataLoader worker) grew with the database. The API caps it at 512 MB unless
    the user says otherwise: $MIMICLAB_MEMORY_LIMIT, or memory_limit= (which wins)."""
    import pickle

    monkeypatch.delenv("MIMICLAB_MEMORY_LIMIT", raising=False)
    ds = mimiclab.open(demo_build.build_dir)
    assert _setting(ds, "memory_limit") == _as_duckdb_prints("512MB")
    assert _as_duckdb_prints("512MB") != duckdb.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    monkeypatch.setenv("MIMICLAB_MEMORY_LIMIT", "1GB")
    assert _setting(mimiclab.open(demo_build.build_dir), "memory_limit") == _as_duckdb_prints("1GB")
    chosen = mimiclab.open(demo_build.build_dir, memory_limit="2GB")
    assert _setting(chosen, "memory_limit") == _as_duckdb_prints("2GB")
    # a pickled dataset (a DataLoader worker's copy) opens its store with the same choice
    monkeypatch.delenv("MIMICLAB_MEMORY_LIMIT")
    again = pickle.loads(pickle.dumps(chosen))
    assert _setting(again, "memory_limit") == _as_duckdb_prints("2GB")
    seed = MIMICDataset(demo_build.build_dir, ["hosp/admissions"], memory_limit="300MB")
    assert _setting(seed.dataset, "memory_limit") == _as_duckdb_prints("300MB")
    # a value DuckDB does not take is named, with where it came from
    monkeypatch.setenv("MIMICLAB_MEMORY_LIMIT", "lots")
    with pytest.raises(MimiclabError, match=r"'lots' is not a size DuckDB takes .*MIMICLAB_MEMORY_LIMIT"):
        mimiclab.open(demo_build.build_dir)
    with pytest.raises(MimiclabError, match=r"'12 apples' is not a size DuckDB takes .*memory_limit="):
        mimiclab.open(demo_build.build_dir, memory_limit="12 apples")


def test_a_query_larger_than_the_cap_spills_to_a_private_folder_removed_on_close(demo_build, tmp_path, monkeypatch):
    """A query needing more than the cap spills instead of failing, and not into `<cwd>/.tmp` (DuckDB's
    default: rows of the data in whatever folder the notebook runs in) but into a folder of the store's
    own, readable by the user only, removed when the store closes."""
    import stat

    monkeypatch.chdir(tmp_path)
    ds = mimiclab.open(demo_build.build_dir, memory_limit="64MB")
    spill = Path(_setting(ds, "temp_directory"))
    assert spill.is_dir() and tmp_path not in spill.parents and spill != tmp_path / ".tmp"
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700
    # 4M distinct 40-byte strings: a hash table several times the cap
    n = 4_000_000
    got = ds.store.scalar(f"SELECT count(*) FROM (SELECT DISTINCT md5(i::VARCHAR) || md5((i + 1)::VARCHAR) "
                          f"FROM range({n}) t(i))")
    assert got == n
    assert not (tmp_path / ".tmp").exists()
    ds.store.close()
    assert not spill.exists()
    # a store dropped without close (a rebuild drops the old one: another thread may still be reading it)
    import gc

    dropped = mimiclab.open(demo_build.build_dir)
    spill = Path(_setting(dropped, "temp_directory"))
    assert spill.is_dir()
    del dropped
    gc.collect()
    assert not spill.exists()


def test_datasets_over_one_build_share_one_duckdb_and_its_memory_cap(demo_build, demo_dir):
    """The cap bounds the process, not each dataset: DuckDB's memory_limit is per instance, and two datasets
    with an instance each (a MIMICDataset of hosp tables beside one of chartevents, as the API benchmark
    does) kept a cache each, each up to the cap. Datasets over the same build
    with the same cap now share one instance (one cache, one spill folder); each keeps its own connection,
    so closing one leaves the other reading, and the instance goes with the last of them."""
    import gc

    a = mimiclab.open(demo_build.build_dir, memory_limit="300MB")
    seed = MIMICDataset(demo_build.build_dir, ["hosp/labevents"], memory_limit="300MB")
    b = seed.dataset
    spill = Path(_setting(a, "temp_directory"))
    assert _setting(b, "temp_directory") == str(spill) and spill.is_dir()
    assert len(seed[0][1]["hosp/labevents"]) > 0
    a.sql("SELECT * FROM mimiciv_hosp.labevents")  # its blocks, now in the one cache
    used = "SELECT sum(memory_usage_bytes) FROM duckdb_memory()"
    assert a.store.scalar(used) == b.store.scalar(used) > 0
    other = mimiclab.open(demo_build.build_dir, memory_limit="200MB")  # another cap: another instance
    assert _setting(other, "temp_directory") != str(spill)
    a.close()
    expected = raw_count(demo_dir / "hosp" / "admissions.csv.gz")
    assert b.sql("SELECT count(*) AS n FROM mimiciv_hosp.admissions")["n"][0] == expected > 0
    assert spill.is_dir()
    b.close()
    del seed, b
    gc.collect()
    assert not spill.exists()
    assert other.sql("SELECT count(*) AS n FROM mimiciv_hosp.admissions")["n"][0] == expected


def test_what_a_user_took_from_a_dataset_outlives_it_and_its_sets_stay_with_its_instance(demo_build, demo_dir):
    """A relation or connection taken from a dataset keeps working after the dataset (the last store of its
    instance) is dropped: DuckDB closes the instance when the last of them goes, not when the store does.
    And a SET through one dataset's connection (a global DuckDB setting) does not reach a dataset opened
    afterwards: that one gets an instance with the settings it asked for."""
    import gc

    expected = raw_count(demo_dir / "hosp" / "admissions.csv.gz")
    ds = mimiclab.open(demo_build.build_dir)
    rel = ds.table("mimiciv_hosp.admissions").relation
    con = ds.store.connection
    del ds
    gc.collect()
    assert len(rel.fetchall()) == expected > 0
    assert con.execute("SELECT count(*) FROM mimiciv_hosp.admissions").fetchone()[0] == expected

    a = mimiclab.open(demo_build.build_dir, memory_limit="300MB")
    a.sql("SET memory_limit='3MB'")
    a.sql("SET threads=1")
    b = mimiclab.open(demo_build.build_dir, memory_limit="300MB")
    assert _setting(b, "memory_limit") == _as_duckdb_prints("300MB")
    assert _setting(b, "threads") == duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    assert b.sql("SELECT count(*) AS n FROM mimiciv_hosp.admissions")["n"][0] == expected
    assert _setting(a, "memory_limit") == _as_duckdb_prints("3MB")  # the one it was set on keeps it


def test_a_forked_child_leaves_its_parents_spill_folder(demo_build, demo_dir):
    """A forked child that drops its inherited store (which runs the finalizer of the DuckDB instance behind
    it) must neither remove the parent's folder nor close the parent's connection: the parent may be
    spilling into it."""
    import os

    ds = mimiclab.open(demo_build.build_dir)
    spill = Path(_setting(ds, "temp_directory"))
    pid = os.fork()
    if pid == 0:  # the child: run what dropping or closing the store runs, then leave without atexit
        code = 1
        try:
            ds._store._instance.release()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert spill.is_dir()
    assert ds.sql("SELECT count(*) AS n FROM mimiciv_hosp.admissions")["n"][0] == raw_count(
        demo_dir / "hosp" / "admissions.csv.gz") > 0
    ds.store.close()
    assert not spill.exists()
