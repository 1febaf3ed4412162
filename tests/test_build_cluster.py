"""Patient tables out of patient order are stored sorted whole by patient (through range buckets), with a
row map back to the file's lines (load.arrowcsv.ParquetOut); files an earlier mimiclab wrote sorted only
window by window are sorted whole when copied into a native table (store.duckdb_store.insert_native).
Oracles: DuckDB's read_csv over the raw file with each row's line number, Python's stable sort of those
rows, and, for the MIMICDataset drop-in, pandas.read_csv as the datathon's example class reads it."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimiclab import arrowbuckets
from mimiclab.catalog import Column, Table
from mimiclab.load import arrowcsv, loader
from mimiclab.load.source import SourceFile
from mimiclab.store import duckdb_store

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")


def _table() -> Table:
    cols = (Column(name="subject_id", type="INTEGER"), Column(name="v", type="VARCHAR"), Column(name="x", type="DOUBLE"))
    return Table(name="t", module="hosp", file="hosp/t", columns=cols, patient_key="subject_id")


def _csv(path: Path, subjects: list[int | None]) -> SourceFile:
    body = "".join(f"{'' if s is None else s},r{i},{i / 4}\n" for i, s in enumerate(subjects))
    path.write_bytes(gzip.compress(("subject_id,v,x\n" + body).encode()))
    st_ = path.stat()
    return SourceFile(path=path, rel=path.name, size=st_.st_size, mtime_ns=st_.st_mtime_ns)


def _raw(src: SourceFile) -> list[tuple]:
    """(line, subject_id, v, x) of every data row, line 0-based as read_csv's index: DuckDB over the file."""
    sql = f"SELECT row_number() OVER () - 1, * FROM {loader.read_csv_sql(src, _table(), '1')}"
    return duckdb.connect(config={"threads": 1}).execute(sql).fetchall()


def _stored(path: Path) -> list[tuple]:
    return duckdb.connect().execute(
        f"SELECT * EXCLUDE (file_row_number) FROM read_parquet('{path}', file_row_number=true) "
        f"ORDER BY file_row_number").fetchall()


def _rows(entries: list[tuple]) -> list[tuple]:
    """Hand-worked: row map entries (patient, first line, run) as one (patient, line) per row; an entry
    without a run (a map from before runs) is one row."""
    return [(e[0], e[1] + i) for e in entries for i in range(e[2] if len(e) > 2 else 1)]


def _map(path: Path) -> list[tuple]:
    return _rows(_stored(path))


def _write(src: SourceFile, tmp: Path, row_group: int) -> tuple[Path, Path, int]:
    out, lines = tmp / "t.parquet", tmp / "t.lines.parquet"
    n = arrowcsv.csv_to_parquet(src, _table(), "1", out, row_group=row_group, lines=lines)
    return out, lines, n


def _expected(raw: list[tuple], window: int) -> list[tuple]:
    """Hand-worked: each window of `window` lines, stably sorted by patient (missing patients last)."""
    out: list[tuple] = []
    for start in range(0, len(raw), window):
        out += sorted(raw[start:start + window], key=lambda r: (r[1] is None, r[1] or 0))  # sorted() is stable
    return out


def _by_patient(raw: list[tuple]) -> list[tuple]:
    """Hand-worked: the rows stably sorted by patient, missing patients last (sorted() is stable)."""
    return sorted(raw, key=lambda r: (r[1] is None, r[1] or 0))


@pytest.fixture
def windows_only(monkeypatch):
    """Files as mimiclab wrote them before it sorted them whole: sorted window by window only."""
    monkeypatch.setattr(arrowcsv, "SORT_WHOLE", False)


def _no_leftovers(tmp: Path, *keep: str) -> None:
    assert sorted(p.name for p in tmp.iterdir()) == sorted(["t.csv.gz", *keep])


@pytest.mark.parametrize("bucket_rows", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize("subjects", [
    [3, 1, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1, 5, 4, 4, 5, 1, 2, 3, 3],
    [2, 1, None, 1, 4, 3, 4, 3, None, 5, 5, 1, 6, 2, None, 6, 9, 8, 7],  # missing patients: last
    [7] * 9 + [1, 7, 2, 7, 7, 0, 7],  # one patient with most rows: a bucket larger than asked, cut again
    [1, 2, 3, 4, 5, 6, 7, 8] + [8, 7, 6, 5, 4, 3, 2, 1] * 3,  # the first rows (the ranges' sample) unlike the rest
])
def test_a_file_out_of_patient_order_is_sorted_whole_and_mapped_to_its_lines(tmp_path, monkeypatch, subjects,
                                                                            bucket_rows):
    """The first window is out of order: every row goes to patient-range buckets, each sorted alone; the
    Parquet file is the whole file stably sorted by patient, in whole row groups, its map names each
    row's line, no bucket file is left, and the native table copies it as it is (no sort at insert)."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", bucket_rows)
    src = _csv(tmp_path / "t.csv.gz", subjects)
    sorts: list[int] = []
    real = arrowbuckets.SortedRanges._read_sorted
    monkeypatch.setattr(arrowbuckets.SortedRanges, "_read_sorted", lambda self, k: sorts.append(k) or real(self, k))
    out, lines, n = _write(src, tmp_path, row_group=4)
    want = _by_patient(_raw(src))
    assert n == len(subjects) and _stored(out) == [r[1:] for r in want]
    assert _map(lines) == [(r[1], r[0]) for r in want]
    assert len(sorts) >= (2 if bucket_rows <= 3 else 1)  # small buckets: several ranges
    groups = pq.ParquetFile(out).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == \
        [4] * (n // 4) + ([n % 4] if n % 4 else [])
    _no_leftovers(tmp_path, "t.parquet", "t.lines.parquet")
    cut = []
    monkeypatch.setattr(duckdb_store, "_patient_ranges", lambda *a: cut.append(a))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE); CREATE TABLE m (subject_id INTEGER, line BIGINT, run INTEGER)")
    duckdb_store.insert_native(con, "t", out, lines)
    duckdb_store.insert_native(con, "m", lines, lines)
    assert not cut  # in order already: copied as it is
    assert con.execute("SELECT * FROM t ORDER BY rowid").fetchall() == [r[1:] for r in want]
    assert _rows(con.execute("SELECT * FROM m ORDER BY rowid").fetchall()) == [(r[1], r[0]) for r in want]


@pytest.mark.parametrize("top", [3, 500, 40_000])  # 16-bit bucket numbers (a radix sort) and wider ones
def test_bucket_files_keep_each_buckets_rows_in_arrival_order(tmp_path, monkeypatch, top):
    """The oracle: each bucket's file holds exactly the rows given that number, in the order they came,
    across batches and across the writes that HOLD_BYTES cuts them into."""
    import numpy as np
    import pyarrow as pa

    monkeypatch.setattr(arrowbuckets, "HOLD_BYTES", 20_000)  # several writes per bucket
    rng = np.random.default_rng(top)
    files = arrowbuckets.BucketFiles(lambda k: tmp_path / f"b{k}")
    sent: dict[int, list[tuple[int, str]]] = {}
    row = 0
    for size in (1, 0, 700, 2_000, 1_500):
        ids = rng.integers(0, top, size).astype(np.uint64 if top == 500 else np.int64)
        rows = list(range(row, row + size))
        row += size
        batch = pa.record_batch({"n": pa.array(rows, pa.int64()), "s": [f"v{r}" for r in rows]})
        files.append(batch, ids)
        for k, r in zip(ids.tolist(), rows, strict=True):
            sent.setdefault(k, []).append((r, f"v{r}"))
    assert files.close() == sorted(sent)
    for k, want in sent.items():
        with pa.OSFile(str(tmp_path / f"b{k}"), "rb") as fh:
            got = pa.ipc.open_stream(fh).read_all()
        assert list(zip(got.column("n").to_pylist(), got.column("s").to_pylist(), strict=True)) == want


def test_sorted_ranges_is_a_stable_sort_whatever_the_buckets(tmp_path):
    """arrowbuckets.SortedRanges against Python's stable sort: random keys with NULLs and one frequent key,
    bounds from a sample of 1 row to all, 1 to 40 ranges, buckets of 1 row (cut again and again) to all."""
    import numpy as np
    import pyarrow as pa

    for trial in range(60):
        rnd = random.Random(trial)
        n = rnd.choice([0, 1, 5, 100, 3000])
        keys = [None if rnd.random() < 0.05 else rnd.choice([rnd.randint(0, 50), 7]) for _ in range(n)]
        t = pa.table({"k": pa.array(keys, pa.int32()), "r": pa.array(np.arange(n))})
        work = tmp_path / str(trial)
        work.mkdir()
        sample = t.column("k").slice(0, rnd.choice([1, 50, max(n, 1)]))
        ranges = arrowbuckets.SortedRanges(lambda j, w=work: w / f"b{j}", "k",
                                           arrowbuckets.quantile_bounds(sample, rnd.choice([1, 2, 7, 40])),
                                           rnd.choice([1, 3, 50, 10_000]))
        for batch in t.to_batches(max_chunksize=rnd.choice([1, 7, 1000])):
            ranges.append(batch)
        got = [row for piece in ranges.sorted(piece_rows=rnd.choice([1, 3, 100]))
               for row in zip(piece.column("k").to_pylist(), piece.column("r").to_pylist(), strict=True)]
        assert got == sorted(zip(keys, range(n), strict=True), key=lambda r: (r[0] is None, r[0] or 0)), trial
        assert not list(work.iterdir()), trial


def test_written_window_by_window_each_window_is_sorted_and_mapped_to_its_lines(tmp_path, monkeypatch, windows_only):
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 8)
    subjects = [3, 1, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1, 5, 4, 4, 5, 1, 2, 3, 3]
    src = _csv(tmp_path / "t.csv.gz", subjects)
    out, lines, n = _write(src, tmp_path, row_group=4)
    raw = _raw(src)
    want = _expected(raw, 8)  # windows: lines 0-7, 8-15, 16-19
    assert n == len(subjects) == len(raw)
    assert _stored(out) == [r[1:] for r in want]
    assert _map(lines) == [(r[1], r[0]) for r in want]
    assert [want[i][1] for i in range(8)] == [1, 1, 1, 1, 2, 2, 3, 3]
    assert [want[i][0] for i in range(8)] == [1, 3, 6, 7, 2, 5, 0, 4]  # each patient's rows in file order
    assert pq.ParquetFile(out).metadata.num_row_groups == 5  # whole row groups: 4 + 4 + 4 + 4 + 4


@pytest.mark.parametrize(("subjects", "window", "sorted_on_insert"), [
    ([3, 1, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1], 8, True),  # two windows, each with patients 1-3: sorted whole on insert
    ([3, 1, 2, 1, 3, 2, 1, 1], 8, False),  # one window: in patient order already, copied as it is
    ([2, 1, 2, 1, 4, 3, 4, 3], 4, False),  # two windows whose ranges do not overlap (1-2, then 3-4)
    ([2, 1, None, 1, 4, 3, 4, 3], 4, True),  # a missing patient sorts last in its window: not in order
])
def test_a_file_written_window_by_window_is_sorted_whole_on_insert(tmp_path, monkeypatch, windows_only, subjects,
                                                                   window, sorted_on_insert):
    """store.duckdb_store.insert_native sorts a file with a row map whole by patient, unless its footer
    shows it in patient order already; either way the table holds every row, a patient's rows in file order
    (hand-worked oracle: Python's stable sort of the raw rows)."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", window)
    src = _csv(tmp_path / "t.csv.gz", subjects)
    out, lines, _ = _write(src, tmp_path, row_group=4)
    assert lines.exists()
    cut = []
    real = duckdb_store._patient_ranges
    monkeypatch.setattr(duckdb_store, "_patient_ranges", lambda *a: cut.append(1) or real(*a))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE); CREATE TABLE m (subject_id INTEGER, line BIGINT, run INTEGER)")
    duckdb_store.insert_native(con, "t", out, lines)
    assert bool(cut) is sorted_on_insert
    want = _by_patient(_raw(src))
    assert con.execute("SELECT * FROM t ORDER BY rowid").fetchall() == [r[1:] for r in want]
    duckdb_store.insert_native(con, "m", lines, lines)
    assert _rows(con.execute("SELECT * FROM m ORDER BY rowid").fetchall()) == [(r[1], r[0]) for r in want]


@pytest.mark.parametrize("bucket_rows", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize("subjects", [
    [3, 1, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1],
    [2, 1, None, 1, 4, 3, 4, 3, None, 5, 5, 1, 6, 2, None, 6],  # missing patients: last
    [7] * 9 + [1, 7, 2],  # one patient with most rows: a bucket larger than asked
])
def test_a_window_by_window_file_is_sorted_by_patient_range_on_insert(tmp_path, monkeypatch, windows_only, subjects,
                                                                      bucket_rows):
    """store.duckdb_store.insert_native cuts such a file into patient ranges, sorts each alone and appends
    them in order: the same table as one sort of the whole file (hand-worked oracle: Python's stable sort
    of the raw rows), the row map's table too, and no bucket file is left."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", bucket_rows)
    src = _csv(tmp_path / "t.csv.gz", subjects)
    out, lines, _ = _write(src, tmp_path, row_group=4)
    made: list[int] = []
    cut = duckdb_store._patient_ranges
    monkeypatch.setattr(duckdb_store, "_patient_ranges", lambda *a: made.append(len((b := cut(*a))[0].rows)) or b)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE); CREATE TABLE m (subject_id INTEGER, line BIGINT, run INTEGER)")
    duckdb_store.insert_native(con, "t", out, lines)
    assert made and (bucket_rows > 3 or made[0] >= 2)  # small buckets: several ranges
    duckdb_store.insert_native(con, "m", lines, lines)
    want = _by_patient(_raw(src))
    assert con.execute("SELECT * FROM t ORDER BY rowid").fetchall() == [r[1:] for r in want]
    assert _rows(con.execute("SELECT * FROM m ORDER BY rowid").fetchall()) == [(r[1], r[0]) for r in want]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv.gz", "t.lines.parquet", "t.parquet"]


def test_a_failed_bucket_insert_leaves_no_bucket_file(tmp_path, monkeypatch, windows_only):
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 2)
    src = _csv(tmp_path / "t.csv.gz", [3, 1, 2, 1, 3, 2, 1, 1, 2, 2, 3, 1])
    out, lines, _ = _write(src, tmp_path, row_group=4)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE CHECK (x < 2))")  # fails part-way
    with pytest.raises(duckdb.Error, match="CHECK constraint"):
        duckdb_store.insert_native(con, "t", out, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv.gz", "t.lines.parquet", "t.parquet"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subjects=st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=0, max_size=60),
       row_group=st.sampled_from([2, 3, 5]), groups=st.integers(1, 4), whole=st.booleans(),
       bucket_rows=st.sampled_from([1, 4, 1000]))
def test_any_order_round_trips_through_the_row_map(tmp_path, monkeypatch, subjects, row_group, groups, whole,
                                                   bucket_rows):
    """Whole-file sort (`whole`) or window by window: either way the map names each stored row's line."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", row_group * groups)
    monkeypatch.setattr(arrowcsv, "SORT_WHOLE", whole)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", bucket_rows)
    src = _csv(tmp_path / "t.csv.gz", subjects)
    out, lines, n = _write(src, tmp_path, row_group)
    raw = _raw(src)
    assert n == len(raw)
    window = row_group * groups
    if lines.exists():  # some rows moved; decided on the rows held when the first window fills (here: all)
        whole_sort = whole and len(subjects) >= window
        assert _stored(out) == [r[1:] for r in (_by_patient(raw) if whole_sort else _expected(raw, window))]
        moved = [line for _, line in _map(lines)] != list(range(n))
        assert moved or raw != _by_patient(raw)  # a map only where rows moved or the file is out of order
        by_line = {r[0]: r[1:] for r in raw}
        stored = _stored(out)
        assert [by_line[line] for _, line in _map(lines)] == stored  # the map names each stored row's line
        assert [k for k, _ in _map(lines)] == [r[0] for r in stored]
    else:  # nothing moved: the file's own order, which is patient order unless it is one row group
        assert _stored(out) == [r[1:] for r in raw]
        assert raw == _by_patient(raw) or n <= row_group
    for p in (out, lines):
        p.unlink(missing_ok=True)


def test_a_file_already_in_patient_order_gets_no_row_map(tmp_path, monkeypatch):
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 8)
    src = _csv(tmp_path / "t.csv.gz", sorted(random.Random(1).choices(range(1, 9), k=50)))
    out, lines, _ = _write(src, tmp_path, row_group=4)
    assert not lines.exists()
    assert _stored(out) == [r[1:] for r in _raw(src)]


@pytest.mark.parametrize("subjects", [[5, 6, 7, 8, 1, 2, 3, 4], [1, 1, 2, 2, 3, 3, 4, None, 5, 6],
                                      [3, 4, 5, 6, None, None, None, None, 1, 2]])
def test_windows_each_in_order_but_not_the_file_are_sorted_on_insert(tmp_path, monkeypatch, windows_only, subjects):
    """Found in review: the file goes out of order exactly at a window's edge (or a patient follows a row
    without one), so no window moves a row; the map is kept all the same and the insert sorts the table."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    src = _csv(tmp_path / "t.csv.gz", subjects)
    out, lines, _ = _write(src, tmp_path, row_group=2)
    raw = _raw(src)
    assert _stored(out) == [r[1:] for r in raw]  # nothing moved in the file written
    assert _map(lines) == [(r[1], r[0]) for r in raw]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE); CREATE TABLE m (subject_id INTEGER, line BIGINT, run INTEGER)")
    duckdb_store.insert_native(con, "t", out, lines)
    duckdb_store.insert_native(con, "m", lines, lines)
    assert con.execute("SELECT * FROM t ORDER BY rowid").fetchall() == [r[1:] for r in _by_patient(raw)]
    assert _rows(con.execute("SELECT * FROM m ORDER BY rowid").fetchall()) == [(r[1], r[0]) for r in _by_patient(raw)]


def test_a_table_of_one_row_group_keeps_file_order(tmp_path):
    src = _csv(tmp_path / "t.csv.gz", [3, 1, 2, 1])
    out, lines, _ = _write(src, tmp_path, row_group=16_384)
    assert not lines.exists()
    assert _stored(out) == [r[1:] for r in _raw(src)]


def test_map_entries_are_runs_of_one_patient_on_consecutive_lines():
    """Hand-worked: a new entry wherever the patient changes (a missing patient is one of its own) or the
    line does not follow the one before."""
    import pyarrow as pa

    keys = pa.array([1, 1, 2, 2, None, None, 1, 1, None, 3], pa.int32())
    lines = pa.array([5, 6, 7, 9, 10, 11, 12, 13, 2, 3], pa.int64())
    got = arrowcsv.map_entries(keys, lines, "subject_id")
    assert got.column_names == ["subject_id", "line", "run"]
    assert list(zip(*[got.column(c).to_pylist() for c in got.column_names], strict=True)) == [
        (1, 5, 2), (2, 7, 1), (2, 9, 1), (None, 10, 2), (1, 12, 2), (None, 2, 1), (3, 3, 1)]
    assert _rows(list(zip(*[got.column(c).to_pylist() for c in got.column_names], strict=True))) == \
        list(zip(keys.to_pylist(), lines.to_pylist(), strict=True))
    empty = arrowcsv.map_entries(keys.slice(0, 0), lines.slice(0, 0), "subject_id")
    assert empty.num_rows == 0 and empty.column_names == ["subject_id", "line", "run"]


def test_a_failed_parse_leaves_no_row_map(tmp_path, monkeypatch):
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"subject_id,v,x\n2,a,1\n1,b,2\n3,c,3\n1,d,4\n2,e,5\n1,f,not-a-number\n"))
    st_ = path.stat()
    src = SourceFile(path=path, rel=path.name, size=st_.st_size, mtime_ns=st_.st_mtime_ns)
    with pytest.raises(arrowcsv.NotFast):
        _write(src, tmp_path, row_group=2)
    assert not (tmp_path / "t.lines.parquet").exists()


# ---------------------------------------------------------------- a build of the real demo


def _demo_build(tmp_path_factory, demo_dir, whole: bool, runs: bool = True):
    from mimiclab.load import build

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(tmp_path_factory.mktemp("cluster-home")))
        mp.setattr(arrowcsv, "WINDOW_ROWS", loader.MIN_ROW_GROUP)
        mp.setattr(arrowcsv, "SORT_WHOLE", whole)
        mp.setattr(arrowcsv, "RUN_MAPS", runs)
        mp.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 7_000)  # labevents (107,727 rows) sorts in ~16 ranges
        return build("mimic-iv-demo", source=demo_dir, dest=tmp_path_factory.mktemp("cluster") / "b",
                     tables=["admissions", "labevents", "prescriptions"])


@pytest.fixture(scope="module")
def sorted_build(tmp_path_factory, demo_dir):
    """labevents and prescriptions of the demo (PhysioNet's order: patients interleaved) sorted whole, in
    patient ranges of 7,000 rows whose bounds come from the first window's 16,384 rows."""
    return _demo_build(tmp_path_factory, demo_dir, whole=True)


@pytest.fixture(scope="module")
def windowed_build(tmp_path_factory, demo_dir):
    """The same written window by window, as an earlier mimiclab did, with one row group per window, so
    each patient's rows lie in several sorted windows; the native tables are sorted whole on insert."""
    return _demo_build(tmp_path_factory, demo_dir, whole=False)


@pytest.fixture(scope="module")
def per_row_build(tmp_path_factory, demo_dir):
    """Written window by window with a map entry per row, as mimiclab did before runs (arrowcsv.RUN_MAPS)."""
    return _demo_build(tmp_path_factory, demo_dir, whole=False, runs=False)


@pytest.fixture(params=["sorted", "windowed"])
def demo_build(request):
    return request.getfixturevalue(f"{request.param}_build")


def _expanded(lines: str) -> str:
    """SQL: a row map file as one row per data row (subject_id, line, pos: 0-based stored position), each
    entry (patient, first line, run) read as lines first .. first + run - 1. Hand-written, not mimiclab's."""
    return (f"SELECT subject_id, line + i AS line, row_number() OVER (ORDER BY file_row_number, i) - 1 AS pos "
            f"FROM (SELECT subject_id, line, file_row_number, unnest(range(run)) AS i "
            f"FROM read_parquet('{lines}', file_row_number=true))")


def test_the_demo_build_is_clustered_and_its_map_names_every_rows_line(demo_build, demo_dir, request):
    windowed_build = demo_build  # either kind
    entry = windowed_build.manifest.tables["mimiciv_hosp.labevents"]
    assert entry.lines is not None and windowed_build.manifest.tables["mimiciv_hosp.admissions"].lines is None
    con = duckdb.connect(str(windowed_build.build_dir / windowed_build.manifest.database), read_only=True)
    lines = str(windowed_build.build_dir / entry.lines)
    parquet = str(windowed_build.build_dir / entry.parquet)
    raw = f"{demo_dir}/hosp/labevents.csv.gz"
    # the native table in rowid order, its k-th row of a patient joined to the raw file's row at the line the
    # map's k-th entry of that patient names (the pairing api/seed.py relies on)
    diff = con.execute(f"""
        WITH t AS (SELECT row_number() OVER (PARTITION BY subject_id ORDER BY rowid) AS k, *
                   FROM mimiciv_hosp.labevents),
             m AS (SELECT subject_id, row_number() OVER (PARTITION BY subject_id ORDER BY pos) AS k, line
                   FROM ({_expanded(lines)})),
             r AS (SELECT row_number() OVER () - 1 AS line, labevent_id, subject_id, itemid, valuenum
                   FROM read_csv('{raw}', header=true))
        SELECT count(*), count(r.line), count(*) FILTER (WHERE t.labevent_id IS DISTINCT FROM r.labevent_id
               OR t.subject_id IS DISTINCT FROM r.subject_id OR t.itemid IS DISTINCT FROM r.itemid
               OR t.valuenum IS DISTINCT FROM r.valuenum), count(DISTINCT m.line)
        FROM t JOIN m USING (subject_id, k) LEFT JOIN r USING (line)""").fetchone()
    assert diff == (107_727, 107_727, 0, 107_727)
    # and the Parquet file row for row with its map, in stored order
    assert con.execute(f"""SELECT count(*) FROM
        (SELECT file_row_number AS pos, subject_id FROM read_parquet('{parquet}', file_row_number=true)) p
        FULL JOIN ({_expanded(lines)}) m
        USING (pos) WHERE p.subject_id IS DISTINCT FROM m.subject_id""").fetchone() == (0,)
    # one entry per run of a patient's rows on consecutive lines: at least the raw file's 5,663 runs, and
    # no more than one cut per row group of the map on top (a run may be cut where the map's writes are)
    entries = pq.ParquetFile(lines).metadata
    assert 5_663 <= entries.num_rows <= 5_663 + 100 * -(-107_727 // 16_384) < 107_727 // 10
    # the database's copy of the map (store.row_map_table) is the Parquet map sorted as the table is: by
    # patient, then the map's order
    copy = f"mimiclab_rows.{chr(34)}{Path(lines).name.removesuffix('.parquet')}{chr(34)}"
    assert con.execute(f"SELECT count(*) FROM (SELECT rowid AS pos, * FROM {copy}) c FULL JOIN "
                       f"(SELECT row_number() OVER (ORDER BY subject_id, file_row_number) - 1 AS pos, * "
                       f"FROM read_parquet('{lines}', file_row_number=true)) p "
                       f"USING (pos) WHERE c.line IS DISTINCT FROM p.line OR c.subject_id IS DISTINCT FROM p.subject_id "
                       f"OR c.run IS DISTINCT FROM p.run"
                       ).fetchone() == (0,)
    stored_runs = con.execute(f"""SELECT count(*) FROM (SELECT subject_id, lag(subject_id) OVER (ORDER BY file_row_number)
        AS prev FROM read_parquet('{parquet}', file_row_number=true)) WHERE prev IS DISTINCT FROM subject_id""").fetchone()[0]
    if request.node.callspec.params["demo_build"] == "sorted":  # the Parquet file: one run per patient
        assert stored_runs == 100
        assert pq.ParquetFile(parquet).metadata.num_row_groups == -(-107_727 // loader.MIN_ROW_GROUP)
    else:  # within each window (one row group) patients ascend; the raw file has 5,663 runs of one patient
        runs = con.execute(f"""SELECT count(*) FILTER (WHERE subject_id < prev AND pos % 16384 <> 0) FROM
            (SELECT file_row_number AS pos, subject_id, lag(subject_id) OVER (ORDER BY file_row_number) AS prev
             FROM read_parquet('{parquet}', file_row_number=true))""").fetchone()
        assert runs == (0,)
        windows = -(-107_727 // 16_384)
        assert 100 < stored_runs <= 100 * windows < 5_663  # at most one run per patient and window
    # the native table is sorted whole: one run per patient, whatever the windows
    assert con.execute("""SELECT count(*), count(DISTINCT subject_id) FROM (SELECT subject_id,
        lag(subject_id) OVER (ORDER BY rowid) AS prev FROM mimiciv_hosp.labevents)
        WHERE prev IS DISTINCT FROM subject_id""").fetchone() == (100, 100)


def test_maps_written_before_runs_still_pair(per_row_build, demo_dir):
    """A build from before runs (a map entry per row, no `run` column) keeps working: its rows get their
    lines as read_csv numbers them (pandas is the oracle)."""
    from mimiclab.api import MIMICDataset

    entry = per_row_build.manifest.tables["mimiciv_hosp.labevents"]
    assert "run" not in pq.ParquetFile(per_row_build.build_dir / entry.lines).schema_arrow.names
    assert pq.ParquetFile(per_row_build.build_dir / entry.lines).metadata.num_rows == 107_727
    ds = MIMICDataset(per_row_build.build_dir, files=["hosp/labevents"])
    frame = pd.read_csv(f"{demo_dir}/hosp/labevents.csv.gz")
    for i in (0, 9, -1):
        got = ds[i]
        want = frame[frame.subject_id == got.subject_id]
        assert list(got.data["hosp/labevents"].index) == list(want.index)
        assert got.data["hosp/labevents"]["labevent_id"].tolist() == want["labevent_id"].tolist()
    assert list(ds.data["hosp/labevents"].index) == list(range(107_727))


def test_mimicdataset_over_a_sorted_table_matches_the_example_class(demo_build, demo_dir):
    from mimiclab.api import MIMICDataset

    windowed_build = demo_build
    files = ["hosp/labevents", "hosp/prescriptions"]
    ds = MIMICDataset(windowed_build.build_dir, files=files)
    assert [ds._lines[f][1] for f in files] == ["rowid", "rowid"]  # the database's copies of the maps
    frames = {f: pd.read_csv(f"{demo_dir}/{f}.csv.gz") for f in files}
    ids = sorted(set.intersection(*[set(m.subject_id) for m in frames.values()]))
    assert ds._subject_ids == [int(s) for s in ids]
    for i in (0, 7, len(ids) // 2, -1):
        got = ds[i]
        assert got.subject_id == ids[i]
        for f in files:
            want = frames[f][frames[f].subject_id == ids[i]]
            assert list(got.data[f].index) == list(want.index), f  # read_csv's index: the line in the file
            assert got.data[f]["itemid" if f.endswith("labevents") else "pharmacy_id"].tolist() == \
                want["itemid" if f.endswith("labevents") else "pharmacy_id"].tolist()
    whole = ds.data["hosp/labevents"]
    assert list(whole.index) == list(range(107_727))
    assert whole["labevent_id"].tolist() == frames["hosp/labevents"]["labevent_id"].tolist()


def test_a_table_kept_in_window_order_still_pairs_with_a_sorted_map(windowed_build, demo_dir, tmp_path):
    """A database from before native tables were sorted whole keeps such a table when a rebuild leaves it
    unchanged, while its map's table may be made anew, sorted. Lines are paired per patient, so either
    order gives read_csv's index."""
    import shutil

    from mimiclab.api import MIMICDataset

    copy = tmp_path / "b"
    shutil.copytree(windowed_build.build_dir, copy)
    entry = windowed_build.manifest.tables["mimiciv_hosp.labevents"]
    with duckdb.connect(str(copy / windowed_build.manifest.database)) as con:
        con.execute(f"CREATE OR REPLACE TABLE mimiciv_hosp.labevents AS SELECT * FROM read_parquet('{copy / entry.parquet}')")
        first_rows = con.execute("SELECT subject_id FROM mimiciv_hosp.labevents ORDER BY rowid LIMIT 20000").fetchall()
        assert first_rows != sorted(first_rows)  # the windows' order, not the patients'
    ds = MIMICDataset(copy, files=["hosp/labevents"])
    want = pd.read_csv(f"{demo_dir}/hosp/labevents.csv.gz")
    whole = ds.data["hosp/labevents"]
    assert list(whole.index) == list(range(107_727))
    assert whole["labevent_id"].tolist() == want["labevent_id"].tolist()
    for i in (0, 50, -1):
        got = ds[i].data["hosp/labevents"]
        mine = want[want.subject_id == ds[i].subject_id]
        assert list(got.index) == list(mine.index) and got["labevent_id"].tolist() == mine["labevent_id"].tolist()


def test_an_error_sorting_a_range_reaches_the_caller_and_leaves_no_file_or_thread(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 5)
    calls = []

    def broken(*a, **k):
        calls.append(1)
        raise OSError("disk full (made up)")

    monkeypatch.setattr(arrowbuckets.pc, "sort_indices", broken)
    src = _csv(tmp_path / "t.csv.gz", list(range(40, 0, -1)) * 2)
    with pytest.raises(OSError, match="disk full"):
        _write(src, tmp_path, row_group=2)
    assert 1 <= len(calls) <= 2  # the bucket read ahead may have been sorted too; nothing after
    _no_leftovers(tmp_path, "t.parquet")  # the caller (loader) deletes its temporary Parquet file
    assert not [t for t in threading.enumerate() if t.name.startswith("mimiclab-sort")]


def test_an_error_on_the_window_thread_reaches_the_caller_and_leaves_no_thread(tmp_path, monkeypatch, windows_only):
    import threading

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)

    calls = []

    def broken(*a, **k):  # fails once; a second window would report something else
        calls.append(1)
        raise OSError("disk full (made up)") if len(calls) == 1 else RuntimeError("a later window was written")

    monkeypatch.setattr(arrowcsv.pc, "array_sort_indices", broken)
    src = _csv(tmp_path / "t.csv.gz", [2, 1] * 20)
    with pytest.raises(OSError, match="disk full"):
        _write(src, tmp_path, row_group=2)
    assert len(calls) <= 2  # the window in flight may finish; nothing is written after the failure is seen
    assert not (tmp_path / "t.lines.parquet").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("mimiclab-window")]


@pytest.mark.parametrize("whole", [True, False])
def test_stopping_mid_file_with_a_window_in_flight_ends_cleanly(tmp_path, monkeypatch, whole):
    import threading

    monkeypatch.setattr(arrowcsv, "SORT_WHOLE", whole)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 50)

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowcsv, "BLOCK", 64)
    src = _csv(tmp_path / "t.csv.gz", [3, 1, 2] * 200)
    stop = threading.Event()
    seen = []

    def progress(done: int, rows: int) -> None:
        seen.append(rows)
        if rows > 100:
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        arrowcsv.csv_to_parquet(src, _table(), "1", tmp_path / "t.parquet", row_group=2, progress=progress,
                                stop=stop, lines=tmp_path / "t.lines.parquet")
    assert seen and max(seen) < 600
    _no_leftovers(tmp_path, "t.parquet")  # the caller (loader) deletes its temporary Parquet file
    assert not [t for t in threading.enumerate() if t.name.startswith(("mimiclab-window", "mimiclab-sort"))]


def test_sorting_whole_reports_progress_to_the_end_and_stops_on_request(tmp_path, monkeypatch):
    """The sorted writing after the parse moves the table's progress from PARSE_SHARE of its bytes to all
    of them (the build's time left would otherwise say 0 for minutes), and Ctrl-C (`stop`) ends it
    between pieces, leaving no bucket file."""
    import threading

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 512)
    monkeypatch.setattr(arrowcsv, "BLOCK", 2048)  # the parse reports in many steps
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 2000)
    rng = random.Random(0)
    src = _csv(tmp_path / "t.csv.gz", [rng.randint(1, 5000) for _ in range(50_000)])
    seen: list[tuple[int, int]] = []
    arrowcsv.csv_to_parquet(src, _table(), "1", tmp_path / "t.parquet", row_group=512,
                            lines=tmp_path / "t.lines.parquet", progress=lambda b, r: seen.append((b, r)))
    share = src.size * arrowcsv.PARSE_SHARE
    assert [b for b, _ in seen] == sorted(b for b, _ in seen)  # never back, also when the first window decides
    parsed = max(i for i, (b, r) in enumerate(seen) if r == 50_000 and b <= share)  # the parse ends at its share
    after = [b for b, _ in seen[parsed + 1:]]
    assert len(after) >= 10 and after == sorted(after) and seen[-1] == (src.size, 50_000)  # then the sorted writing
    stop = threading.Event()

    def progress(b: int, r: int) -> None:
        if b > src.size * arrowcsv.PARSE_SHARE:
            stop.set()  # Ctrl-C once the sorted writing has begun

    (tmp_path / "t.parquet").unlink()
    (tmp_path / "t.lines.parquet").unlink()
    with pytest.raises(KeyboardInterrupt):
        arrowcsv.csv_to_parquet(src, _table(), "1", tmp_path / "t.parquet", row_group=512,
                                lines=tmp_path / "t.lines.parquet", progress=progress, stop=stop)
    assert stop.is_set()
    _no_leftovers(tmp_path, "t.parquet")
    assert not [t for t in threading.enumerate() if t.name.startswith("mimiclab-sort")]


def test_progress_of_a_table_in_patient_order_moves_forward_to_its_size(tmp_path, monkeypatch):
    """Until the first window decides, the parse counts as PARSE_SHARE of the bytes (the rows may yet be
    sorted whole); a file in order then goes out window by window and its progress jumps forward to the
    bytes read, never back, ending at the file's size."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4096)
    monkeypatch.setattr(arrowcsv, "BLOCK", 2048)
    rng = random.Random(1)
    subjects = sorted(rng.randint(1, 5000) for _ in range(40_000))
    path = tmp_path / "t.csv"  # plain csv: its bytes are read as they are parsed (a small gzip is read whole)
    path.write_text("subject_id,v,x\n" + "".join(f"{s},r{i},{i / 4}\n" for i, s in enumerate(subjects)))
    src = SourceFile(path=path, rel=path.name, size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns)
    seen: list[tuple[int, int]] = []
    arrowcsv.csv_to_parquet(src, _table(), "1", tmp_path / "t.parquet", row_group=512,
                            lines=tmp_path / "t.lines.parquet", progress=lambda b, r: seen.append((b, r)))
    done = [b for b, _ in seen]
    assert done == sorted(done) and seen[-1] == (src.size, 40_000)
    assert done[0] < src.size * arrowcsv.PARSE_SHARE  # counted at its share before the window decided
    assert not (tmp_path / "t.lines.parquet").exists()  # in order: nothing moved, no map
    small: list[tuple[int, int]] = []  # fewer rows than a window: written only at close, still ends at its size
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 100_000)
    arrowcsv.csv_to_parquet(src, _table(), "1", tmp_path / "s.parquet", row_group=512,
                            lines=tmp_path / "s.lines.parquet", progress=lambda b, r: small.append((b, r)))
    assert [b for b, _ in small] == sorted(b for b, _ in small) and small[-1] == (src.size, 40_000)


@pytest.mark.parametrize(("whole", "failing"), [(True, 1), (True, 2), (False, 3)])
def test_a_failing_disk_reports_its_own_error_not_a_closed_file(tmp_path, monkeypatch, whole, failing):
    """A write fails (disk full): that error reaches the caller, and the tail rows are not written to the
    failed writer (which said only "Operation on closed file"), nor is a bucket file left."""
    import errno

    import pyarrow.parquet as pq_

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowcsv, "SORT_WHOLE", whole)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 10)
    real = pq_.ParquetWriter.write_table
    written = []

    def write_table(self, table, *a, **k):  # as pyarrow's writer does after a failed write: closed for good
        written.append(table.num_rows)
        if len(written) == failing:
            raise OSError(errno.ENOSPC, "No space left on device (made up)")
        if len(written) > failing:
            raise ValueError("Operation on closed file")
        return real(self, table, *a, **k)

    monkeypatch.setattr(pq_.ParquetWriter, "write_table", write_table)
    src = _csv(tmp_path / "t.csv.gz", [2, 1, 3] * 30)
    with pytest.raises(OSError, match="No space left"):
        _write(src, tmp_path, row_group=2)
    _no_leftovers(tmp_path, "t.parquet")  # the caller (loader) deletes its temporary Parquet file


def test_a_table_whose_row_group_is_wider_than_a_window_keeps_file_order(tmp_path, monkeypatch):
    monkeypatch.setattr(arrowcsv, "WINDOW_BYTES", 64)  # a few rows' worth: one row group of 4 is wider
    src = _csv(tmp_path / "t.csv.gz", [3, 1, 2, 1] * 10)
    out, lines, _ = _write(src, tmp_path, row_group=4)
    assert not lines.exists()
    assert _stored(out) == [r[1:] for r in _raw(src)]


def test_an_open_mimicdataset_follows_a_rebuild_to_the_new_row_map(tmp_path, demo_dir, monkeypatch):
    """prescriptions (18,087 rows, patients interleaved) is stored with a row map; after its file changes
    and is rebuilt, an open MIMICDataset gives the new file's rows with the new file's lines as index."""
    import shutil

    from mimiclab.api import MIMICDataset
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    src = tmp_path / "mimic-iv-demo" / "2.2"
    (src / "hosp").mkdir(parents=True)
    rx = src / "hosp" / "prescriptions.csv.gz"
    shutil.copy2(demo_dir / "hosp/prescriptions.csv.gz", rx)
    first = build("mimic-iv-demo", source=src, tables=["hosp/prescriptions"])
    assert first.manifest.tables["mimiciv_hosp.prescriptions"].lines is not None
    ds = MIMICDataset("mimic-iv-demo", ["hosp/prescriptions"])
    old = pd.read_csv(rx)
    gone = int(old.subject_id.iloc[0])
    duckdb.execute(f"COPY (SELECT * FROM read_csv('{demo_dir / 'hosp/prescriptions.csv.gz'}', all_varchar=true) "
                   f"WHERE subject_id <> '{gone}') TO '{rx}' (HEADER, COMPRESSION gzip)")
    res = build("mimic-iv-demo", source=src, tables=["hosp/prescriptions"])
    assert res.loaded == ["mimiciv_hosp.prescriptions"] and res.manifest.tables["mimiciv_hosp.prescriptions"].lines
    new = pd.read_csv(rx)
    ids = sorted(set(new.subject_id))
    assert len(ds) == len(ids) and gone not in ds._subject_ids
    for i in (0, len(ids) // 2, -1):
        got, want = ds[i].data["hosp/prescriptions"], new[new.subject_id == ids[i]]
        assert list(got.index) == list(want.index)
        assert got["pharmacy_id"].tolist() == want["pharmacy_id"].tolist()
    old_maps = list((tmp_path / "home").rglob("*.lines.parquet"))
    assert len(old_maps) == 1  # the first build's map went with its Parquet file
    with duckdb.connect(str(res.database), read_only=True) as con:  # ... and from the database
        assert con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'mimiclab_rows'").fetchall() \
            == [(old_maps[0].name.removesuffix(".parquet"),)]


_FORKED = None  # the parent's MIMICDataset, reached by a forked worker through fork() itself


def _index_in_child(i: int) -> list[int]:
    assert _FORKED is not None
    return list(_FORKED[i].data["hosp/labevents"].index)


def test_a_forked_worker_reads_the_row_map_like_its_parent(sorted_build, demo_dir):
    """The parent has used the dataset (its connection and thread pool exist) before the fork."""
    import multiprocessing

    from mimiclab.api import MIMICDataset

    global _FORKED
    _FORKED = MIMICDataset(sorted_build.build_dir, files=["hosp/labevents"])
    frame = pd.read_csv(f"{demo_dir}/hosp/labevents.csv.gz", usecols=["subject_id"])
    ids = _FORKED._subject_ids
    want = {i: list(frame.index[frame.subject_id == ids[i]]) for i in (0, 5, -1)}
    assert _index_in_child(0) == want[0]  # used in the parent first
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map(_index_in_child, list(want), chunksize=1)
    finally:
        _FORKED = None
    assert got == list(want.values())


def _runs(con, table: str) -> tuple[int, int]:
    """(runs of one patient in rowid order, patients): equal when the table is sorted whole."""
    return con.execute(f"SELECT count(*), count(DISTINCT subject_id) FROM (SELECT subject_id, lag(subject_id) "
                       f"OVER (ORDER BY rowid) AS prev FROM {table}) WHERE prev IS DISTINCT FROM subject_id").fetchone()


def _matches_read_csv(build_dir: Path, raw: Path, picks=(0, 7, -1)) -> None:
    """MIMICDataset's labevents, whole and for a few patients, against pandas.read_csv of the raw file."""
    from mimiclab.api import MIMICDataset

    ds = MIMICDataset(build_dir, files=["hosp/labevents"])
    want = pd.read_csv(raw)
    whole = ds.data["hosp/labevents"]
    assert list(whole.index) == list(range(len(want)))
    assert whole["labevent_id"].tolist() == want["labevent_id"].tolist()
    for i in picks:
        got = ds[i].data["hosp/labevents"]
        mine = want[want.subject_id == ds[i].subject_id]
        assert list(got.index) == list(mine.index) and got["labevent_id"].tolist() == mine["labevent_id"].tolist()


def test_a_views_build_made_native_sorts_its_tables_at_publish(tmp_path, demo_dir, monkeypatch):
    """Switching a build from views to native copies the unchanged Parquet files into tables at publish
    (DatabaseWriter.commit), which sorts them whole as a fresh load does."""
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", loader.MIN_ROW_GROUP)
    dest = tmp_path / "b"
    build("mimic-iv-demo", source=demo_dir, dest=dest, tables=["labevents"], storage="views")
    b = build("mimic-iv-demo", source=demo_dir, dest=dest, tables=["labevents"], storage="native")
    assert "mimiciv_hosp.labevents" in b.skipped and b.manifest.tables["mimiciv_hosp.labevents"].lines
    with duckdb.connect(str(b.database), read_only=True) as con:
        assert _runs(con, "mimiciv_hosp.labevents") == (100, 100)
    _matches_read_csv(dest, demo_dir / "hosp" / "labevents.csv.gz")


@pytest.mark.parametrize("storage", ["native", "views"])
def test_rows_without_a_patient_sort_last_and_keep_their_lines(tmp_path, demo_dir, monkeypatch, storage):
    """The demo's labevents with 2% of subject_id blanked: those rows sort last in every window and in the
    native table, and every row still gets its line in the file."""
    import numpy as np

    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", loader.MIN_ROW_GROUP)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 10_000)  # sorted in patient ranges, NULLs the last
    src = tmp_path / "src"
    (src / "hosp").mkdir(parents=True)
    for name in ("patients", "admissions", "d_labitems"):
        (src / "hosp" / f"{name}.csv.gz").symlink_to(demo_dir / "hosp" / f"{name}.csv.gz")
    df = pd.read_csv(demo_dir / "hosp" / "labevents.csv.gz", dtype=str, keep_default_na=False)
    blank = np.random.default_rng(0).random(len(df)) < 0.02
    df.loc[blank, "subject_id"] = ""
    raw = src / "hosp" / "labevents.csv.gz"
    with gzip.open(raw, "wt") as f:
        df.to_csv(f, index=False)
    b = build("mimic-iv-demo", source=src, dest=tmp_path / "b", tables=["labevents"], storage=storage, version="2.2")
    assert b.manifest.tables["mimiciv_hosp.labevents"].lines
    if storage == "native":
        with duckdb.connect(str(b.database), read_only=True) as con:
            nulls, tail = con.execute("SELECT count(*) FILTER (WHERE subject_id IS NULL), count(*) FILTER (WHERE "
                                      "subject_id IS NULL AND rowid >= (SELECT count(*) FROM mimiciv_hosp.labevents) "
                                      f"- {int(blank.sum())}) FROM mimiciv_hosp.labevents").fetchone()
            assert nulls == tail == int(blank.sum()) > 1000
    _matches_read_csv(tmp_path / "b", raw)


class _PeakArrow:
    """Peak of Arrow's allocated bytes above what was held at the start, sampled on a thread."""

    def __enter__(self):
        import threading

        import pyarrow as pa

        self.before, self.peak, self._done = pa.total_allocated_bytes(), 0, threading.Event()

        def sample() -> None:
            while not self._done.is_set():
                self.peak = max(self.peak, pa.total_allocated_bytes() - self.before)

        self._thread = threading.Thread(target=sample)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def test_cutting_a_file_into_patient_ranges_holds_one_batch_not_the_file(tmp_path, monkeypatch):
    """_patient_ranges reads the file a batch at a time: Arrow's allocations stay near the rows held for the
    next write while it cuts a 150-row-group file of 200 MB (a pre-buffered reader kept every row group
    read: 2.7 GB at full scale)."""
    import numpy as np
    import pyarrow as pa

    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 100_000)
    rng = np.random.default_rng(0)
    path = tmp_path / "t.parquet"
    with pq.ParquetWriter(path, pa.schema([("subject_id", pa.int32()), ("v", pa.string())])) as w:
        for _ in range(150):  # 150 row groups of 20,000 rows, 1.3 MB of strings each, 200 MB in all
            ids = np.sort(rng.integers(1, 1000, 20_000)).astype(np.int32)
            w.write_table(pa.table({"subject_id": ids, "v": [f"{x:064x}" for x in rng.integers(0, 2**62, 20_000)]}))
    with _PeakArrow() as peak:
        ranges, _ = duckdb_store._patient_ranges(duckdb.connect(), path, "subject_id")
    try:
        files = [ranges._path_of(k) for k in ranges.rows]
        assert len(files) >= 25 and sum(f.stat().st_size for f in files) > 40e6  # all held would pass the bound below
    finally:
        ranges.discard()
    # the batches held for the next write (HOLD_BYTES, 64 MB), a batch of 262,144 rows (~19 MB), lz4 buffers
    assert peak.peak < arrowbuckets.HOLD_BYTES + 60e6, peak.peak
    assert not [p for p in tmp_path.iterdir() if p.name != "t.parquet"]


def test_a_file_sorted_whole_holds_a_few_buckets_not_the_file(tmp_path, monkeypatch):
    """After the parse, ParquetOut writes the sorted file one bucket at a time (the next read ahead): Arrow's
    allocations stay near a few buckets, not the file (26 MB of Arrow data here, buckets of 1 MB)."""
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_BYTES", 1 << 20)
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 32_768)  # the first window decides: out of order
    rng = random.Random(0)
    path = tmp_path / "t.csv.gz"
    subjects = rng.choices(range(1, 5001), k=300_000)
    body = "".join([f"{s},{i:064x},{i}\n" for i, s in enumerate(subjects)])
    path.write_bytes(gzip.compress(("subject_id,v,x\n" + body).encode(), compresslevel=1))
    st_ = path.stat()
    src = SourceFile(path=path, rel=path.name, size=st_.st_size, mtime_ns=st_.st_mtime_ns)
    real = arrowbuckets.SortedRanges.sorted
    seen = {}

    def sorted_(self, *a, **k):  # the second phase alone: the parse before it holds blocks of its own
        seen["buckets"] = len(self.rows)
        with _PeakArrow() as peak:
            yield from real(self, *a, **k)
        seen["peak"] = peak.peak

    monkeypatch.setattr(arrowbuckets.SortedRanges, "sorted", sorted_)
    out = tmp_path / "t.parquet"
    n = arrowcsv.csv_to_parquet(src, _table(), "1", out, row_group=16_384, lines=tmp_path / "t.lines.parquet",
                                rows_hint=loader.estimate_rows(src))
    assert n == 300_000 and seen["buckets"] >= 20
    assert seen["peak"] < 15e6, seen["peak"]  # measured 11.4 MB (16 MB with 2 MB buckets)
    assert duckdb.connect().execute(f"SELECT count(*) FROM (SELECT subject_id < lag(subject_id) OVER () AS down "
                                    f"FROM '{out}') WHERE down").fetchone() == (0,)


def test_the_open_file_limit_is_raised_for_the_bucket_files():
    """Two tables sorting at once hold up to 2 x MAX_SORT_BUCKETS bucket files; a soft limit of 256 (below
    that) is raised within the hard limit, in a child process so that this one keeps its own."""
    import subprocess
    import sys

    code = ("import resource; from mimiclab import arrowbuckets as a; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, h)); a.allow_open_files(2 * a.MAX_SORT_BUCKETS + 1024); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], h)")
    soft, hard = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    wanted = 2 * arrowbuckets.MAX_SORT_BUCKETS + 1024
    assert soft == (wanted if hard < 0 else min(wanted, hard)) > 256


def test_a_full_disk_under_a_bucket_file_reports_it_and_leaves_no_bucket(tmp_path, monkeypatch):
    """A bucket file on a full disk (one of them is /dev/full): its ENOSPC reaches the caller, and every
    bucket file goes, although closing the failed writers fails again."""
    import errno
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 8)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 20)
    src = _csv(tmp_path / "t.csv.gz", list(range(200, 0, -1)))
    (tmp_path / "t.parquet.range00001").symlink_to("/dev/full")
    with pytest.raises(OSError) as err:
        _write(src, tmp_path, row_group=4)
    assert err.value.errno == errno.ENOSPC
    _no_leftovers(tmp_path, "t.parquet")  # the caller (loader) deletes its temporary Parquet file


def test_a_failed_insert_of_a_windowed_file_ends_its_sort_at_once(tmp_path, monkeypatch, windows_only):
    """The insert fails part-way while the sort has buckets cut again and one read ahead: its thread and
    files go before insert_native returns, not when the error is collected."""
    import threading

    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 2)
    monkeypatch.setattr(arrowbuckets, "MAX_SORT_BUCKETS", 4)
    src = _csv(tmp_path / "t.csv.gz", [(i * 37) % 400 + 1 for i in range(2000)])
    out, lines, _ = _write(src, tmp_path, row_group=4)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE CHECK (x < 2))")  # fails early
    with pytest.raises(duckdb.Error, match="CHECK constraint") as err:
        duckdb_store.insert_native(con, "t", out, lines)
    assert err.value is not None  # still referenced, as a build's results keep it
    _no_leftovers(tmp_path, "t.parquet", "t.lines.parquet")
    assert not [t for t in threading.enumerate() if t.name.startswith("mimiclab-sort")]


def test_a_disk_error_while_sorting_on_insert_is_raised_as_it_is(tmp_path, monkeypatch, windows_only):
    """Not as DuckDB's "reading the stream failed" (which the loader would report as an error in the csv)."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 5)
    src = _csv(tmp_path / "t.csv.gz", [(i * 7) % 40 + 1 for i in range(200)])
    out, lines, _ = _write(src, tmp_path, row_group=4)
    real, calls = arrowbuckets.SortedRanges._read_sorted, []

    def failing(self, k):
        calls.append(k)
        if len(calls) == 2:
            raise OSError(28, "No space left on device (made up)")
        return real(self, k)

    monkeypatch.setattr(arrowbuckets.SortedRanges, "_read_sorted", failing)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (subject_id INTEGER, v VARCHAR, x DOUBLE)")
    with pytest.raises(OSError, match="No space left"):
        duckdb_store.insert_native(con, "t", out, lines)
    _no_leftovers(tmp_path, "t.parquet", "t.lines.parquet")


def test_a_first_window_unlike_the_rest_still_sorts_in_bounded_pieces(tmp_path, monkeypatch):
    """A file nearly in patient order (its first two rows swapped): the first window's ranges send almost
    every row to the last bucket, which is cut again from a sample of its keys (not all of them) into at
    most MAX_SORT_BUCKETS ranges; the result is still the stable sort."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 1000)
    monkeypatch.setattr(arrowcsv, "BLOCK", 4096)
    monkeypatch.setattr(arrowbuckets, "SORT_BUCKET_ROWS", 500)
    monkeypatch.setattr(arrowbuckets, "MAX_SORT_BUCKETS", 8)
    monkeypatch.setattr(arrowbuckets, "SPLIT_SAMPLE", 300)
    subjects = list(range(1, 20_001))
    subjects[0], subjects[1] = subjects[1], subjects[0]
    src = _csv(tmp_path / "t.csv.gz", subjects)
    cuts: list[tuple[int, int]] = []
    real = arrowbuckets.quantile_bounds
    monkeypatch.setattr(arrowbuckets, "quantile_bounds", lambda sample, n: cuts.append((len(sample), n)) or real(sample, n))
    out = tmp_path / "t.parquet"
    arrowcsv.csv_to_parquet(src, _table(), "1", out, row_group=256, lines=tmp_path / "t.lines.parquet",
                            rows_hint=loader.estimate_rows(src))
    assert len(cuts) >= 2 and max(n for _, n in cuts) <= 8  # cut again, within the cap
    assert max(size for size, _ in cuts[1:]) <= 2 * 300  # from a sample, not every key of the bucket
    assert _stored(out) == [r[1:] for r in _by_patient(_raw(src))]
    _no_leftovers(tmp_path, "t.parquet", "t.lines.parquet")


def test_a_file_in_order_but_for_a_missing_patient_at_its_end_gets_no_row_map(tmp_path, monkeypatch):
    """The first window is not ascending (a NULL), so it is sorted whole; but no row moved, so no map."""
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", 4)
    src = _csv(tmp_path / "t.csv.gz", [1, 2, 3, 4, 5, None])
    out, lines, _ = _write(src, tmp_path, row_group=2)
    assert not lines.exists()
    assert _stored(out) == [r[1:] for r in _raw(src)]


def test_a_build_raises_the_open_file_limit(tmp_path, demo_dir, monkeypatch):
    from mimiclab.load import build

    asked: list[int] = []
    monkeypatch.setattr(arrowbuckets, "allow_open_files", asked.append)
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    build("mimic-iv-demo", source=demo_dir, dest=tmp_path / "b", tables=["admissions"])
    assert asked == [2 * arrowbuckets.MAX_SORT_BUCKETS + 1024]
