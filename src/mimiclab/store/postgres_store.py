"""PostgreSQL: the same tables, for groups that share one server.

`PostgresStore` is the read side (loading is `mimiclab.load.postgres`). Each thread gets its own connection
(the workbench runs queries on a thread pool); every query runs in a short transaction that carries its time
limit (`SET LOCAL statement_timeout`, the store's `max_seconds` shortened by the current Work's budget) and,
for read-only stores, `SET TRANSACTION READ ONLY`. Results come back as Arrow with types taken from the
column type OIDs (so an empty result still has its types); `stream()` reads through a server-side cursor in
batches, so the whole result never sits in memory. A `sandboxed` store runs one reading statement per call
and refuses functions that reach files, settings or other servers (the read-only transaction is the second
wall).

What the database holds is recorded by the loader in `mimiclab.manifests` (one row per published build):
`tables()` and `manifests()` read it instead of counting.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from mimiclab import redact as _redact
from mimiclab.errors import MimiclabError, QueryError
from mimiclab.sqltext import ident as _ident
from mimiclab.store import Capabilities, Params, Store
from mimiclab.store import work as _work

_INHERITED: list[Any] = []  # connections a forked child inherited (see PostgresStore._after_fork)
MANIFESTS = "mimiclab.manifests"  # written by mimiclab.load.postgres, one row per published build

# Arrow types of PostgreSQL's base types (by psycopg's type name); anything else arrives as text
_ARROW = {
    "bool": pa.bool_(), "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "oid": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "numeric": pa.float64(),
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(),
    "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"), "date": pa.date32(),
    "time": pa.time64("us"), "interval": pa.duration("us"), "bytea": pa.binary(),
}
_CONVERT: dict[str, Callable[[Any], Any]] = {"numeric": float}  # Decimal -> float (Arrow will not cast Decimal objects to double itself)


def _psycopg():
    try:
        import psycopg
    except ImportError:  # optional dependency
        raise MimiclabError("PostgreSQL support needs psycopg: pip install 'mimiclab[postgres]'") from None
    return psycopg


def redact(dsn: str) -> str:
    """The DSN without its password, for messages (parsed by libpq's rules: see mimiclab.redact)."""
    return _redact.dsn(dsn)


def _error_text(exc: BaseException, dsn: str) -> str:
    """A driver message with every spelling of the DSN's password taken out."""
    return _redact.scrub(str(exc).strip(), *_redact.dsn_secrets(dsn))


def connect(dsn: str, **kwargs):
    psycopg = _psycopg()
    if _redact.conninfo(dsn) is None:
        # libpq's parse errors quote the text around the problem, which may be part of a password
        raise MimiclabError(
            "the PostgreSQL connection string could not be parsed (not shown: it may hold a password). Use "
            "key=value pairs with values containing spaces or quotes in single quotes (password='a b\\'c'), "
            "or a postgresql://user:password@host/db URL with special characters percent-encoded.")
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        raise MimiclabError(f"cannot connect to PostgreSQL at {redact(dsn)}: {_error_text(exc, dsn)}") from None


# ----------------------------------------------------------------------------------------------- rendering

_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?s")


@lru_cache(maxsize=4096)
def escape_percent(sql: str) -> str:
    """Rendered SQL made safe for psycopg's parameter parsing: `%(name)s` / `%s` placeholders stay, every
    other `%` (inside strings and quoted names, or the modulo operator) is doubled. Portable queries always
    run with parameters (an empty list if none), so `%%` always means one literal `%`."""
    if "%" not in sql:
        return sql
    from sqlglot.tokens import Tokenizer, TokenType

    out, pos = [], 0
    for tok in Tokenizer(dialect="postgres").tokenize(sql):  # a token's start..end includes its quotes
        out.append(sql[pos:tok.start].replace("%", "%%"))  # whitespace and comments
        text = sql[tok.start:tok.end + 1]
        keep = tok.token_type == TokenType.MOD and _PLACEHOLDER.match(sql, tok.start)
        out.append(text if keep else text.replace("%", "%%"))
        pos = tok.end + 1
    out.append(sql[pos:])
    return "".join(out)


# ------------------------------------------------------------------------------------------------ sandbox

_ALLOWED_KINDS = ("Select", "SetOperation", "Values")
# Functions that read files or settings of the server, reach other servers, run SQL given as text, or act on
# other sessions. Privileges decide much of this on a well-run server; the sandbox does not rely on them.
_PG_DENY_PREFIXES = ("pg_read_", "pg_ls_", "pg_stat_file", "pg_file", "lo_", "dblink", "pg_terminate",
                     "pg_cancel", "pg_reload", "pg_rotate", "pg_promote", "pg_create_", "pg_drop_", "pg_replication",
                     "pg_logical", "pg_switch", "pg_backup", "pg_start", "pg_stop", "pg_advisory", "pg_log",
                     "pg_import", "query_to_", "cursor_to_", "table_to_", "schema_to_", "database_to_", "set_config",
                     "current_setting", "pg_show_all", "pg_config", "pg_current_logfile", "pg_walfile",
                     "pg_export", "pg_sleep", "xpath", "inet_server", "inet_client", "pg_postmaster", "version",
                     "pg_settings", "pg_hba", "pg_ident", "pg_file_settings", "pg_nextoid", "txid_", "pg_notify",
                     "postgres_fdw", "pg_authid", "pg_shadow", "pg_user_mapping", "pg_stat_activity")
_PG_EXPLAIN = re.compile(r"^\s*explain\s+(\([^()]*\)\s*|(analy[sz]e|verbose)\s+)*", re.IGNORECASE)
_PG_DENY_NAMES = {"copy", "dblink", "lo_get", "lo_put", "nextval", "setval", "pg_try_advisory_lock"}


def check_pg(sql: str) -> str:
    """`sql` if it is one reading statement (SELECT, WITH ... SELECT, VALUES, set operations) that names no
    file-, setting- or server-reaching function or catalog; else QueryError saying what is refused."""
    from sqlglot import exp

    from mimiclab.store.sqlguard import MAX_SQL_CHARS, one_statement

    text = (sql or "").strip()
    if not text:
        raise QueryError("the query is empty: write a SELECT statement.")
    m = _PG_EXPLAIN.match(text)
    if m:  # EXPLAIN [ANALYZE] runs what it explains: check that (the read-only transaction holds either way)
        check_pg(text[m.end():])
        return text.rstrip().rstrip(";").rstrip()
    if len(text) > MAX_SQL_CHARS:
        raise QueryError(f"the query is longer than {MAX_SQL_CHARS:,} characters.")
    stmt = one_statement(text, "postgres")
    if type(stmt).__name__ not in _ALLOWED_KINDS and not isinstance(stmt, exp.Subquery):
        kind = str(stmt.this).upper() if isinstance(stmt, exp.Command) else stmt.key.upper()
        raise QueryError(f"{kind} statements are not allowed here: this connection is read-only (SELECT, WITH, VALUES).")
    if stmt.find(exp.Into) is not None or stmt.args.get("into") is not None:
        raise QueryError("SELECT ... INTO is not allowed: this connection is read-only.")
    for node in stmt.walk():
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Copy,
                             exp.Set, exp.Command, exp.Merge, exp.Lock)):
            raise QueryError(f"{node.key.upper()} is not allowed here: this connection is read-only.")
        names = []
        if isinstance(node, exp.Func):
            names.append(str(node.name).lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower())
        if isinstance(node, (exp.Table, exp.Anonymous)):
            names.append(str(node.name).lower())
        for name in names:
            if name in _PG_DENY_NAMES or name.startswith(_PG_DENY_PREFIXES):
                raise QueryError(f"{name} reaches files, settings or sessions outside the dataset and is not "
                                 "allowed here; query the dataset's tables (e.g. mimiciv_hosp.admissions).")
    return text.rstrip().rstrip(";").rstrip()


# ----------------------------------------------------------------------------------------------- the store

class PostgresStore(Store):
    """Read connection(s) to a PostgreSQL database that mimiclab published into (or any database)."""

    backend = "postgres"
    dialect = "postgres"
    paramstyle = "pyformat"
    capabilities = Capabilities(stream=True, time_limit=True, register_frames=False, fulltext=False)

    def __init__(self, dsn: str, *, read_only: bool = True, sandboxed: bool = False,
                 max_seconds: float | None = None, search_path: list[str] | None = None):
        """`search_path`: schemas for unqualified names (default: `public` and the schemas the published
        builds expose unqualified, e.g. OMOP's `cdm`, as recorded in mimiclab.manifests)."""
        self._dsn = _redact.Secret(dsn, redact(dsn))  # repr, vars() and tracebacks show the masked form
        self.read_only = read_only or sandboxed
        self.sandboxed = sandboxed
        self.max_seconds = max_seconds
        self._search_path = search_path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Any] = []
        self._names = itertools.count()
        self._closed = False
        self._pid = os.getpid()
        self._connection()  # fail now (bad DSN, server down), not at the first query

    # -- connections
    def _connection(self):
        if self._pid != os.getpid():
            self._after_fork()
        con = getattr(self._local, "con", None)
        if con is not None and not con.closed:
            return con
        if self._closed:
            raise QueryError("this PostgreSQL store is closed.")
        con = connect(self._dsn.reveal(), autocommit=True, application_name="mimiclab")
        try:
            if self.read_only:
                con.execute("SET default_transaction_read_only = on")
            path = self._search_path if self._search_path is not None else self._default_search_path(con)
            con.execute("SELECT set_config('search_path', %s, false)", [", ".join(_ident(s) for s in path)])
        except _psycopg().Error as exc:
            con.close()
            raise QueryError(_error_text(exc, self._dsn.reveal()).splitlines()[0]) from None
        self._local.con = con
        with self._lock:
            self._all.append(con)
        return con

    @property
    def _con(self):
        """This thread's connection (for code and tests written when the store had exactly one)."""
        return self._connection()

    def _after_fork(self) -> None:
        """In a forked child (DataLoader workers, multiprocessing): the parent's connections share its sockets,
        so the child opens its own. The inherited ones are kept referenced and never closed or collected:
        closing one would end the parent's session on the server."""
        self._lock = threading.Lock()  # the parent's may have been held by one of its threads at fork()
        _INHERITED.extend(self._all)
        self._all = []
        self._local = threading.local()
        self._pid = os.getpid()

    @staticmethod
    def _default_search_path(con) -> list[str]:
        path = ["public"]
        if con.execute("SELECT to_regclass('mimiclab.manifests')").fetchone()[0] is not None:
            rows = con.execute("SELECT DISTINCT unnest(unqualified_schemas) FROM mimiclab.manifests ORDER BY 1")
            path += [r[0] for r in rows if r[0] not in path]
        return path

    # -- running
    def render(self, query: str) -> str:
        """DuckDB-spelled SQL in PostgreSQL's, `$name` -> `%(name)s`, literal `%` doubled (see escape_percent)."""
        return escape_percent(super().render(query))

    def _prepare(self, query: str, params: Params, portable: bool) -> tuple[str, Params]:
        if portable:
            return self.render(query), ([] if params is None else params)
        if self.sandboxed:
            query = check_pg(query)
        return query, params

    def _limit(self) -> tuple[float | None, _work.Work | None]:
        """Seconds this query may take: the store's own limit, shortened by the current request's budget."""
        return _work.budget(self.max_seconds)

    @contextlib.contextmanager
    def _transaction(self, con, whole_read: bool = False) -> Iterator[float | None]:
        """One read transaction with the time limit, cancellation and error translation around it.

        The server stops a statement at the limit (statement_timeout); `whole_read` (a stream: many FETCHes)
        also arms a timer that cancels whatever runs when the limit is reached. A query while a stream is
        open on the same thread runs inside the stream's transaction, in a savepoint. Opening costs one round
        trip (BEGIN and the settings in one message), so small lookups stay cheap."""
        psycopg = _psycopg()
        limit, w = self._limit()
        cancel = getattr(con, "cancel_safe", con.cancel)
        left = w.remaining() if w is not None else None
        own = left is None or (limit is not None and limit < left)  # else the Work's own timer cancels
        timer = None
        if whole_read and limit is not None and own:
            timer = threading.Timer(max(limit, 0.001), cancel)
            timer.daemon = True
            timer.start()
        nested = con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        setup = []
        if limit is not None:  # a Work's deadline is its timer's to enforce (with its message); this is the backstop
            setup.append(f"SET LOCAL statement_timeout = {max(1, int(limit * 1000)) + (0 if own else 250)}")
        try:
            with (w.interruptible(cancel) if w is not None else contextlib.nullcontext()):
                try:
                    if nested:
                        with con.transaction():
                            for stmt in setup:
                                con.execute(stmt)
                            yield limit
                    else:
                        con.execute("; ".join(["BEGIN READ ONLY" if self.read_only else "BEGIN", *setup]))
                        yield limit
                        con.execute("COMMIT")
                except psycopg.errors.QueryCanceled:
                    self._recover(con, nested)
                    raise self._stopped(w, limit) from None
                except psycopg.Error as exc:
                    self._recover(con, nested)
                    if w is not None and w.reason:
                        raise _work.Cancelled(w.reason) from None
                    raise QueryError(_error_text(exc, self._dsn.reveal()).splitlines()[0]) from None
                except BaseException:
                    self._recover(con, nested)
                    raise
        finally:
            if timer is not None:
                timer.cancel()

    def _recover(self, con, nested: bool) -> None:
        """After an error, leave this thread's connection idle (a cancel that arrived late can abort the
        ROLLBACK itself), or drop it so that the next query opens a fresh one."""
        if nested:
            return
        psycopg = _psycopg()
        with contextlib.suppress(psycopg.Error):
            if con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                con.execute("ROLLBACK")
        if con.closed or con.broken or con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(Exception):
                con.close()
            self._local.con = None
            with self._lock:
                self._all = [c for c in self._all if c is not con]

    @staticmethod
    def _stopped(w: _work.Work | None, limit: float | None) -> QueryError:
        if w is not None:
            with contextlib.suppress(_work.Cancelled):
                w.check()  # sets the reason if its deadline has passed
        return _work.stopped(w, limit)

    def arrow(self, query: str, params: Params = None, *, portable: bool = False) -> pa.Table:
        sql, params = self._prepare(query, params, portable)
        con = self._connection()
        with self._transaction(con):
            cur = con.cursor(binary=True)
            cur.execute(sql, params)
            if cur.description is None:
                return pa.table({})
            schema, convert = _schema(cur.description)
            batches = []  # Python row tuples live one chunk at a time, not for the whole result
            while rows := cur.fetchmany(65_536):
                batches.append(_batch(rows, schema, convert))
            return pa.Table.from_batches(batches, schema=schema)

    @contextlib.contextmanager
    def stream(self, query: str, params: Params = None, batch_rows: int = 8192, *,
               portable: bool = False) -> Iterator[pa.RecordBatchReader]:
        """Batches of `batch_rows` fetched through a server-side cursor as they are read; the time limit and
        cancellation cover the whole read (each FETCH also carries the statement timeout)."""
        sql, params = self._prepare(query, params, portable)
        con = self._connection()
        with self._transaction(con, whole_read=True) as limit:
            if not _cursorable(sql):  # EXPLAIN, SHOW: no server-side cursor; small results anyway
                cur = con.cursor(binary=True)
                cur.execute(sql, params)
            else:
                cur = con.cursor(name=f"mimiclab_{next(self._names)}", binary=True)
                cur.execute(sql, params)
            try:
                if cur.description is None:
                    yield pa.RecordBatchReader.from_batches(pa.schema([]), [])
                    return
                schema, convert = _schema(cur.description)
                deadline = None if limit is None else _now() + limit

                def batches() -> Iterator[pa.RecordBatch]:
                    while True:
                        rows = cur.fetchmany(batch_rows)
                        if deadline is not None and _now() > deadline:
                            raise _psycopg().errors.QueryCanceled("time limit")
                        if rows:
                            yield _batch(rows, schema, convert)
                        if len(rows) < batch_rows:
                            return

                yield pa.RecordBatchReader.from_batches(schema, batches())
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    def columns(self, qualified: str) -> list[tuple[str, str]]:
        schema, _, name = qualified.rpartition(".")
        if schema:
            t = self.arrow("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                           "AND table_name = %s ORDER BY ordinal_position", [schema, name])
        else:  # the first schema of the search path that has it, as the database resolves the name
            t = self.arrow("SELECT c.column_name, c.data_type FROM information_schema.columns c "
                           "WHERE c.table_name = %s AND c.table_schema = (SELECT n.nspname FROM pg_class r "
                           "JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = to_regclass(%s)) "
                           "ORDER BY c.ordinal_position", [name, _ident(name)])
        return list(zip(t.column("column_name").to_pylist(), t.column("data_type").to_pylist(), strict=True))

    def manifests(self) -> list[dict]:
        """The builds published into this database, newest first: dataset, version, digest, published_at,
        manifest (the build's manifest as a dict, with each table's status and rows)."""
        if self.scalar("SELECT to_regclass('mimiclab.manifests') IS NOT NULL") is not True:
            return []
        t = self.arrow("SELECT dataset, version, digest, published_at, manifest::text AS manifest "
                       "FROM mimiclab.manifests ORDER BY published_at DESC")
        rows = t.to_pylist()
        for r in rows:
            r["manifest"] = json.loads(r["manifest"])
        return rows

    def tables(self) -> dict[str, int]:
        """Every table and view outside the system schemas -> rows: exact from the published manifests,
        else PostgreSQL's estimate (pg_class.reltuples; 0 for views and never-analyzed tables)."""
        t = self.arrow(
            "SELECT n.nspname || '.' || c.relname AS qualified, greatest(c.reltuples, 0)::bigint AS rows "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', "
            "'mimiclab') AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname NOT LIKE '%%\\_\\_mimiclab\\_%%' ORDER BY 1", [])
        out = dict(zip(t.column("qualified").to_pylist(), t.column("rows").to_pylist(), strict=True))
        for m in reversed(self.manifests()):  # newest last, so it wins
            for key, e in m["manifest"].get("tables", {}).items():
                if key in out:
                    out[key] = int(e.get("rows", 0))
        return out

    @property
    def dsn(self) -> str:
        """The connection string with its password masked (the real one is not kept in a readable attribute)."""
        return str(self._dsn)

    def __repr__(self) -> str:
        return f"PostgresStore({self.dsn!r})"

    def close(self) -> None:
        self._closed = True
        with self._lock:
            cons, self._all = self._all, []
        for con in cons:
            with contextlib.suppress(Exception):
                con.close()


def _now() -> float:
    import time

    return time.monotonic()


_CURSORABLE = re.compile(r"^\s*(\(\s*)*(select|with|values|table)\b", re.IGNORECASE)


def _cursorable(sql: str) -> bool:
    return bool(_CURSORABLE.match(sql))


Convert = Callable[[Any], Any] | None  # applied to each non-NULL value of a column before Arrow sees it


def _as_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _each(conv: Callable[[Any], Any]) -> Callable[[Any], list]:
    return lambda values: [None if x is None else conv(x) for x in values]


def _schema(description) -> tuple[pa.Schema, list[Convert]]:
    """Arrow fields from the result's type OIDs (an empty result keeps its types), and per-column converters."""
    from psycopg.postgres import types

    fields: list[pa.Field] = []
    convert: list[Convert] = []
    for d in description:
        info = types.get(d.type_code)
        name = info.name if info is not None else ""
        is_array = info is not None and d.type_code != info.oid  # psycopg finds arrays by their element type
        conv = _CONVERT.get(name)
        if name in _ARROW:
            fields.append(pa.field(d.name, pa.list_(_ARROW[name]) if is_array else _ARROW[name]))
            convert.append(_each(conv) if is_array and conv else conv)
        else:  # json, uuid, ranges, arrays of those, user types: as text
            fields.append(pa.field(d.name, pa.string()))
            convert.append(_as_text)
    return pa.schema(fields), convert


def _batch(rows: list[tuple], schema: pa.Schema, convert: list[Convert]) -> pa.RecordBatch:
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    arrays = []
    for values, field, conv in zip(cols, schema, convert, strict=True):
        if conv is not None:
            values = [None if v is None else conv(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
