"""Loading a finished build into PostgreSQL (`mimiclab publish`, `mimiclab build --backend postgres`).

Tables get mimic-code's schema, table and column names and types (SMALLINT, DOUBLE PRECISION, ...), so mimic-code's
PostgreSQL concept scripts run unchanged; the family's extra schemas (an empty `mimiciv_derived`) are created.
Timestamps keep their fraction (TIMESTAMP, not mimic-code's TIMESTAMP(0), which rounded the demo's
procedureevents storetime 17:34:04.930 to 17:34:05: other answers than the file's and the DuckDB build's).

Users keep their work on a shared server, so a re-publish replaces only the tables mimiclab loads, never a
schema: each table is streamed from the build's Parquet file (in batches, never whole) with COPY into a
staging schema, its row count is checked against the build's manifest, and then one transaction swaps every
table in (`DROP TABLE` of the old one, `ALTER TABLE ... SET SCHEMA` of the new). Whatever users built on the
old tables comes back on the new ones in that transaction: views and materialized views (definition, owner,
grants, options), indexes, constraints, and the tables' grants. If something cannot come back (a view that
names a column the new table lacks, a foreign key from a user's table), the transaction rolls back and the
message names the object: the database is left exactly as it was. Readers see the old tables or the new
ones, never a mix.

The build's manifest is recorded in `mimiclab.manifests`, so a PostgreSQL source knows what it holds (table
statuses, exact row counts, digest) without counting; schemas whose tables are also reachable unqualified
(OMOP's `cdm`) go on the database's search_path.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mimiclab import catalog
from mimiclab.errors import MimiclabError
from mimiclab.store.postgres_store import _error_text, _ident, _psycopg, connect

PG_TYPES = {
    "INTEGER": "INTEGER", "BIGINT": "BIGINT", "SMALLINT": "SMALLINT", "DOUBLE": "DOUBLE PRECISION",
    "VARCHAR": "TEXT", "TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "TIME": "TIME", "BOOLEAN": "BOOLEAN",
}
STAGING = "__mimiclab_new"  # suffix of the staging schema of each target schema (mimiclab's own, dropped after)
BATCH_ROWS = 65_536
LOCK = "mimiclab publish"  # advisory lock key (hashed) held by a running publish
JOBS = 2  # tables loading at once: the server parses one COPY per core, and Parquet -> CSV overlaps it

_META_DDL = (
    "CREATE SCHEMA IF NOT EXISTS mimiclab",
    "CREATE TABLE IF NOT EXISTS mimiclab.manifests (dataset TEXT NOT NULL, version TEXT NOT NULL, "
    "digest TEXT NOT NULL, published_at TIMESTAMPTZ NOT NULL DEFAULT now(), manifest JSONB NOT NULL, "
    "tables TEXT[] NOT NULL, unqualified_schemas TEXT[] NOT NULL DEFAULT '{}', PRIMARY KEY (dataset, version))",
)


@dataclass(frozen=True)
class Item:
    """One table to load: where it goes, its Parquet file, its columns (name, DuckDB type), rows expected."""

    db_schema: str
    name: str
    parquet: str
    columns: tuple[tuple[str, str], ...]
    rows: int

    @property
    def qualified(self) -> str:
        return f"{self.db_schema}.{self.name}"


def to_postgres(b, dsn: str, progress: Callable[[str, int], None] | None = None,
                notes: Callable[[str], None] | None = None, jobs: int = JOBS) -> dict[str, int]:
    """Load every table of a finished build (`mimiclab.sources.registry.find(slug)`) into PostgreSQL; return
    rows per qualified name. Tables the build did not load (no source file) are created empty, as in the
    DuckDB build, so SQL that mentions them still runs."""
    ds = catalog.get(b.slug)
    fam = ds.schema_family()
    tables = {(t.module, t.name): t for t in ds.tables(b.version)}
    items = []
    for e in b.manifest.tables.values():
        t = tables[(e.module, e.table)]
        cols = tuple((c.name, c.type) for c in t.columns_for(b.version))
        items.append(Item(e.db_schema, e.table, str(b.build_dir / e.parquet), cols, e.rows))
    extra = tuple(fam.extra_schemas) if fam else ()
    unqualified = tuple(sorted({m.db_schema for m in fam.modules if m.unqualified})) if fam else ()
    return publish(dsn, b.manifest, items, extra_schemas=extra, unqualified_schemas=unqualified,
                   progress=progress, notes=notes, jobs=jobs)


def publish(dsn: str, manifest, items: list[Item], *, extra_schemas: tuple[str, ...] = (),
            unqualified_schemas: tuple[str, ...] = (), progress: Callable[[str, int], None] | None = None,
            notes: Callable[[str], None] | None = None, jobs: int = JOBS) -> dict[str, int]:
    """Stage, check and swap in `items` (see the module docstring); record `manifest` in mimiclab.manifests.
    `jobs` tables load at once, each on its own connection (as pg_restore -j)."""
    psycopg = _psycopg()
    schemas = sorted({i.db_schema for i in items})
    with connect(dsn, autocommit=True, application_name="mimiclab publish") as con:
        # everything below is schema-qualified; with an empty path pg_get_viewdef & co. qualify every name too
        con.execute("SET search_path = pg_catalog")
        con.execute("SET client_min_messages = warning")
        # one publish per database at a time: both would use the same staging schemas (released on disconnect)
        if not con.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [LOCK]).fetchone()[0]:
            raise MimiclabError("another mimiclab publish is loading into this database now; wait for it to "
                                "finish, then publish again (nothing was changed).")
        try:
            for ddl in _META_DDL:
                con.execute(ddl)
            for schema in schemas:  # the staging schemas are mimiclab's own (a killed publish may have left one)
                con.execute(f"DROP SCHEMA IF EXISTS {_ident(schema + STAGING)} CASCADE")
                con.execute(f"CREATE SCHEMA {_ident(schema + STAGING)}")
            counts = _load_all(dsn, items, jobs, progress)
            with con.transaction():
                for schema in (*schemas, *extra_schemas):
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
                _swap(con, items)
                _record(con, manifest, items, unqualified_schemas)
                path = _search_path(con)
                if path:
                    try:
                        with con.transaction():  # a savepoint: only the database's owner may do this
                            db = con.execute("SELECT current_database()").fetchone()[0]
                            con.execute(f"ALTER DATABASE {_ident(db)} SET search_path = "
                                        + ", ".join(['"$user"', "public", *(_ident(s) for s in path)]))
                    except psycopg.errors.InsufficientPrivilege:
                        if notes:
                            notes(f"could not set the database's search_path (not its owner): to use {', '.join(path)} "
                                  f"tables unqualified, connect with options=-csearch_path={','.join(['public', *path])} "
                                  "(mimiclab's own connections do this themselves)")
        except psycopg.Error as exc:
            raise MimiclabError(f"publishing into PostgreSQL failed: {_error_text(exc, dsn)}; "
                                "the previous tables are unchanged") from None
        finally:
            for schema in schemas:
                with contextlib.suppress(psycopg.Error):
                    con.execute(f"DROP SCHEMA IF EXISTS {_ident(schema + STAGING)} CASCADE")
    return counts


def _load_all(dsn: str, items: list[Item], jobs: int, progress: Callable[[str, int], None] | None) -> dict[str, int]:
    """Stage every item, `jobs` at a time (biggest first, so that the workers finish together); each table's
    rows are checked against the manifest. Rows per qualified name, in the items' order."""
    pending: queue.SimpleQueue[Item] = queue.SimpleQueue()
    for item in sorted(items, key=lambda i: -os.path.getsize(i.parquet)):
        pending.put(item)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            with connect(dsn, autocommit=True, application_name="mimiclab publish") as con:
                con.execute("SET search_path = pg_catalog")
                # staging commits need not wait for the disk: a crash loses only staging tables, which the
                # next publish drops anyway; the swap's commit is durable as usual
                con.execute("SET synchronous_commit = off")
                while not errors:
                    try:
                        item = pending.get_nowait()
                    except queue.Empty:
                        return
                    with con.transaction():
                        n = _load_table(con, item)
                    if n != item.rows:
                        raise MimiclabError(
                            f"{item.qualified}: {n:,} rows reached PostgreSQL but the build's manifest says "
                            f"{item.rows:,}; nothing was replaced (rebuild the dataset, then publish again).")
                    with lock:
                        counts[item.qualified] = n
                        if progress:
                            progress(item.qualified, n)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"mimiclab-publish-{k}", daemon=True)
               for k in range(max(1, min(jobs, len(items))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as exc:  # Ctrl-C: the workers stop after the table they are loading
        errors.append(exc)
        raise
    if errors:
        raise errors[0]
    return {i.qualified: counts[i.qualified] for i in items}


def _load_table(con, item: Item) -> int:
    """CREATE the staging table and COPY the Parquet file into it batch by batch; rows the server took."""
    target = f"{_ident(item.db_schema + STAGING)}.{_ident(item.name)}"
    ddl = ", ".join(f"{_ident(c)} {PG_TYPES[t.split('(')[0].upper()]}" for c, t in item.columns)
    con.execute(f"CREATE TABLE {target} ({ddl})")
    names = [c for c, _ in item.columns]
    # FREEZE: the table was created in this transaction, so its rows can be written already frozen (no later
    # vacuum pass over every page). "\N" marks NULL so that an empty string stays an empty string.
    copy_sql = (f"COPY {target} ({', '.join(_ident(c) for c in names)}) FROM STDIN "
                "(FORMAT csv, NULL '\\N', FREEZE)")
    opts = pacsv.WriteOptions(include_header=False, null_string="\\N", quoting_style="needed")
    cur = con.cursor()
    with cur.copy(copy_sql) as copy:
        # not pre-buffered: that reader keeps every row group it read until it is closed (memory grew
        # with the file, 4 MB per 256K-row batch of labevents)
        for batch in pq.ParquetFile(item.parquet, pre_buffer=False).iter_batches(batch_size=BATCH_ROWS, columns=names):
            buf = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), buf, opts)
            copy.write(buf.getbuffer())
    n = cur.rowcount
    con.execute(f"ANALYZE {target}")  # planner statistics travel with the table when it is swapped in
    return n


# what users may have built on a table that is about to be replaced, and how to build it again
_VIEWS = """
WITH RECURSIVE dep(oid, depth) AS (
    SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = ANY(%(oids)s) AND r.ev_class <> d.refobjid
    UNION ALL
    SELECT r.ev_class, dep.depth + 1 FROM dep JOIN pg_depend d ON d.refobjid = dep.oid
      AND d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> dep.oid AND dep.depth < 100
)
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner),
       max(dep.depth) AS depth, coalesce(array_to_string(c.reloptions, ', '), '')
FROM dep JOIN pg_class c ON c.oid = dep.oid JOIN pg_namespace n ON n.oid = c.relnamespace
GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.relowner, c.reloptions
ORDER BY depth, n.nspname, c.relname
"""
_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = %(oid)s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""
_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid), contype::text FROM pg_constraint
WHERE conrelid = %(oid)s AND contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY contype = 'f', conname
"""
_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.privilege_type, a.is_grantable
FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %(oid)s AND a.grantee <> c.relowner
"""


def _swap(con, items: list[Item]) -> None:
    """Inside the caller's transaction: every staged table replaces its namesake, users' objects carried over."""
    psycopg = _psycopg()
    old: dict[str, int] = {}
    for item in items:
        oid = con.execute("SELECT to_regclass(%s)::oid::int8",
                          [f"{_ident(item.db_schema)}.{_ident(item.name)}"]).fetchone()[0]
        if oid is not None:
            old[item.qualified] = oid
    views = con.execute(_VIEWS, {"oids": list(old.values())}).fetchall() if old else []
    views = [v for v in views if v[0] not in old.values()]
    kept: dict[str, tuple[list, list, list]] = {}
    for key, oid in old.items():
        kept[key] = (con.execute(_INDEXES, {"oid": oid}).fetchall(), con.execute(_CONSTRAINTS, {"oid": oid}).fetchall(),
                     con.execute(_GRANTS, {"oid": oid}).fetchall())
    view_grants = {v[0]: con.execute(_GRANTS, {"oid": v[0]}).fetchall() for v in views}
    for key, (_indexes, constraints, _grants) in kept.items():
        # foreign keys of replaced tables (mimic-code's constraint scripts add them between MIMIC tables) would
        # stop the other table's DROP: dropped here, re-created below once every new table is in place
        schema, _, name = key.partition(".")
        for conname, _definition, kind in constraints:
            if kind == "f":
                con.execute(f"ALTER TABLE {_ident(schema)}.{_ident(name)} DROP CONSTRAINT {_ident(conname)}")
    for v in reversed(views):  # dependents first
        kind = "MATERIALIZED VIEW" if v[3] == "m" else "VIEW"
        con.execute(f"DROP {kind} {_ident(v[1])}.{_ident(v[2])}")
    for item in items:
        target = f"{_ident(item.db_schema)}.{_ident(item.name)}"
        if item.qualified in old:
            try:
                with con.transaction():
                    con.execute(f"DROP TABLE {target}")  # never CASCADE: what still depends on it stops the publish
            except psycopg.errors.DependentObjectsStillExist as exc:
                detail = (exc.diag.message_detail or "").replace("\n", "; ")
                raise MimiclabError(f"cannot replace {item.qualified}: {detail or exc}. Nothing was changed; drop "
                                    "or change that object, then publish again.") from None
        con.execute(f"ALTER TABLE {_ident(item.db_schema + STAGING)}.{_ident(item.name)} SET SCHEMA "
                    f"{_ident(item.db_schema)}")
    for fk in (False, True):  # keys first, then the foreign keys that reference them
        for key, (_indexes, constraints, _grants) in kept.items():
            schema, _, name = key.partition(".")
            for conname, definition, kind in constraints:
                if (kind == "f") == fk:
                    _again(con, f"ALTER TABLE {_ident(schema)}.{_ident(name)} ADD CONSTRAINT {_ident(conname)} "
                                f"{definition}", f"constraint {conname} on {key}")
    for key, (indexes, _constraints, grants) in kept.items():
        schema, _, name = key.partition(".")
        target = f"{_ident(schema)}.{_ident(name)}"
        for (definition,) in indexes:
            _again(con, definition, f"index on {key} ({definition})")
        for grantee, privilege, grantable in grants:
            con.execute(f"GRANT {privilege} ON TABLE {target} TO {grantee}" + (" WITH GRANT OPTION" if grantable else ""))
    for oid, schema, name, relkind, definition, owner, _depth, options in views:
        kind = "MATERIALIZED VIEW" if relkind == "m" else "VIEW"
        target = f"{_ident(schema)}.{_ident(name)}"
        with_ = f" WITH ({options})" if options else ""
        _again(con, f"CREATE {kind} {target}{with_} AS {definition.rstrip().rstrip(';')}",
               f"{kind.lower()} {schema}.{name} (built on a table this publish replaces)")
        con.execute(f"ALTER {kind} {target} OWNER TO {_ident(owner)}")
        for grantee, privilege, grantable in view_grants[oid]:
            con.execute(f"GRANT {privilege} ON TABLE {target} TO {grantee}" + (" WITH GRANT OPTION" if grantable else ""))


def _again(con, sql: str, what: str) -> None:
    """Re-create a user's object on the new table; if it cannot be, stop the whole publish naming it."""
    psycopg = _psycopg()
    try:
        with con.transaction():
            con.execute(sql)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise MimiclabError(f"cannot re-create the user's {what} on the new table: {first}. Nothing was changed; "
                            "drop or change it, then publish again.") from None


def _record(con, manifest, items: list[Item], unqualified: tuple[str, ...]) -> None:
    """The build's manifest in mimiclab.manifests; builds whose tables this one replaced are no longer held."""
    names = [i.qualified for i in items]
    con.execute("DELETE FROM mimiclab.manifests WHERE (dataset = %s AND version = %s) OR tables && %s::text[]",
                [manifest.dataset, manifest.version, names])
    con.execute("INSERT INTO mimiclab.manifests (dataset, version, digest, manifest, tables, unqualified_schemas) "
                "VALUES (%s, %s, %s, %s::jsonb, %s, %s)",
                [manifest.dataset, manifest.version, manifest.digest(), manifest.model_dump_json(), names,
                 list(unqualified)])


def _search_path(con) -> list[str]:
    rows = con.execute("SELECT DISTINCT unnest(unqualified_schemas) AS s FROM mimiclab.manifests ORDER BY s")
    return [r[0] for r in rows]
