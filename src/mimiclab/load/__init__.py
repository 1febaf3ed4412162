"""Build: a folder in PhysioNet's layout -> typed Parquet + a DuckDB database + a manifest.

Layout of a build (``config.build_dir(slug, version)``)::

    parquet/<module>/<table>-<key>.parquet   content-addressed by source sha256 + column schema
    <slug>.duckdb                            tables (or views) named as mimic-code/BigQuery name them
    manifest.json                            sources, checksums, row counts, status per table

Every file reaches its final name by rename, and the database and manifest are replaced only after all
selected tables are done, so a crash or Ctrl-C midway leaves the previous build exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if sys.platform == "win32":  # pragma: no cover - no advisory locks on Windows
    fcntl = None
else:
    import fcntl

import duckdb

from mimiclab import __version__, arrowbuckets, catalog, config
from mimiclab.catalog import Dataset, Table
from mimiclab.checksums import sha256_file as sha256
from mimiclab.errors import BuildError, MimiclabError
from mimiclab.load import manifest as mf
from mimiclab.load.arrowcsv import PerProcessPool
from mimiclab.load.loader import connect, load_csv_to_parquet, reuse_parquet, write_empty_parquet
from mimiclab.load.source import SourceFile, check_header, header_spelling, locate, source_problem
from mimiclab.load.version import resolve as resolve_version
from mimiclab.store import TableRef
from mimiclab.store.duckdb_store import STORAGE, DatabaseWriter

SYNTHETIC_MARKER = "SYNTHETIC.json"
LOCK = mf.LOCK
_HASH_POOL = PerProcessPool(1, "mimiclab-sha256")

Progress = Callable[..., None]  # progress(event, table_key, **info)


@dataclass
class BuildResult:
    build_dir: Path
    manifest: mf.Manifest = field(init=False)  # set by _build before it returns
    loaded: list[str] = field(default_factory=list)  # tables (re)loaded now
    skipped: list[str] = field(default_factory=list)  # unchanged since last build
    missing: list[str] = field(default_factory=list)  # selected, but no source file: empty typed table
    gone: list[str] = field(default_factory=list)  # loaded before, source file gone now: previous rows kept
    failed: dict[str, str] = field(default_factory=dict)  # table -> error message
    warnings: list[str] = field(default_factory=list)

    @property
    def database(self) -> Path:
        return self.build_dir / self.manifest.database


def database_name(slug: str) -> str:
    """The build's DuckDB file. Its stem is the database's catalog name, which must not be one of its schema
    names: full MIMIC-III's catalog 'mimiciii' beside its schema 'mimiciii' made every `mimiciii.admissions`
    ambiguous, and the build failed at its last step."""
    ds = catalog.get(slug)
    schemas = {m.db_schema for m in catalog.family(ds.family).modules} if ds.family else set()
    return f"{slug}.duckdb" if slug not in schemas else f"{slug}-build.duckdb"


def build(
    slug: str,
    version: str | None = None,
    source: Path | str | None = None,
    modules: list[str] | None = None,
    tables: list[str] | None = None,
    force: bool = False,
    dest: Path | None = None,
    progress: Progress | None = None,
    storage: str = "native",
    drop_missing: bool = False,
) -> BuildResult:
    """Build (or update) one dataset version. Tables outside the selection keep their previous state.

    A table loaded by an earlier build whose source file has gone keeps its rows (flagged `source_missing`,
    listed in `gone`): a moved or half-deleted download must not empty a table silently. `drop_missing`
    empties such tables instead.

    `storage`: "native" (default) also holds the typed tables in DuckDB's own format, for fast lookups;
    "views" keeps only the Parquet files, with views over them (half the disk).
    """
    if storage not in STORAGE:
        raise MimiclabError(f"--storage must be one of {', '.join(STORAGE)}, not {storage!r}")
    ds = catalog.get(slug)
    ver = ds.version(version).version
    if ds.family is None:
        raise MimiclabError(f"{slug} has no tables to build (its files are used as they are).")
    src_dir = Path(source) if source else config.raw_dir(slug, ver)
    if not src_dir.is_dir():
        raise MimiclabError(
            f"source folder {src_dir} does not exist. Download first (mimiclab download {slug} --version {ver}) "
            f"or point --source at a folder in PhysioNet's layout."
        )
    if source is not None:
        _check_holds_files(ds, src_dir)
        # a folder of unknown provenance: its version from evidence, not the catalog's default
        ver = resolve_version(ds, src_dir, version)
    out_dir = Path(dest) if dest else config.build_dir(slug, ver)
    emit = progress or (lambda *a, **k: None)
    # private to the user (0700/0600) whatever the umask: DuckDB and pyarrow create files we do not open
    arrowbuckets.allow_open_files(LOAD_WORKERS * arrowbuckets.MAX_SORT_BUCKETS + 1024)
    with config.private_files(out_dir / "parquet"), _one_build_at_a_time(out_dir, emit):
        _remove_stale_temps(out_dir)
        return _build(ds, slug, ver, src_dir, out_dir, modules, tables, force, emit, storage, drop_missing)


def _check_holds_files(ds: Dataset, src_dir: Path, depth: int = 3) -> None:
    """A --source folder with none of the dataset's files is a mistake (one level too high, another
    dataset), not a build of 31 empty tables: say so, and where below it the files are."""
    fam = ds.schema_family()
    tables = [t for m in fam.modules for t in m.tables] if fam else []
    if not tables or any(locate(src_dir, t) is not None for t in tables):
        return
    found: list[Path] = []
    level = [src_dir]
    for _ in range(depth):
        level = sorted(d for parent in level for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))
        found += [d for d in level if any(locate(d, t) is not None for t in tables)]
        if found or len(level) > 200:
            break
    up = src_dir.resolve().parent  # one level too low (`.../2.2/hosp`): the module folder itself
    if not found and any(locate(up, t) is not None for t in tables):
        found = [up]
    hint = (f" It is in {found[0]}: mimiclab build {ds.slug} --source {found[0]}" if len(found) == 1 else
            f" Folders below it that hold them: {', '.join(map(str, found[:5]))}" if found else "")
    raise MimiclabError(f"{src_dir} holds no file of {ds.slug} (e.g. {tables[0].file}.csv.gz): --source names the "
                        f"folder in PhysioNet's layout, the one with the module folders or files.{hint}")


@contextlib.contextmanager
def _one_build_at_a_time(out_dir: Path, emit: Progress):
    """An exclusive lock on the build folder. A second build of the same version (another notebook opening
    the same folder, a second terminal) waits for the first, then finds its tables current, instead of both
    racing to rename a database and a manifest that then do not match."""
    if fcntl is None:  # pragma: no cover - Windows: no advisory locks here
        yield
        return
    with open(out_dir / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit("waiting", None, lock=str(out_dir / LOCK))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(ds: Dataset, slug: str, ver: str, src_dir: Path, out_dir: Path, modules, tables, force: bool,
           emit: Progress, storage: str, drop_missing: bool = False) -> BuildResult:

    previous = mf.read(out_dir)
    selected = {id(t) for t in ds.tables(ver, modules=modules, names=tables)}
    synthetic_info = _synthetic_info(src_dir)
    result = BuildResult(out_dir)  # manifest set when the build is published or found unchanged
    entries: dict[str, mf.TableEntry] = {}
    t_start = time.perf_counter()
    con = connect(temp_dir=out_dir / "parquet", memory_limit=WRITER_MEMORY)  # empty tables; views builds' key checks
    staging = _Staging(out_dir / database_name(slug), storage, previous, out_dir, force)
    try:
        planned: list[tuple[Table, str, mf.TableEntry | None, _Load | mf.TableEntry | BuildError]] = []
        for table in ds.tables(ver):
            key = f"{ds.db_schema(table.module)}.{table.name}"
            old = previous.tables.get(key) if previous else None
            if id(table) not in selected:
                entries[key] = old if old and (out_dir / old.parquet).exists() else _empty(con, ds, ver, table, out_dir)
                continue
            try:
                step: _Load | mf.TableEntry | BuildError = _plan_table(con, staging, ds, ver, table, src_dir, out_dir,
                                                                       old, force, emit, drop_missing)
            except BuildError as problem:
                step = problem
            planned.append((table, key, old, step))
        loads = [s for *_, s in planned if isinstance(s, _Load)]
        emit("plan", None, tables=len(loads), bytes=sum(ld.src.size for ld in loads))
        done = _run_loads(loads, con, staging, emit)
        for table, key, old, step in planned:
            if isinstance(step, _Load):
                step = done[key]
            if isinstance(step, BuildError):
                error = str(step)
                result.failed[key] = error
                emit("failed", key, error=error)
                keep = old if old and (out_dir / old.parquet).exists() else _empty(con, ds, ver, table, out_dir)
                gone = keep is old and old.status == "loaded" and locate(src_dir, table) is None
                if gone:
                    result.gone.append(key)
                entries[key] = keep.model_copy(update={"error": error, "source_missing": gone}) if keep is old \
                    else keep.model_copy(update={"status": "failed", "error": error})
                continue
            entry = step
            did_load = key in done
            entries[key] = entry
            if entry.source_missing:
                result.gone.append(key)
                result.warnings.append(
                    f"{key}: its source file {entry.source_file} is gone from {src_dir}; the {entry.rows:,} rows "
                    f"loaded before are kept (sha256 {(entry.sha256 or '')[:12]}). Restore the file, or rebuild "
                    f"with --drop-missing to empty the table.")
                continue
            if entry.status != "loaded":
                result.missing.append(key)
            else:
                (result.loaded if did_load else result.skipped).append(key)
            if entry.count_check == "mismatch":
                result.warnings.append(
                    f"{key}: {entry.rows:,} rows, the catalog expects {entry.expected_rows:,} for {slug} {ver}"
                )

        if (previous is not None and previous.tables == entries and previous.storage == storage
                and (out_dir / previous.database).exists() and not staging.loaded):
            # Nothing changed: the database in place is exactly what a publish would write again.
            staging.abort()
            result.manifest = previous
            if _stale_on_disk(out_dir, previous):
                mf.write(out_dir, previous)  # read() repaired it from the database; we hold the lock
            emit("done", None, seconds=round(time.perf_counter() - t_start, 3))
            return result
        emit("publishing", None, storage=storage)
        manifest = mf.Manifest(
            mimiclab_version=__version__, dataset=slug, version=ver, title=ds.title, family=ds.family,
            source=str(src_dir.resolve()), synthetic=synthetic_info is not None, synthetic_info=synthetic_info,
            database=database_name(slug), built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            storage=storage, tables=entries,
        )
        publish(out_dir, ds, manifest, t_start, staging)
    except BaseException:
        staging.abort()
        raise
    finally:
        con.close()
    result.manifest = manifest
    emit("done", None, seconds=manifest.seconds)
    return result


class _Staging:
    """The build's next database, opened on first use: an unchanged rebuild never copies or writes one."""

    def __init__(self, path: Path, storage: str, previous: mf.Manifest | None, out_dir: Path, force: bool):
        self.path, self.storage, self.previous, self.out_dir = path, storage, previous, out_dir
        usable = previous is not None and previous.storage == "native" and storage == "native" and not force
        self.base = out_dir / previous.database if usable and previous is not None else None
        self.writer: DatabaseWriter | None = None
        self.loaded: set[str] = set()  # schema.table loaded into the staging database by this build

    def open(self) -> DatabaseWriter:
        if self.writer is None:
            self.writer = DatabaseWriter(self.path, storage=self.storage, base=self.base,
                                         temp_dir=self.out_dir / "parquet", memory_limit=WRITER_MEMORY)
        return self.writer

    def current(self, entries: dict[str, mf.TableEntry]) -> set[str]:
        """Tables whose data the staging database already holds: loaded now, or unchanged since the base."""
        kept = set()
        if self.writer is not None and self.writer.from_base and self.previous is not None:
            kept = {k for k, e in entries.items()
                    if (old := self.previous.tables.get(k)) is not None and old.parquet == e.parquet}
        return self.loaded | kept

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def publish(out_dir: Path, ds: Dataset, manifest: mf.Manifest, t_start: float | None = None,
            staging: _Staging | None = None) -> None:
    """Write database then manifest (each atomically), then drop Parquet files nothing refers to."""
    fam = ds.schema_family()
    unqualified = {m.db_schema for m in fam.modules if m.unqualified} if fam else set()
    refs = [
        TableRef(e.db_schema, e.table, str((out_dir / e.parquet).resolve()), e.db_schema in unqualified,
                 str((out_dir / e.lines).resolve()) if e.lines else None)
        for e in manifest.tables.values()
    ]
    staging = staging or _Staging(out_dir / manifest.database, manifest.storage, None, out_dir, True)
    writer = staging.open()
    if t_start is not None:
        manifest.seconds = round(time.perf_counter() - t_start, 3)
    manifest.generation = uuid.uuid4().hex
    manifest.database_stat = None
    assert writer.con is not None, "DatabaseWriter.con is None only after abort()"
    writer.con.execute(mf.embed_sql(manifest))  # the database carries its own manifest: see manifest.read
    writer.commit(refs, current=staging.current(manifest.tables), extra_schemas=fam.extra_schemas if fam else ())
    st = (out_dir / manifest.database).stat()
    manifest.database_stat = (st.st_size, st.st_mtime_ns)
    mf.write(out_dir, manifest)
    keep = {(out_dir / e.parquet).resolve() for e in manifest.tables.values()}
    keep |= {(out_dir / e.lines).resolve() for e in manifest.tables.values() if e.lines}
    for p in (out_dir / "parquet").rglob("*.parquet"):
        if p.resolve() not in keep:
            p.unlink(missing_ok=True)


@dataclass
class _Load:
    """A table to (re)load: what `_plan_table` decided, run by `_run_loads`."""

    key: str
    ds: Dataset
    ver: str
    table: Table
    src: SourceFile
    out_dir: Path
    shash: str
    hashing: Future[str] | None  # sha256 of the source, computed while loading (None: `digest` is known)
    digest: str | None
    into: str | None  # native storage: the staging database's table
    reuse: Path | None = None  # the table's finished Parquet file (relative to out_dir): no parse needed


def _plan_table(con, staging: _Staging, ds: Dataset, ver: str, table: Table, src_dir: Path, out_dir: Path,
                old: mf.TableEntry | None, force: bool, emit: Progress,
                drop_missing: bool = False) -> _Load | mf.TableEntry:
    """The table's entry when nothing needs loading (unchanged, missing, gone), else the load to run."""
    key = f"{ds.db_schema(table.module)}.{table.name}"
    cols = [(c.name, c.type) for c in table.columns_for(ver)]
    shash = mf.schema_hash(cols)
    src = locate(src_dir, table)
    if src is None:
        if problem := source_problem(src_dir, table):
            raise BuildError(f"{problem} [table {table.module}/{table.name}]")
        if not drop_missing and old is not None and old.status == "loaded" and (out_dir / old.parquet).exists():
            emit("gone", key, rows=old.rows, file=old.source_file)
            return old.model_copy(update={"source_missing": True, "error": None})
        emit("missing", key)
        return _empty(con, ds, ver, table, out_dir)
    could_skip = not force and old is not None and old.status == "loaded" and old.schema_hash == shash \
        and (out_dir / old.parquet).exists()
    hashing, digest = None, None
    if could_skip and old is not None:
        digest = sha256(src.path)
        if digest == old.sha256:
            emit("skipped", key, rows=old.rows)
            header = old.header if old.header is not None else header_spelling(src)
            return old.model_copy(update={"source_missing": False, "error": None, "header": header})
    elif not force and _finished(out_dir, table, shash):
        digest = sha256(src.path)  # an interrupted build may have finished this table: its file says so
    else:
        # Nothing to compare with: hash on another core while the table loads (hashlib releases the GIL).
        hashing = _HASH_POOL.get().submit(sha256, src.path)
    check_header(src, table, ver)
    reuse = None
    if digest is not None and not force:
        done = _parquet_name(table, digest, shash)
        reuse = done if (out_dir / done).exists() else None
    into = staging.open().table_name(ds.db_schema(table.module), table.name) if staging.storage == "native" else None
    return _Load(key, ds, ver, table, src, out_dir, shash, hashing, digest, into, reuse)


def _parquet_name(table: Table, digest: str, shash: str) -> Path:
    """Where a table's Parquet file lives: named by its source's sha256 and its column schema."""
    return Path("parquet") / table.module / f"{table.name}-{digest[:12]}-{shash}.parquet"


def lines_name(parquet: Path) -> Path:
    """The row map of a Parquet file stored in patient-sorted windows (arrowcsv.ParquetOut), beside it."""
    return parquet.with_name(parquet.name.removesuffix(".parquet") + ".lines.parquet")


def _finished(out_dir: Path, table: Table, shash: str) -> bool:
    """A loaded Parquet file of this table and schema exists (one a killed build finished, say). Such a file
    got its final name only after its rows were parsed, counted and their key checked."""
    folder = out_dir / "parquet" / table.module
    return any("-empty-" not in p.name for p in folder.glob(f"{table.name}-*-{shash}.parquet"))


# DuckDB's buffer pool while building; spilling (the key check's GROUP BY) goes to disk. The full-scale
# build once peaked at 2.4 GB with 1 GB here: Arrow's pool then held 52 MB, but glibc kept what it had freed
# (arrowcsv now parses with mimalloc), and DuckDB ran two inserts at once (now they take turns).
WRITER_MEMORY = "640MB"

# Tables loaded at once. Each load parses on the shared Arrow pool (all cores) and then has DuckDB copy
# its Parquet file into the database; two at a time keep both cores busy while one of them is in a step
# that uses one core (gzip decoding, DuckDB's single-threaded parts), without holding more than two
# tables' buffers in memory.
LOAD_WORKERS = 2


def _run_loads(loads: list[_Load], con, staging: _Staging, emit: Progress) -> dict[str, mf.TableEntry | BuildError]:
    """Run the loads, largest first, LOAD_WORKERS at a time; Ctrl-C or an unexpected error stops them all
    (Arrow between blocks, DuckDB through interrupt()) before it propagates, so nothing writes after."""
    results: dict[str, mf.TableEntry | BuildError] = {}
    if not loads:
        return results
    stop = threading.Event()
    cursors: list = []
    lock = threading.Lock()
    turn = threading.Lock()  # one DuckDB bulk step at a time (loader.duckdb_turn)

    def run(load: _Load) -> mf.TableEntry:
        base = staging.open().con if load.into is not None else con
        assert base is not None, "the staging database is open while loads run"
        with lock:
            if stop.is_set():
                raise KeyboardInterrupt
            cur = base.cursor()
            cursors.append(cur)
        try:
            return _load_table(cur, staging, load, emit, stop, turn)
        finally:
            with lock:
                cursors.remove(cur)
            cur.close()

    order = sorted(loads, key=lambda ld: -ld.src.size)
    with ThreadPoolExecutor(max_workers=LOAD_WORKERS, thread_name_prefix="mimiclab-load") as pool:
        futures = {pool.submit(run, ld): ld for ld in order}
        try:
            for f in as_completed(futures):
                try:
                    results[futures[f].key] = f.result()
                except BuildError as exc:
                    results[futures[f].key] = exc
        except BaseException:
            stop.set()
            with lock:
                for cur in cursors:
                    with contextlib.suppress(Exception):
                        cur.interrupt()
            for f in futures:
                f.cancel()
            wait(futures)
            raise
    return results


def _load_table(cur, staging: _Staging, load: _Load, emit: Progress, stop: threading.Event,
                turn: threading.Lock | None = None) -> mf.TableEntry:
    table, src, out_dir, key = load.table, load.src, load.out_dir, load.key
    emit("loading", key, size=src.size, file=src.rel)
    part = out_dir / "parquet" / table.module / f"{table.name}.staging.tmp-{os.getpid()}"
    part_lines = out_dir / "parquet" / table.module / f"{table.name}.staging-lines.tmp-{os.getpid()}"
    part.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    last = [t0]

    def progress(done_bytes: int, rows: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.5:
            last[0] = now
            emit("progress", key, bytes=done_bytes, size=src.size, rows=rows)

    try:
        rows = None
        if load.reuse is not None:  # finished by an interrupted build: its rows are in the file already
            try:
                reused_lines = out_dir / lines_name(load.reuse)
                rows = reuse_parquet(cur, out_dir / load.reuse, load.into, turn, stop,
                                     lines=reused_lines if reused_lines.exists() else None)
                rel = load.reuse
                emit("resumed", key, file=str(load.reuse))
            except (duckdb.Error, OSError, ValueError):  # unreadable after all: parse the csv again
                (out_dir / load.reuse).unlink(missing_ok=True)
        if rows is None:
            rows = load_csv_to_parquet(cur, src, table, load.ver, part, into=load.into, progress=progress, stop=stop,
                                       turn=turn, lines_out=part_lines)
            digest = load.hashing.result() if load.hashing is not None else load.digest
            assert digest is not None
            rel = _parquet_name(table, digest, load.shash)
            # the row map first: a Parquet file at its final name with no map beside it is in file order. A file
            # already at that name (--force, or a killed build, perhaps of another mimiclab version) goes first,
            # so that a kill between the renames cannot pair it with the wrong map
            (out_dir / rel).unlink(missing_ok=True)
            if part_lines.exists():
                os.replace(part_lines, out_dir / lines_name(rel))
            else:
                (out_dir / lines_name(rel)).unlink(missing_ok=True)
            os.replace(part, out_dir / rel)
        if load.into is not None:
            staging.loaded.add(key)
    finally:
        part.unlink(missing_ok=True)
        part_lines.unlink(missing_ok=True)
    digest = load.digest or (load.hashing.result() if load.hashing is not None else None)
    expected = _expected_rows(load.ds, load.ver, table)
    check: Literal["ok", "mismatch", "unknown"] = "unknown" if expected is None else ("ok" if expected == rows else "mismatch")
    entry = mf.TableEntry(
        module=table.module, table=table.name, db_schema=load.ds.db_schema(table.module), status="loaded",
        parquet=str(rel), rows=rows, source_file=src.rel, header=header_spelling(src), sha256=digest, size=src.size,
        schema_hash=load.shash,
        expected_rows=expected, count_check=check, seconds=round(time.perf_counter() - t0, 3),
        lines=str(lines_name(rel)) if (out_dir / lines_name(rel)).exists() else None,
    )
    emit("loaded", key, rows=rows, seconds=entry.seconds, expected=expected, check=check)
    return entry


def _stale_on_disk(out_dir: Path, manifest: mf.Manifest) -> bool:
    try:
        on_disk = mf.Manifest.model_validate_json((out_dir / mf.MANIFEST).read_text())
    except (OSError, ValueError):
        return True
    return on_disk.generation != manifest.generation or on_disk.database_stat != manifest.database_stat


def _empty(con, ds: Dataset, ver: str, table: Table, out_dir: Path) -> mf.TableEntry:
    cols = [(c.name, c.type) for c in table.columns_for(ver)]
    shash = mf.schema_hash(cols)
    rel = Path("parquet") / table.module / f"{table.name}-empty-{shash}.parquet"
    out = out_dir / rel
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_empty_parquet(con, table, ver, out)
    return mf.TableEntry(
        module=table.module, table=table.name, db_schema=ds.db_schema(table.module), status="not_loaded",
        parquet=str(rel), rows=0, schema_hash=shash, expected_rows=_expected_rows(ds, ver, table),
    )


def _expected_rows(ds: Dataset, ver: str, table: Table) -> int | None:
    """The published row count to check a load against; None for an estimate (the catalog's ~420,000 for a
    file whose count is not published), which `info` had shown, and the build warned about, as exact."""
    files = ds.version(ver).files
    for ext in (".csv.gz", ".csv"):
        info = files.get(table.file + ext)
        if info is not None and info.rows is not None and not info.approx_rows:
            return info.rows
    return None


def _synthetic_info(src_dir: Path) -> dict | None:
    p = src_dir / SYNTHETIC_MARKER
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return {"synthetic": True}


def is_leftover(path: Path) -> bool:
    """A temporary file of a build (ours end in `.tmp-<pid>[.wal]`; DuckDB's spill files in parquet/ are
    `duckdb_temp_<pid>_...`): never part of a finished build, so never counted in its size."""
    return ".tmp-" in path.name or path.name.startswith("duckdb_temp_")


def remove_leftovers(out_dir: Path) -> bool:
    """Delete what killed builds left in `out_dir`, unless a live build holds its lock (then its temporary
    files are in use). True when the folder was checked."""
    if fcntl is None or not (out_dir / LOCK).exists():  # pragma: no cover - Windows
        return False
    try:
        fh = open(out_dir / LOCK, "a+")  # noqa: SIM115 - `with fh` below; this try catches open() alone
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            _remove_stale_temps(out_dir)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return True


def _remove_stale_temps(out_dir: Path) -> None:
    """Temporary files of a build that was killed: never visible under a final name, safe to delete.

    Called with the build lock held, so no other build of this folder is running: every build temporary
    (next database and its WAL, Parquet being written, manifest being written, DuckDB spill files) is
    stale whatever its pid, and a pid since reused by an unrelated process must not keep it forever. Only
    files written outside the lock (the folder stamp of mimiclab.open(folder)) are kept while their
    writer's pid is alive.
    """
    for p in [*out_dir.rglob("*.tmp-*"), *(out_dir / "parquet").glob("duckdb_temp_*")]:
        if p.name.startswith("folder-stamp.json.tmp-"):
            pid = p.name.rsplit(".tmp-", 1)[1].split(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
        with contextlib.suppress(IsADirectoryError, FileNotFoundError, PermissionError):
            p.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
