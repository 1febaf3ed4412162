"""The build manifest: what a build contains and where it came from.

It is the single record the upper layers trust (info, workbench, cohort reports cite its hash), so it is
written atomically and read with validation.

The database and the manifest are two files, renamed one after the other; a kill between the two renames
would leave a new database described by the old manifest. So each publish also stores its manifest inside
the database (the macro `mimiclab_manifest()`, with a random `generation`), and the manifest records the
database file's size and mtime. `read()` compares that stat (no database is opened while it matches); when
it differs, the database's own copy decides, and a stale manifest.json is rewritten from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
LOCK = "build.lock"  # held by a running build of this folder (see mimiclab.load)
EMBEDDED = "mimiclab_manifest"  # macro in the database's main schema returning the manifest it was published with
SCHEMA_VERSION = 1

TableStatus = Literal["loaded", "not_loaded", "failed"]


class TableEntry(BaseModel):
    module: str
    table: str
    db_schema: str
    status: TableStatus
    parquet: str  # relative to the build dir
    # the row map when the Parquet file is stored in patient-sorted windows, not in file order (its native
    # table is then sorted whole, store.duckdb_store.insert_native): (patient, line) in the Parquet file's
    # order, relative to the build dir (load.arrowcsv.ParquetOut)
    lines: str | None = None
    rows: int = 0
    source_file: str | None = None  # relative to the source folder
    # stored column name -> the source header's spelling, where they differ (load.source.header_spelling);
    # None: built before it was kept
    header: dict[str, str] | None = None
    sha256: str | None = None
    size: int | None = None
    schema_hash: str = ""
    expected_rows: int | None = None
    count_check: Literal["ok", "mismatch", "unknown"] = "unknown"
    seconds: float | None = None
    error: str | None = None
    # loaded by an earlier build, but its source file has since gone: the rows are kept (--drop-missing drops them)
    source_missing: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.db_schema}.{self.table}"


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    mimiclab_version: str
    dataset: str
    version: str
    title: str = ""
    family: str | None = None
    source: str
    synthetic: bool = False
    synthetic_info: dict | None = None
    backend: str = "duckdb"
    storage: str = "native"  # native DuckDB tables, or views over the Parquet files
    database: str
    built_at: str
    seconds: float | None = None
    tables: dict[str, TableEntry] = Field(default_factory=dict)  # key: schema.table
    generation: str | None = None  # random per publish; the database stores the same value
    database_stat: tuple[int, int] | None = None  # (size, mtime_ns) of the database when the manifest was written

    @property
    def loaded(self) -> list[TableEntry]:
        return [t for t in self.tables.values() if t.status == "loaded"]

    @property
    def not_loaded(self) -> list[TableEntry]:
        return [t for t in self.tables.values() if t.status != "loaded"]

    def digest(self) -> str:
        """A short stable hash of what the data is (sources and counts), for reports to cite."""
        basis = {k: (t.sha256, t.rows, t.schema_hash, t.status) for k, t in sorted(self.tables.items())}
        blob = json.dumps([self.dataset, self.version, basis], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def read(build_dir: Path) -> Manifest | None:
    """The build's manifest, made to agree with its database (see the module docstring)."""
    p = build_dir / MANIFEST
    if not p.exists():
        return None
    m = Manifest.model_validate_json(p.read_text())
    db = build_dir / m.database
    try:
        st = db.stat()
    except OSError:
        return m
    if m.database_stat is not None:
        if tuple(m.database_stat) == (st.st_size, st.st_mtime_ns):
            return m
    elif st.st_mtime_ns <= p.stat().st_mtime_ns:  # a manifest from before generations: written after the db
        return m
    inside = embedded(db)
    if inside is None or inside.generation == m.generation:
        return m  # the same publish (the file was only touched), or a database that cannot tell
    fixed = inside.model_copy(update={"database_stat": (st.st_size, st.st_mtime_ns)})
    _write_if_unlocked(build_dir, fixed)
    return fixed


def embedded(db: Path) -> Manifest | None:
    """The manifest stored inside a database by `publish`, or None (older build, unreadable, locked)."""
    import duckdb

    try:
        con = duckdb.connect(":memory:")
    except duckdb.Error:
        return None
    try:
        con.execute(f"ATTACH '{str(db).replace(chr(39), chr(39) * 2)}' AS published (READ_ONLY)")
        row = con.execute(f"SELECT published.main.{EMBEDDED}()").fetchone()
        return Manifest.model_validate_json(row[0]) if row is not None else None
    except (duckdb.Error, ValueError, TypeError):
        return None
    finally:
        con.close()


def embed_sql(manifest: Manifest) -> str:
    """SQL that stores `manifest` inside the database being published (run before its rename)."""
    text = manifest.model_dump_json().replace("'", "''")
    return f"CREATE OR REPLACE MACRO main.{EMBEDDED}() AS '{text}'"


def _write_if_unlocked(build_dir: Path, manifest: Manifest) -> None:
    """Rewrite a stale manifest unless a build holds the folder (it will write its own)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fh = open(build_dir / LOCK, "a+")  # noqa: SIM115 - `with fh` below; this try catches open() alone
    except OSError:
        return  # read-only folder: the corrected manifest is still returned
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                write(build_dir, manifest)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write(build_dir: Path, manifest: Manifest) -> None:
    p = build_dir / MANIFEST
    tmp = p.with_name(p.name + f".tmp-{os.getpid()}")
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, p)


def schema_hash(columns: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:12]
