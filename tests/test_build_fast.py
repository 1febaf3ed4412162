"""The build's fast path (Arrow parses, mimiclab.load.arrowcsv) must read every file exactly as DuckDB's csv
reader does with the loader's options, or step aside: the oracle here is DuckDB's `read_csv` over the same
bytes, never the fast path's own output."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
import threading
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimiclab.catalog import Column, Table
from mimiclab.errors import BuildError
from mimiclab.load import arrowcsv, loader
from mimiclab.load.source import SourceFile

TYPES = ["INTEGER", "BIGINT", "SMALLINT", "DOUBLE", "TIMESTAMP", "DATE", "VARCHAR"]


def _table(types: list[str], key: list[str] | None = None) -> Table:
    cols = [Column(name=f"c{i}", type=t) for i, t in enumerate(types)]
    return Table(name="t", module="hosp", file="hosp/t", columns=tuple(cols), primary_key=tuple(key or ()))


def _src(path: Path) -> SourceFile:
    st_ = path.stat()
    return SourceFile(path=path, rel=path.name, size=st_.st_size, mtime_ns=st_.st_mtime_ns)


def _write(path: Path, header: list[str], body: str, gz: bool = True, eol: str = "\n") -> Path:
    data = (",".join(header) + eol + body).encode()
    if gz:
        path = path.with_suffix(".csv.gz")
        path.write_bytes(gzip.compress(data))
    else:
        path = path.with_suffix(".csv")
        path.write_bytes(data)
    return path


_DB = duckdb.connect()  # one in-memory database for the oracle's reads: a connect() costs ~17 ms, a cursor ~0.2


def _db() -> duckdb.DuckDBPyConnection:
    return _DB.cursor()


def _duckdb_rows(src: SourceFile, table: Table):
    """The oracle: DuckDB's own reader with the loader's options. None when DuckDB refuses the file."""
    try:
        return _db().execute(f"SELECT * FROM {loader.read_csv_sql(src, table, '1')}").fetchall()
    except duckdb.Error:
        return None


def _fast_rows(src: SourceFile, table: Table, tmp: Path):
    """The fast path's rows (via the Parquet file it wrote), or None when it stepped aside (NotFast)."""
    out = tmp / "out.parquet"
    try:
        n = arrowcsv.csv_to_parquet(src, table, "1", out, row_group=16_384)
    except arrowcsv.NotFast:
        return None
    rows = _db().execute(f"SELECT * FROM read_parquet('{out}')").fetchall()
    assert n == len(rows)
    types = [r[1] for r in _db().execute(f"DESCRIBE SELECT * FROM read_parquet('{out}')").fetchall()]
    assert types == [c.type for c in table.columns], "Parquet column types must be the catalog's"
    return rows


def _norm(rows):
    """NaN compared as a value (nan != nan in Python), with its sign of zero and type kept visible."""
    return None if rows is None else [tuple("NaN" if isinstance(v, float) and math.isnan(v) else (type(v).__name__, repr(v))
                                            for v in r) for r in rows]


def _same(fast, ref) -> bool:
    return fast is None or _norm(fast) == _norm(ref)  # stepping aside is always allowed; a different answer never


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few bytes: every record boundary, quote and newline lands on a block edge somewhere."""
    monkeypatch.setattr(arrowcsv, "BLOCK", 7)


def test_quoted_newlines_quotes_and_empty_strings_cross_block_edges(tmp_path, small_blocks):
    body = ('1,"line one\nline two",2180-01-01 10:00:00\n'
            '2,"he said ""hi""\nthen left",\n'
            '3,"",2180-01-02 00:00:00\n'
            '4,,2180-01-03 23:59:59\n'
            '5,"a,b,c",2180-01-04 01:02:03\n'
            '6,"ünïcödé ✓",2180-01-05 00:00:00\n'
            '7,"' + "x" * 200 + '\n' + "y" * 50 + '",2180-01-06 00:00:00')  # no trailing newline, longer than blocks
    table = _table(["INTEGER", "VARCHAR", "TIMESTAMP"])
    src = _src(_write(tmp_path / "t", ["c0", "c1", "c2"], body))
    ref = _duckdb_rows(src, table)
    assert ref is not None and len(ref) == 7
    assert ref[2][1] == "" and ref[3][1] is None  # quoted empty is a string, unquoted empty is NULL
    fast = _fast_rows(src, table, tmp_path)
    assert fast == ref


def test_crlf_and_mixed_line_endings_read_as_duckdb_reads_them(tmp_path, small_blocks):
    table = _table(["INTEGER", "DOUBLE", "DATE"])
    body = "1,1.5,2180-01-01\r\n2,,\r\n3,-2e3,2180-12-31\r\n"
    crlf = _src(_write(tmp_path / "a", ["c0", "c1", "c2"], body, eol="\r\n"))
    mixed = _src(_write(tmp_path / "m", ["c0", "c1", "c2"], body))  # LF header, CRLF rows: DuckDB refuses it
    assert _duckdb_rows(crlf, table) is not None and _duckdb_rows(mixed, table) is None
    for src in (crlf, mixed):  # stepped aside: DuckDB decides (reads it, or names the line it refuses)
        assert _fast_rows(src, table, tmp_path) is None


def test_header_only_file(tmp_path, small_blocks):
    table = _table(["INTEGER", "DOUBLE", "DATE"])
    empty = _src(_write(tmp_path / "b", ["c0", "c1", "c2"], ""))
    assert _fast_rows(empty, table, tmp_path) == [] == _duckdb_rows(empty, table)


def test_uncompressed_csv_too(tmp_path):
    table = _table(["BIGINT", "VARCHAR"])
    src = _src(_write(tmp_path / "p", ["c0", "c1"], "9000000000,x\n-1,\n", gz=False))
    assert _fast_rows(src, table, tmp_path) == _duckdb_rows(src, table) == [(9000000000, "x"), (-1, None)]


# Values each reader might take differently: spacing, signs, exponents, overflow, odd dates and times.
TRICKY = ["", '""', "0", "-0", "+5", " 5", "5 ", "1.0", "1.5", "1e2", "-1E-3", "0x10", "1_000", "nan", "NaN", "inf",
          "-Infinity", "32767", "32768", "-32769", "2147483648", "9223372036854775807", "9223372036854775808",
          "2180-01-01", "2180-01-01 10:00:00", "2180-01-01T10:00:00", "2180-01-01 10:00:00.5", "2180-01-01 10:00",
          "2180-01-01 10:00:00+02", "2180-01-01 24:00:00", "2180-02-30", "0001-01-01", "99999-01-01", "true", "t",
          "NULL", "NA", "abc", "é", '"a""b"', '"x\ny"', "12:00:00"]


def test_each_tricky_value_in_each_type_reads_as_duckdb_reads_it(tmp_path):
    disagree = []
    for type_ in TYPES:
        table = _table(["INTEGER", type_])
        for i, v in enumerate(TRICKY):
            src = _src(_write(tmp_path / f"v{TYPES.index(type_)}_{i}", ["c0", "c1"], f"1,{v}\n"))
            ref, fast = _duckdb_rows(src, table), _fast_rows(src, table, tmp_path)
            if not _same(fast, ref) or (ref is None and fast is not None):
                disagree.append((type_, v, fast, ref))
    assert not disagree


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(type_=st.sampled_from(TYPES),
       values=st.lists(st.sampled_from(TRICKY) | st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?", fullmatch=True),
                       min_size=1, max_size=6))
def test_fast_path_never_reads_a_value_differently_from_duckdb(tmp_path, type_, values):
    table = _table(["INTEGER", type_])
    body = "".join(f"{i},{v}\n" for i, v in enumerate(values))
    src = _src(_write(tmp_path / "h", ["c0", "c1"], body))
    ref = _duckdb_rows(src, table)
    fast = _fast_rows(src, table, tmp_path)
    assert _same(fast, ref), (type_, values, fast, ref)
    if ref is None:
        assert fast is None, "the fast path accepted a file DuckDB refuses"


# Fields as they come in hand-made or exported files: quotes where a csv writer would not put them
QUOTED = ["a", "", '""', '"x,y"', '"a""b"', '"multi\nline"', '5" tall', '"ab"c', 'x"y', '"', '"open\n', "\n"]


@pytest.mark.parametrize("block", [7, 64, None])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["c0,c1", 'c0",c1', '"c0,c1', '"c0","c1"']),
       fields=st.lists(st.sampled_from(QUOTED), min_size=1, max_size=12))
def test_a_quote_where_no_csv_writer_puts_one_never_shifts_rows(tmp_path, monkeypatch, block, header, fields):
    """Blocks are cut where the count of quotes before a newline is even, which holds only when every
    quote opens, closes or doubles inside a quoted field. A quote inside an unquoted field (`5" tall`),
    which DuckDB reads as a character, once shifted every cut after it: Arrow then read other rows,
    silently. Whatever the quotes, the fast path gives DuckDB's rows or steps aside, and steps aside
    wherever DuckDB refuses the file (text after a closing quote, a quote never closed)."""
    if block is not None:
        monkeypatch.setattr(arrowcsv, "BLOCK", block)
    table = _table(["VARCHAR", "VARCHAR"])
    body = "".join(f"{fields[i]},{fields[i + 1] if i + 1 < len(fields) else 'z'}\n" for i in range(0, len(fields), 2))
    path = tmp_path / "q.csv.gz"
    path.write_bytes(gzip.compress((header + "\n" + body).encode()))
    src = _src(path)
    ref, fast = _duckdb_rows(src, table), _fast_rows(src, table, tmp_path)
    assert _same(fast, ref), (header, body, fast, ref)
    if ref is None:
        assert fast is None, ("the fast path accepted a file DuckDB refuses", header, body, fast)


def test_a_stray_quote_that_shifted_rows_once_now_gives_duckdbs_rows(tmp_path, mimiclab_home):
    """The case found in review: at the default block size the fast path read 4 rows of this file, one
    of them made of a quoted field's second line; DuckDB reads 3."""
    table = _table(["VARCHAR", "VARCHAR"])
    src = _src(_write(tmp_path / "s", ["c0", "c1"], '5" tall,x\nn,"first line\nfoo,bar"\n1,2\n'))
    ref = _duckdb_rows(src, table)
    assert ref == [('5" tall', "x"), ("n", "first line\nfoo,bar"), ("1", "2")]
    with pytest.raises(arrowcsv.NotFast, match="quote"):
        arrowcsv.csv_to_parquet(src, table, "1", tmp_path / "o.parquet", row_group=16_384)
    loader.load_csv_to_parquet(duckdb.connect(), src, table, "1", tmp_path / "n.parquet")
    assert duckdb.connect().execute(f"SELECT * FROM '{tmp_path / 'n.parquet'}'").fetchall() == ref


@pytest.mark.parametrize("block", [7, None])
def test_an_empty_line_reads_as_duckdb_reads_it_and_a_notes_empty_lines_stay_fast(tmp_path, monkeypatch, block):
    """DuckDB skips an empty line (one column: reads it as NULL); Arrow read a row of NULLs, so the build
    had an extra row. An empty line inside a quoted field (paragraphs of a note) is text: still fast."""
    if block is not None:
        monkeypatch.setattr(arrowcsv, "BLOCK", block)
    two = _table(["INTEGER", "VARCHAR"])
    for i, body in enumerate(["1,a\n\n2,b\n", "\n1,a\n", "1,a\n2,b\n\n", ",\n1,a\n"]):
        src = _src(_write(tmp_path / f"e{i}", ["c0", "c1"], body))
        ref, fast = _duckdb_rows(src, two), _fast_rows(src, two, tmp_path)
        assert ref is not None and _same(fast, ref), (body, fast, ref)
    assert _duckdb_rows(_src(tmp_path / "e0.csv.gz"), two) == [(1, "a"), (2, "b")]
    assert _fast_rows(_src(tmp_path / "e3.csv.gz"), two, tmp_path) == [(None, None), (1, "a")]  # `,` is a row
    note = _src(_write(tmp_path / "n", ["c0", "c1"], '1,"para one\n\npara two"\n,"\n\n"\n2,x\n'))
    assert _fast_rows(note, two, tmp_path) == _duckdb_rows(note, two) == [(1, "para one\n\npara two"), (None, "\n\n"),
                                                                         (2, "x")]
    one_col = _table(["VARCHAR"])
    src = _src(_write(tmp_path / "o", ["c0"], "a\n\nb\n"))
    assert _same(_fast_rows(src, one_col, tmp_path), _duckdb_rows(src, one_col))


def test_records_are_cut_only_between_records():
    rows = [["1", "plain"], ["2", 'with "quotes"'], ["3", "multi\nline\r\ntext"], ["4", ""], ["5", "x" * 50]]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["c0", "c1"], *rows])
    data = buf.getvalue().encode()
    for size in (1, 2, 3, 5, 8, 13, 64, 1 << 20):
        blocks = list(arrowcsv._records(io.BytesIO(data), block=size))
        assert b"".join(blocks) == data[data.index(b"\n") + 1:]
        parsed = [r for b in blocks for r in csv.reader(io.StringIO(b.decode(), newline=""))]
        assert parsed == rows, size


def test_a_stray_quote_steps_aside_instead_of_reading_the_whole_file_as_one_record(tmp_path, monkeypatch):
    """After an unbalanced quote no newline ends a record: the fast path gives up at MAX_RECORD (DuckDB's
    reader then names the line) instead of growing one record to the file's size, and each read looks
    only at its new newlines (many newlines inside quotes once took seconds per 400 KB)."""
    import time

    monkeypatch.setattr(arrowcsv, "MAX_RECORD", 1 << 20)
    rows = "".join(f"{i},v\n" for i in range(400_000))  # ~3.6 MB of newlines after the stray quote
    for head in ('c0,c1\nx,"unclosed\n', '"c0,c1\n'):  # the stray quote in a row, or in the header
        data = (head + rows).encode()
        t0 = time.perf_counter()
        with pytest.raises(arrowcsv.NotFast, match="stray quote"):
            list(arrowcsv._records(io.BytesIO(data), block=64 << 10))
        assert time.perf_counter() - t0 < 5


def test_a_corrupt_gzip_stream_steps_aside_to_duckdb_which_names_the_file(tmp_path, mimiclab_home):
    """ISA-L reports bad deflate data as its own error type (not an OSError): the fast path must still
    step aside, so the build names the file instead of stopping with a bare IsalError."""
    table = _table(["INTEGER", "VARCHAR"])
    body = "".join(f"{i},value {i * 7919 % 10007}\n" for i in range(200_000))
    path = _write(tmp_path / "bad", ["c0", "c1"], body)
    raw = bytearray(path.read_bytes())
    for at in range(len(raw) // 2, len(raw) // 2 + 64):  # mid-stream: the deflate data, not the header or CRC
        raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    src = _src(path)
    with pytest.raises(arrowcsv.NotFast):
        arrowcsv.csv_to_parquet(src, table, "1", tmp_path / "out.parquet", row_group=16_384)
    with pytest.raises(BuildError, match="bad"):
        loader.load_csv_to_parquet(duckdb.connect(), src, table, "1", tmp_path / "n.parquet")
    assert not list(tmp_path.glob("n.parquet*"))


def test_a_value_arrow_refuses_goes_through_duckdb_and_its_error_names_line_and_column(tmp_path, mimiclab_home):
    table = _table(["INTEGER", "INTEGER"])
    src = _src(_write(tmp_path / "bad", ["c0", "c1"], "1,2\n2,oops\n"))
    con = duckdb.connect()
    with pytest.raises(BuildError) as err:
        loader.load_csv_to_parquet(con, src, table, "1", tmp_path / "bad.parquet")
    assert "line 3" in str(err.value) and "c1" in str(err.value) and "oops" in str(err.value)
    assert not (tmp_path / "bad.parquet").exists()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_native_load_gives_duckdb_and_parquet_the_same_rows(tmp_path, small_blocks):
    table = _table(["INTEGER", "VARCHAR", "DOUBLE"], key=["c0"])
    body = "".join(f'{i},"v{i}\n",{i / 7}\n' for i in range(500))
    src = _src(_write(tmp_path / "n", ["c0", "c1", "c2"], body))
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    n = loader.load_csv_to_parquet(con, src, table, "1", tmp_path / "n.parquet", into="main.t")
    ref = _duckdb_rows(src, table)
    assert n == 500
    assert con.execute("SELECT * FROM main.t").fetchall() == ref
    assert con.execute(f"SELECT * FROM read_parquet('{tmp_path / 'n.parquet'}')").fetchall() == ref


def test_native_load_with_a_duplicate_key_leaves_the_table_as_it_was(tmp_path):
    table = _table(["INTEGER", "VARCHAR"], key=["c0"])
    src = _src(_write(tmp_path / "d", ["c0", "c1"], "1,a\n2,b\n1,c\n"))
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE main.t AS SELECT 42 AS c0, 'old' AS c1")
    with pytest.raises(BuildError, match="not unique"):
        loader.load_csv_to_parquet(con, src, table, "1", tmp_path / "d.parquet", into="main.t")
    assert con.execute("SELECT * FROM main.t").fetchall() == [(42, "old")]
    assert not (tmp_path / "d.parquet").exists()


@pytest.mark.parametrize("reader", ["arrow", "duckdb"])
def test_the_key_check_runs_before_the_inserts_transaction(tmp_path, monkeypatch, reader):
    """Inside the transaction, the uncommitted rows held in DuckDB's memory left the check's grouping too
    little of the build's 640 MB (15.8M scattered labevents keys): it must run on the file, before."""
    table = _table(["INTEGER", "VARCHAR"], key=["c0"])
    eol = "\n" if reader == "arrow" else "\r\n"  # a carriage return sends the file to DuckDB's reader
    src = _src(_write(tmp_path / "k", ["c0", "c1"], f"1,a{eol}2,b{eol}", eol=eol))
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    seen = []
    real = loader.check_primary_key

    def probe(c, relation, *a, **k):
        try:
            c.execute("BEGIN TRANSACTION")  # refused inside an open transaction
            c.execute("ROLLBACK")
            seen.append((relation, "outside"))
        except duckdb.TransactionException:
            seen.append((relation, "inside"))
        return real(c, relation, *a, **k)

    monkeypatch.setattr(loader, "check_primary_key", probe)
    assert loader.load_csv_to_parquet(con, src, table, "1", tmp_path / "k.parquet", into="main.t") == 2
    assert [w for _, w in seen] == ["outside"] and seen[0][0].startswith("read_parquet(")
    assert con.execute("SELECT * FROM main.t ORDER BY c0").fetchall() == [(1, "a"), (2, "b")]


def test_row_groups_are_full_except_the_last(tmp_path, small_blocks):
    table = _table(["INTEGER"])
    src = _src(_write(tmp_path / "g", ["c0"], "".join(f"{i}\n" for i in range(10_000))))
    out = tmp_path / "g.parquet"
    assert arrowcsv.csv_to_parquet(src, table, "1", out, row_group=3_000) == 10_000
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3000, 3000, 3000, 1000]
    assert pq.read_table(out).column("c0").to_pylist() == list(range(10_000))  # file order kept


def test_stop_event_ends_the_parse_and_no_parse_thread_is_left_working(tmp_path, small_blocks):
    table = _table(["INTEGER"])
    src = _src(_write(tmp_path / "s", ["c0"], "".join(f"{i}\n" for i in range(20_000))))
    stop = threading.Event()
    seen = []

    def progress(done, rows):
        seen.append((done, rows))
        if rows > 1000:
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        arrowcsv.csv_to_parquet(src, table, "1", tmp_path / "s.parquet", row_group=16_384, progress=progress, stop=stop)
    assert seen and all(b[0] >= a[0] and b[1] >= a[1] for a, b in itertools.pairwise(seen))
    assert all(0 <= d <= src.size for d, _ in seen)


def test_primary_key_check_spills_instead_of_running_out_of_memory(tmp_path):
    """At full scale (labevents: 158M keys) the check must fit the build's memory limit: here 8M keys under a
    64 MB limit (count(DISTINCT), the check before, ran out of memory there, most of the time)."""
    con = duckdb.connect(str(tmp_path / "k.duckdb"), config={"memory_limit": "64MB", "threads": 2})
    con.execute(f"SET temp_directory='{tmp_path / 'spill'}'")
    con.execute("CREATE TABLE t AS SELECT (i * 7919) % 8000000 AS c0, 'x' AS c1 FROM range(8000000) r(i)")
    src = SourceFile(path=tmp_path / "t.csv.gz", rel="t.csv.gz", size=1, mtime_ns=0)
    loader.check_primary_key(con, "t", src, _table(["BIGINT", "VARCHAR"], key=["c0"]))  # unique: passes
    con.execute("INSERT INTO t VALUES (5, 'again')")
    with pytest.raises(BuildError, match=r"1 key value \(e.g. c0=5 appears 2 times\)"):
        loader.check_primary_key(con, "t", src, _table(["BIGINT", "VARCHAR"], key=["c0"]))


def test_an_interrupted_build_resumes_by_table(data_root, mimiclab_home, monkeypatch):
    """Ctrl-C after some tables finished: the next build takes those from their finished Parquet files (named
    by source sha256 and schema) instead of parsing them again, and ends with the same tables as a build
    that was never interrupted (compared with DuckDB over the raw csv.gz)."""
    from mimiclab.load import build

    src = data_root / "mimic-iv-demo" / "2.2"
    monkeypatch.setattr(arrowcsv, "WINDOW_ROWS", loader.MIN_ROW_GROUP)  # several windows per patient table
    finished: list[str] = []

    def stop_after_three(event, key, **info):
        if event == "loaded":
            finished.append(key)
            if len(finished) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build("mimic-iv-demo", source=src, progress=stop_after_three)
    assert len(finished) >= 3
    parsed: list[str] = []
    real = arrowcsv.csv_to_parquet
    monkeypatch.setattr(arrowcsv, "csv_to_parquet", lambda s, t, *a, **k: parsed.append(t.name) or real(s, t, *a, **k))
    events: list[tuple[str, str | None]] = []
    result = build("mimic-iv-demo", source=src, progress=lambda e, k, **i: events.append((e, k)))
    resumed = {k for e, k in events if e == "resumed"}
    assert set(finished) <= resumed  # every table that had finished; others (finished as Ctrl-C came) may be
    assert not {k.split(".")[1] for k in resumed} & set(parsed)  # not parsed again
    con = duckdb.connect(str(result.database), read_only=True)
    for key in finished[:3]:
        entry = result.manifest.tables[key]
        raw = src / entry.source_file
        want = duckdb.connect().execute(f"SELECT count(*) FROM read_csv('{raw}', header=true)").fetchone()[0]
        assert con.execute(f"SELECT count(*) FROM {key}").fetchone()[0] == want == entry.rows
    mapped = [k for k in resumed if result.manifest.tables[k].lines]
    assert mapped  # a table stored with a row map came back from its file sorted whole, as when parsed
    for key in mapped:
        assert con.execute(f"SELECT count(*) = count(DISTINCT subject_id) FROM (SELECT subject_id, lag(subject_id) "
                           f"OVER (ORDER BY rowid) AS prev FROM {key}) WHERE prev IS DISTINCT FROM subject_id").fetchone() == (True,)
    assert not result.failed


def test_force_never_resumes(data_root, mimiclab_home):
    from mimiclab.load import build

    src = data_root / "mimic-iv-ed-demo" / "2.2"
    build("mimic-iv-ed-demo", source=src)
    events: list[str] = []
    build("mimic-iv-ed-demo", source=src, force=True, progress=lambda e, k, **i: events.append(e))
    assert "resumed" not in events and events.count("loaded") >= 5


def test_a_forked_child_builds_after_its_parent_did(data_root, tmp_path):
    """The parse and hash pools are per process: a child forked after a build (a notebook's multiprocessing
    worker, joblib) must get threads of its own, not inherit the parent's dead ones and wait forever."""
    import multiprocessing as mp
    import os

    from mimiclab.load import build

    src = data_root / "mimic-iv-ed-demo" / "2.2"
    os.environ["MIMICLAB_HOME"] = str(tmp_path / "parent")
    try:
        build("mimic-iv-ed-demo", source=src)  # the pools now exist in this process
    finally:
        os.environ.pop("MIMICLAB_HOME", None)
    ctx = mp.get_context("fork")
    child = ctx.Process(target=_child_build, args=(str(src), str(tmp_path / "child")))
    child.start()
    child.join(90)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child's build hung"
    assert child.exitcode == 0
    assert (tmp_path / "child" / "db" / "mimic-iv-ed-demo").is_dir()


def _child_build(src: str, home: str) -> None:
    import os

    from mimiclab.load import build

    os.environ["MIMICLAB_HOME"] = home
    build("mimic-iv-ed-demo", source=src, force=True)


def test_tables_load_two_at_a_time_but_enter_duckdb_one_at_a_time(data_root, mimiclab_home, monkeypatch):
    """Two DuckDB bulk inserts at once each allocate outside the buffer pool (the full-scale build peaked
    over 2 GB that way): loads overlap (Arrow parses one table while DuckDB takes another) but their DuckDB
    steps take turns. Each insert is slowed here so that overlap, if allowed, could not be missed."""
    import time as _time

    from mimiclab.load import build

    spans: list[tuple[float, float]] = []
    real = loader._in_transaction

    def slow(con, sql, then):
        t0 = _time.perf_counter()
        _time.sleep(0.05)
        real(con, sql, then)
        spans.append((t0, _time.perf_counter()))

    monkeypatch.setattr(loader, "_in_transaction", slow)
    loads: dict[str, list[float]] = {}

    def watch(event, key, **info):
        if event in ("loading", "loaded"):
            loads.setdefault(key, []).append(_time.perf_counter())

    result = build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2", progress=watch)
    assert not result.failed and len(spans) >= 5
    spans.sort()
    for (_a0, a1), (b0, _b1) in itertools.pairwise(spans):
        assert b0 >= a1, "two DuckDB inserts ran at once"
    whole = sorted((v[0], v[1]) for v in loads.values() if len(v) == 2)
    assert any(b0 < a1 for (a0, a1), (b0, b1) in itertools.pairwise(whole)), "loads never overlapped: nothing tested"



def test_the_block_size_set_by_a_test_is_the_one_used(tmp_path, small_blocks):
    """The block-edge tests above mean something only if the parse really cuts 7-byte blocks (a default
    argument once froze 8 MiB): 50 records of 8 bytes and more come out as many blocks, not one."""
    table = _table(["INTEGER", "VARCHAR"])
    src = _src(_write(tmp_path / "b", ["c0", "c1"], "".join(f"{i},abcdef\n" for i in range(50))))
    parts = list(arrowcsv.parsed(src, arrowcsv.arrow_schema(table, "1")))
    assert len(parts) >= 25 and sum(p.num_rows for p in parts) == 50


def test_only_text_columns_get_a_dictionary_and_the_values_read_back_exactly(tmp_path):
    """Dictionary pages for numbers and times cost encode time and (mostly falling back to plain) made the
    file larger: only VARCHAR columns get one. Values are compared with DuckDB's own read of the csv."""
    table = _table(["INTEGER", "DOUBLE", "TIMESTAMP", "VARCHAR"])
    body = "".join(f"{i},{i * 0.37:.2f},2180-01-{i % 28 + 1:02d} 0{i % 10}:15:00,unit {i % 3}\n" for i in range(5000))
    src = _src(_write(tmp_path / "t", ["c0", "c1", "c2", "c3"], body))
    out = tmp_path / "out.parquet"
    arrowcsv.csv_to_parquet(src, table, "1", out, row_group=2048)
    meta = pq.ParquetFile(out).metadata
    for g in range(meta.num_row_groups):
        enc = {meta.row_group(g).column(c).path_in_schema: meta.row_group(g).column(c).encodings for c in range(4)}
        assert "RLE_DICTIONARY" in enc["c3"], enc
        assert not any("DICTIONARY" in e for c in ("c0", "c1", "c2") for e in enc[c]), enc
    assert duckdb.connect().execute(f"SELECT * FROM '{out}'").fetchall() == _duckdb_rows(src, table)
