"""PostgresStore against the local server (127.0.0.1:5432, trust auth), in a throwaway database with a small
hand-made table whose answers are worked out here by hand."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pyarrow as pa
import pytest
from test_postgres import ADMIN, dsn, psycopg  # noqa: F401  (dsn: a throwaway database per module)

pytestmark = pytest.mark.postgres

ROWS = [  # id, small, big, x, name, t, d, ok, amount
    (1, 1, 10_000_000_000, 1.5, "alpha", dt.datetime(2180, 7, 23, 12, 35), dt.date(2180, 7, 23), True, "1.25"),
    (2, None, None, None, None, None, None, None, None),
    (3, 3, 30, -2.25, "100% sure", dt.datetime(2150, 1, 1), dt.date(2150, 1, 1), False, "2.5"),
    (4, 4, 40, 0.0, "", dt.datetime(2150, 1, 2, 0, 0, 1), dt.date(2150, 1, 2), True, "0"),
]


@pytest.fixture(scope="module")
def db(dsn):  # noqa: F811
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("CREATE SCHEMA s")
        con.execute("CREATE TABLE s.t (id INTEGER, small SMALLINT, big BIGINT, x DOUBLE PRECISION, name TEXT, "
                    "t TIMESTAMP(0), d DATE, ok BOOLEAN, amount NUMERIC(6, 2))")
        with con.cursor() as cur:
            cur.executemany("INSERT INTO s.t VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", ROWS)
    return dsn


def store(db, **kw):
    from mimiclab.store.postgres_store import PostgresStore

    return PostgresStore(db, **kw)


def test_arrow_keeps_types_values_and_nulls(db):
    with store(db) as pg:
        t = pg.arrow("SELECT * FROM s.t ORDER BY id")
        assert t.schema.types == [pa.int32(), pa.int16(), pa.int64(), pa.float64(), pa.string(), pa.timestamp("us"),
                                  pa.date32(), pa.bool_(), pa.float64()]
        assert [tuple(r.values()) for r in t.to_pylist()] == [
            r[:-1] + (None if r[-1] is None else float(r[-1]),) for r in ROWS]
        empty = pg.arrow("SELECT * FROM s.t WHERE false")  # no rows: still the columns' types
        assert empty.num_rows == 0 and empty.schema == t.schema
        assert pg.columns("s.t")[:3] == [("id", "integer"), ("small", "smallint"), ("big", "bigint")]
        assert pg.df("SELECT count(*) AS n FROM s.t WHERE name = %s", ["alpha"])["n"].tolist() == [1]
        assert pg.scalar("SELECT name FROM s.t WHERE id = %(id)s", {"id": 3}) == "100% sure"
        # arrays keep their element type, numeric becomes float64, json and other types arrive as text
        t = pg.arrow("""SELECT ARRAY[1, NULL, 3]::int4[] AS a, ARRAY[1.5]::numeric[] AS b, '{"k": 1}'::jsonb AS j,
                        sum(amount) AS total, '2150-01-01 10:00+00'::timestamptz AS tz FROM s.t""")
        assert t.schema.types == [pa.list_(pa.int32()), pa.list_(pa.float64()), pa.string(), pa.float64(),
                                  pa.timestamp("us", tz="UTC")]
        assert t.to_pylist() == [{"a": [1, None, 3], "b": [1.5], "j": '{"k": 1}', "total": 3.75,
                                  "tz": dt.datetime(2150, 1, 1, 10, tzinfo=dt.UTC)}]


def test_tables_without_a_published_manifest_use_the_servers_estimate(db):
    with psycopg.connect(db, autocommit=True) as con:
        con.execute("ANALYZE s.t")
    with store(db) as pg:
        assert pg.manifests() == []  # nothing published by mimiclab here
        assert pg.tables() == {"s.t": 4}


def test_portable_queries_render_with_dollar_params(db):
    with store(db) as pg:
        # DuckDB spelling: $name parameters, literal % in strings, modulo, TRY_CAST, epoch(), list literals
        q = "SELECT count(*) AS n FROM s.t WHERE name LIKE '%' || $part || '%' AND id % 2 = 1"
        assert pg.scalar(q, {"part": "sure"}, portable=True) == 1  # only id 3 ("100% sure")
        assert pg.scalar("SELECT count(*) FROM s.t WHERE name LIKE '100%'", portable=True) == 1
        assert pg.scalar("SELECT sum(TRY_CAST(small AS INTEGER)) FROM s.t WHERE id > ?", [1], portable=True) == 7
        assert pg.scalar("SELECT epoch(t) FROM s.t WHERE id = $id", {"id": 4}, portable=True) == pytest.approx(
            (dt.datetime(2150, 1, 2, 0, 0, 1) - dt.datetime(1970, 1, 1)).total_seconds())
        assert pg.scalar("SELECT count(*) FROM s.t WHERE list_contains([1, 4], id)", portable=True) == 2
        assert pg.render("SELECT $a") == "SELECT %(a)s"
        # user SQL runs as written: PostgreSQL's spelling, a % in a string needs no doubling without params
        assert pg.scalar("SELECT count(*) FROM s.t WHERE name LIKE '100%'") == 1


def test_stream_reads_in_batches_through_a_server_side_cursor(db):
    with store(db) as pg:
        with pg.stream("SELECT g AS n FROM generate_series(1, 10) g", batch_rows=3) as reader:
            assert reader.schema.field("n").type == pa.int32()
            sizes = [b.num_rows for b in reader]
            assert pg.scalar("SELECT count(*) FROM pg_cursors WHERE name LIKE 'mimiclab%%'", []) == 1
        assert sizes == [3, 3, 3, 1]
        assert pg.scalar("SELECT count(*) FROM pg_cursors WHERE name LIKE 'mimiclab%'") == 0  # closed on leaving the block
        t0 = time.perf_counter()
        # capped reads only as far as it needs: a billion-row series is not materialized
        table, more, _ = pg.capped("SELECT generate_series(1, 1000000000) AS g", 5)
        assert time.perf_counter() - t0 < 5 and table.column(0).to_pylist() == [1, 2, 3, 4, 5] and more
        table, more, _ = pg.capped("SELECT id FROM s.t WHERE id < $n ORDER BY id", 5, {"n": 3}, portable=True)
        assert table.column(0).to_pylist() == [1, 2] and not more


def test_time_limit_and_work_cancellation(db):
    from mimiclab.errors import QueryError
    from mimiclab.store.work import Cancelled, Work

    with store(db, max_seconds=0.5) as pg:
        t0 = time.perf_counter()
        with pytest.raises(QueryError, match=r"0\.5 s time limit"):
            pg.arrow("SELECT pg_sleep(10)")
        assert time.perf_counter() - t0 < 3
        assert pg.scalar("SELECT 1") == 1  # the connection is usable afterwards
    with store(db) as pg:
        w = Work(seconds=0.4, what="the export")
        t0 = time.perf_counter()
        with w.running(), pytest.raises(Cancelled, match="the export was stopped"):
            pg.arrow("SELECT pg_sleep(10)")
        assert time.perf_counter() - t0 < 3
        w = Work()
        threading.Timer(0.3, w.cancel, args=("the client went away",)).start()
        t0 = time.perf_counter()
        with w.running(), pytest.raises(Cancelled, match="client went away"), pg.stream("SELECT pg_sleep(10), 1 AS x") as reader:
            reader.read_all()
        assert time.perf_counter() - t0 < 3
        assert pg.scalar("SELECT 2") == 2


def test_sandbox_refuses_files_writes_and_several_statements(db):
    from mimiclab.errors import QueryError

    with store(db, sandboxed=True) as pg:
        assert pg.scalar("SELECT count(*) FROM s.t") == 4
        refused = {
            "SELECT pg_read_file('/etc/passwd')": "pg_read_file",
            "SELECT * FROM pg_catalog.pg_ls_dir('.')": "pg_ls_dir",
            "SELECT lo_import('/etc/passwd')": "lo_import",
            "SELECT current_setting('data_directory')": "current_setting",
            "SELECT set_config('default_transaction_read_only', 'off', false)": "set_config",
            "SELECT 1; SELECT 2": "one statement",
            "SELECT 1; DROP TABLE s.t": "one statement",
            "INSERT INTO s.t (id) VALUES (9)": "not allowed",
            "COPY s.t TO '/tmp/x'": "not allowed",
            "SELECT * INTO s.u FROM s.t": "INTO",
            "WITH d AS (DELETE FROM s.t RETURNING *) SELECT * FROM d": "not allowed",
            "EXPLAIN ANALYZE INSERT INTO s.t (id) VALUES (9)": "not allowed",
            "EXPLAIN (ANALYZE) SELECT pg_read_file('/etc/passwd')": "pg_read_file",
        }
        for sql, why in refused.items():
            with pytest.raises(QueryError, match=why):
                pg.arrow(sql)
        with pytest.raises(QueryError, match="one statement"), pg.stream("SELECT 1; SELECT 2"):
            pass
        assert pg.scalar("SELECT count(*) FROM s.t") == 4  # nothing happened
        with pg.stream("EXPLAIN (FORMAT JSON) SELECT count(*) FROM s.t") as reader:  # EXPLAIN of a SELECT is fine
            assert "Aggregate" in str(reader.read_all().column(0)[0].as_py())
    with store(db) as pg:  # not sandboxed, but read-only: the server refuses writes itself
        with pytest.raises(QueryError, match="read-only"):
            pg.arrow("INSERT INTO s.t (id) VALUES (9)")
        with pytest.raises(QueryError, match=r"read-only|multiple commands"):
            pg.arrow("SET default_transaction_read_only = off; INSERT INTO s.t (id) VALUES (9)")
        with pytest.raises(QueryError, match="read-write mode must be set before"):
            pg.arrow("SELECT set_config('transaction_read_only', 'off', true)")
        assert pg.scalar("SELECT count(*) FROM s.t") == 4


def test_one_connection_per_thread(db):
    with store(db) as pg:
        pids, errors = {}, []

        def work(i: int) -> None:
            try:
                for _ in range(5):
                    assert pg.scalar("SELECT sum(id) + %s FROM s.t", [i]) == 10 + i
                pids[i] = pg.scalar("SELECT pg_backend_pid()")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(pids.values())) == 4


def _query_in_child(pg, pipe) -> None:
    pipe.send((pg.scalar("SELECT sum(id) FROM s.t"), pg.scalar("SELECT pg_backend_pid()")))


def test_a_forked_child_opens_its_own_connection(db):
    import multiprocessing

    with store(db) as pg:
        parent = pg.scalar("SELECT pg_backend_pid()")  # the parent's connection is open
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        child = ctx.Process(target=_query_in_child, args=(pg, theirs))
        child.start()
        child.join(30)
        total, backend = ours.recv()
        assert child.exitcode == 0 and total == 10 and backend != parent  # a session of its own
        # the parent's session survived the child (a shared socket would garble or end it)
        assert pg.scalar("SELECT count(*) FROM s.t WHERE id > %s", [1]) == 3


def test_stream_time_limit_covers_the_whole_read(db):
    from mimiclab.errors import QueryError

    with store(db, max_seconds=0.6) as pg:
        t0 = time.perf_counter()
        with pytest.raises(QueryError, match="time limit"), pg.stream(
                "SELECT pg_sleep(0.2), g FROM generate_series(1, 20) g", batch_rows=1) as reader:
            for _ in reader:  # each FETCH is quick; together they are not
                pass
        assert time.perf_counter() - t0 < 3


def test_password_never_shown(db):
    from mimiclab.errors import QueryError

    with_pw = db.replace("postgres@", "postgres:hunter2pw@")  # trust auth ignores it; it must never show
    with store(with_pw) as pg:
        assert "hunter2pw" not in repr(pg) and "hunter2pw" not in pg.dsn and "hunter2pw" not in str(vars(pg))
        with pytest.raises(QueryError) as err:
            pg.arrow("SELECT 'hunter2pw'::int")  # the message would quote the value
        assert "hunter2pw" not in str(err.value) and "invalid input syntax" in str(err.value)
