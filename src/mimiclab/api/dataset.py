"""``mimiclab.open(...)`` -> ``Dataset``: one dataset, from Python, whatever holds it (a local DuckDB build,
PostgreSQL, BigQuery: a Source).

Everything stays in the database until a caller asks for a frame: tables are lazy relations, per-patient
views are point lookups on tables sorted by patient, and results come back as pandas, polars or Arrow. The
queries the API writes are portable (DuckDB spelling, rendered by the store for its dialect); SQL a user
passes to ``sql()`` runs as written. One connection per thread (the store's), so the workbench can share a
Dataset.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
import weakref
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimiclab import catalog, config
from mimiclab.api._common import (
    UnknownNameError,
    as_int,
    frame,
    ident,
    is_select,
    lit,
    mapped_from,
    qname,
    suggest,
    table_sql,
)
from mimiclab.catalog import concepts
from mimiclab.errors import MimiclabError, QueryError
from mimiclab.load import manifest as mf
from mimiclab.sources import Source
from mimiclab.sources.registry import Build, find
from mimiclab.store import Store

# Dataset.fetch uses execute() + Arrow on DuckDB (one bind instead of two: a patient's timeline 13.7 ms against
# 21.3 with sql()); DuckDB 2 warns about the extra copy of the rows, far cheaper for point lookups of a few
# thousand rows than binding twice. Ignored for this module's calls only, not in the user's own code.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning,
                        module=r"mimiclab\.api\.dataset$")


class NotPicklableError(MimiclabError, TypeError):
    """A Dataset that cannot travel to another process (pickle raises TypeError for such objects)."""

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

    from mimiclab.api.patient import Patient


_OVERFLOW = re.compile(r"Overflow in (addition|subtraction|multiplication|negation) of (INT8|INT16|INT32)")


def _with_hint(exc: QueryError) -> QueryError:
    """DuckDB computes in a column's own type, and MIMIC keeps several columns as SMALLINT (as mimic-code
    does): `anchor_year * 365` overflows. Say so, and how to write it."""
    if _OVERFLOW.search(str(exc)):
        return QueryError(f"{exc} DuckDB computes in the column's own type, and some MIMIC columns are small "
                          f"integers (SMALLINT: anchor_age, anchor_year, icd_version, flags): cast first, e.g. "
                          f"CAST(anchor_year AS INTEGER) * 365.")
    return exc


_ABANDONED: list = []  # stores inherited through fork(): kept alive so they are never finalized in the child


def _local(source) -> bool:
    """A source with a local build folder (whose files a rebuild may replace); servers have none."""
    return getattr(source, "build_dir", None) is not None and hasattr(source, "database")


def _stamp(build: Any) -> tuple:
    """Identity of the build's current database and manifest files (inode, mtime, size)."""
    out: list[tuple[int, int, int] | None] = []
    for p in (build.database, build.build_dir / mf.MANIFEST):
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def open(name: str | os.PathLike, version: str | None = None, *, memory_limit: str | None = None,
         **kw: Any) -> Dataset:
    """Open a dataset: a catalog slug that has been built (``"mimic-iv-demo"``), a build folder (with
    manifest.json), a folder in PhysioNet's layout (built on first use under $MIMICLAB_HOME/folders), a
    PostgreSQL database (``"postgresql://user@host/mimic"``, as `mimiclab publish` filled it; ``dataset=``
    names one) or PhysioNet's BigQuery (``"bigquery://<billing-project>/mimiciv-3.1"``).
    A slug that is not built raises NotBuiltError with the command that builds it.

    `memory_limit` (e.g. ``"4GB"``): DuckDB's memory for a local build, default $MIMICLAB_MEMORY_LIMIT or
    512MB (config.memory_limit); a query needing more spills to a private temporary folder."""
    from mimiclab import sources
    from mimiclab.api import folder as fo

    if sources.is_url(name):
        return Dataset(sources.open_source(str(name), version, **kw))

    path = Path(name)
    looks_like_path = isinstance(name, os.PathLike) or os.sep in str(name) or path.is_dir()
    if looks_like_path:
        if not path.is_dir():
            raise MimiclabError(f"{path} is not a folder (nor a dataset name: "
                                f"{suggest(str(name), [d.slug for d in catalog.datasets()]).strip() or 'see mimiclab datasets'})")
        if fo.is_build_dir(path):
            man = mf.read(path)
            if man is None:
                raise MimiclabError(f"{path / mf.MANIFEST} is not a valid build manifest; rebuild the dataset")
            return Dataset(Build(path, man), memory_limit=memory_limit)
        return Dataset(fo.ensure_built(path), memory_limit=memory_limit)
    return Dataset(find(str(name), version), memory_limit=memory_limit)


class Relation:
    """A lazy query over one table: nothing runs until ``df()``, ``pl()``, ``arrow()`` or ``count()``."""

    def __init__(self, ds: Dataset, sql: str, name: str):
        self._ds, self.sql, self.name = ds, sql, name

    def _derive(self, sql: str) -> Relation:
        return Relation(self._ds, sql, self.name)

    @property
    def relation(self):
        """The DuckDB relation (this thread's connection), for the full relational API (DuckDB builds only)."""
        store = self._ds._session()
        if store.backend != "duckdb":
            raise MimiclabError(f"a relation object needs DuckDB; {self._ds.slug} is on {store.backend}: use "
                                ".df(), .arrow() or .pl()")
        return store.connection.sql(self.sql)  # type: ignore[attr-defined]  # DuckDBStore

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.types]

    @property
    def types(self) -> list[tuple[str, str]]:
        """(name, type) of the result's columns: the database's type names."""
        if self._ds.store.backend == "duckdb":
            rel = self.relation
            return [(c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
        schema = self._ds.arrow(f"SELECT * FROM ({self.sql}) AS r LIMIT 0").schema
        return [(f.name, str(f.type)) for f in schema]

    # the conditions and expressions are the user's SQL, in the store's dialect (as Dataset.sql)
    def filter(self, condition: str) -> Relation:
        return self._derive(f"SELECT * FROM ({self.sql}) AS r WHERE {condition}")

    def select(self, *columns: str) -> Relation:
        return self._derive(f"SELECT {', '.join(columns)} FROM ({self.sql}) AS r")

    def order(self, *by: str) -> Relation:
        return self._derive(f"SELECT * FROM ({self.sql}) AS r ORDER BY {', '.join(by)}")

    def limit(self, n: int) -> Relation:
        return self._derive(f"SELECT * FROM ({self.sql}) AS r LIMIT {int(n)}")

    def head(self, n: int = 5) -> pd.DataFrame:
        return self.limit(n).df()

    def count(self) -> int:
        return int(self._ds.arrow(f"SELECT count(*) FROM ({self.sql}) AS r").column(0)[0].as_py())

    def arrow(self) -> pa.Table:
        return self._ds.arrow(self.sql)

    def df(self) -> pd.DataFrame:
        return frame(self.arrow())

    def pl(self):
        """A polars DataFrame (polars is optional: pip install 'mimiclab[polars]')."""
        try:
            import polars as pl
        except ImportError:
            raise MimiclabError(".pl() needs polars, which is optional: pip install 'mimiclab[polars]' "
                                "(or use .df() for pandas, .arrow() for Arrow)") from None
        return pl.from_arrow(self.arrow())

    def __repr__(self) -> str:
        return f"<Relation {self.name}: {self.sql}>"


class Dataset:
    """A dataset: tables, SQL, descriptions, distributions, patients and plots.

    `build` is its Source: a local build (registry.Build) or a server's copy (sources.RemoteSource)."""

    def __init__(self, build: Source, store: Store | None = None, memory_limit: str | None = None):
        self.build: Any = build  # a Build has build_dir/database (files to watch), a RemoteSource neither
        self._own = store is None  # a store we opened is ours to reopen; a given one is its owner's
        self.memory_limit = memory_limit  # None: config.memory_limit() when a store is opened
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._stamp = _stamp(build) if self._own and _local(build) else None
        self._store: Any = store or self._open_store()  # the store caches Parquet footers for point lookups
        self._prepared: weakref.WeakSet = weakref.WeakSet()  # connections whose search_path is set
        self.generation = 0  # +1 each time a newer build (or a new process) made us reopen

    def _open_store(self) -> Store:
        """A store of our own, with DuckDB's memory capped (config.memory_limit; servers ignore it). The
        linked datasets are read just before: those are what the store attaches, so what `tables` lists."""
        self.__dict__["_linked"] = self._linked_tables()
        return self.build.open(memory_limit=self.memory_limit or config.memory_limit())

    def _linked_tables(self) -> dict[str, tuple[mf.Manifest, mf.TableEntry]]:
        get = getattr(self.build, "linked_manifests", None)
        out: dict[str, tuple[mf.Manifest, mf.TableEntry]] = {}
        for m in (get() if get is not None else []):
            for key, e in m.tables.items():
                if key not in self.manifest.tables:
                    out.setdefault(key, (m, e))
        return out

    @cached_property
    def _linked(self) -> dict[str, tuple[mf.Manifest, mf.TableEntry]]:
        """Tables of the other datasets of this population that the store resolves beside this one's
        (`mimiciv_ed.edstays` beside `mimiciv_hosp.admissions`): qualified name -> (their manifest, entry)."""
        return self._linked_tables()

    @property
    def workspace(self) -> dict[str, mf.TableEntry]:
        """Every table a query here can name: this dataset's, then the linked datasets' (ED, notes, ...), as
        of the store's last opening (like `manifest`: listing tables never opens a store, nor reopens a
        closed Dataset)."""
        return dict(self.manifest.tables) | {k: e for k, (_, e) in self._linked.items()}

    @property
    def linked(self) -> list[str]:
        """The linked datasets (slug and version) whose tables this workspace holds beside its own."""
        return sorted({f"{m.dataset} {m.version}" for m, _ in self._linked.values()})

    @property
    def source(self) -> Source:
        """Where the data is: a local build or a server (same object as ``build``)."""
        return self.build

    @property
    def store(self) -> Store:
        """The store, reopened first when the build changed on disk or this is a new (forked) process.

        A rebuild renames a new database and manifest over the old ones; an open DuckDB file keeps reading
        the old one, so every use compares the files' identity (two stat calls) and reopens on a change.
        A forked child must not touch the parent's DuckDB instance (its threads and locks did not survive
        the fork), so it opens its own. A server's dataset has no files to watch: only a fork reopens it.
        """
        if self._own and (self._pid != os.getpid() or (_local(self.build) and self._stamp != _stamp(self.build))):
            self._reopen()
        return self._store

    def _reopen(self) -> None:
        if self._pid != os.getpid():
            self._lock = threading.Lock()  # the parent's may have been held by one of its threads at fork()
        with self._lock:
            pid, forked = os.getpid(), self._pid != os.getpid()
            if forked:
                _ABANDONED.append(self._store)  # never closed nor freed here: that would touch the parent's instance
                self._store, self._pid = None, pid
            if not _local(self.build):  # a server: a fresh connection of this process's own
                self._store = self._open_store()
                self.generation += 1
                return
            stamp = _stamp(self.build)
            if self._store is not None and stamp == self._stamp:
                return
            build_dir = self.build.build_dir
            man = mf.read(build_dir)
            if man is not None and (build_dir / man.database).exists():
                self.build = Build(build_dir, man)
                for cached in ("concepts", "search_path", "_ambiguous", "_linked"):
                    self.__dict__.pop(cached, None)
            elif self._store is not None:  # mid-rename or removed: keep reading what we have
                self._stamp = stamp
                return
            # the old store is dropped, not closed: another thread may be reading from it right now
            self._store, self._stamp = self._open_store(), stamp
            self.generation += 1

    def __getstate__(self) -> dict:
        """Pickled by build folder: the receiving process opens its own connection on first use. A server's
        dataset is not pickled: its address may hold a password, which must not travel in a pickle."""
        if not self._own:
            raise NotPicklableError("a Dataset over a store it was given cannot be pickled; pickle one from "
                                    "mimiclab.open")
        if not _local(self.build):
            raise NotPicklableError(f"a Dataset on {getattr(self.build, 'where', 'a server')} cannot be pickled "
                                    "(its connection URL may hold a password): call mimiclab.open(url) in the "
                                    "other process instead")
        return {"build": self.build, "memory_limit": self.memory_limit}

    def __setstate__(self, state: dict) -> None:
        self.build = state["build"]
        self.memory_limit = state.get("memory_limit")
        self._own, self._lock, self._pid = True, threading.Lock(), os.getpid()
        self._stamp, self._store, self.generation = None, None, 0  # opened on first use
        self._prepared = weakref.WeakSet()

    # ------------------------------------------------------------------ identity
    @property
    def manifest(self) -> mf.Manifest:
        return self.build.manifest

    @property
    def slug(self) -> str:
        return self.build.slug

    @property
    def version(self) -> str:
        return self.build.version

    @property
    def family(self) -> str | None:
        return self.manifest.family

    @property
    def synthetic(self) -> bool:
        return self.manifest.synthetic

    @cached_property
    def concepts(self) -> concepts.ConceptMap:
        """The family's concept mapping (patients, stays, timeline sources)."""
        if not self.family:
            raise MimiclabError(f"{self.slug} has no tables, so no patients")
        if self.family not in concepts.families():
            # a module (ED, notes, ECG) describes patients of a core dataset, whose patient view shows them
            from mimiclab.catalog.links import population

            cores = [s for s in population(self.slug) if s != self.slug and catalog.get(s).family in concepts.families()]
            where = (f"; open its core dataset instead: mimiclab.open({cores[0]!r}) "
                     f"(`mimiclab patient {cores[0]} <id>`)") if cores else ""
            raise MimiclabError(f"{self.slug} has no patient view (its tables have no patient mapping){where}")
        return concepts.load(self.family)

    def __repr__(self) -> str:
        loaded = sum(e.status == "loaded" for e in self.manifest.tables.values())
        flag = ", synthetic" if self.synthetic else ""
        where = self.build.build_dir if _local(self.build) else getattr(self.build, "where", self.store.backend)
        linked = f", linked: {', '.join(self.linked)}" if self.linked else ""
        return (f"<Dataset {self.slug} {self.version}{flag}: {loaded}/{len(self.manifest.tables)} tables loaded"
                f"{linked}, {where}>")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ tables
    @property
    def tables(self) -> dict[str, int]:
        """schema.table -> row count (0 for a table whose file was not there; see table_info()), the linked
        datasets' tables included (`linked`)."""
        return {k: e.rows for k, e in sorted(self.workspace.items())}

    def table_info(self) -> pd.DataFrame:
        """One row per table: name, module, rows, status (loaded / not_loaded), the dataset holding it (this
        one or a linked one), description."""
        import pandas as pd

        rows = []
        for key, e in sorted(self.workspace.items()):
            t = self._catalog_table(key)
            owner = self._linked[key][0].dataset if key in self._linked else self.slug
            rows.append({"table": key, "module": e.module, "name": e.table, "rows": e.rows, "status": e.status,
                         "dataset": owner, "description": t.description if t else ""})
        return pd.DataFrame(rows, columns=["table", "module", "name", "rows", "status", "dataset", "description"])

    def _catalog_table(self, qualified: str) -> catalog.Table | None:
        family = self._linked[qualified][0].family if qualified in self._linked else self.family
        if not family:
            return None
        schema, _, name = qualified.partition(".")
        for m in catalog.family(family).modules:
            if m.db_schema == schema:
                for t in m.tables:
                    if t.name == name:
                        return t
        return None

    def resolve(self, name: str) -> str:
        """Qualified name of a table given as ``mimiciv_hosp.admissions``, ``hosp/admissions`` or
        ``admissions``; UnknownNameError with close matches otherwise."""
        self.store  # noqa: B018  # about to be queried: reopened first after a rebuild, so the names are current
        keys = self.workspace
        n = str(name).strip().lower()
        if n in keys:
            return n
        by_alias: dict[str, list[str]] = {}
        for k, e in keys.items():
            for alias in (e.table, f"{e.module}/{e.table}", f"{e.module}.{e.table}", f"main.{e.table}"):
                by_alias.setdefault(alias, []).append(k)
        hits = by_alias.get(n, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnknownNameError(f"table {name!r} is ambiguous in {self.slug}: {', '.join(sorted(hits))}")
        raise UnknownNameError(f"{self.slug} has no table {name!r}." + suggest(n, list(keys) + list(by_alias)))

    def column(self, table: str, column: str) -> tuple[str, str]:
        """(column, type) of a column of a table; UnknownNameError with close matches."""
        q = self.resolve(table)
        cols = self.store.columns(q)
        for c, t in cols:
            if c == column:
                return c, t
        for c, t in cols:
            if c.lower() == str(column).lower():
                return c, t
        raise UnknownNameError(f"{q} has no column {column!r}." + suggest(column, [c for c, _ in cols]))

    def columns(self, table: str) -> list[tuple[str, str]]:
        return self.store.columns(self.resolve(table))

    def table(self, name: str) -> Relation:
        """A lazy relation over a table: ``.df()``, ``.pl()``, ``.arrow()``, ``.filter()``, ``.count()``."""
        q = self.resolve(name)
        return Relation(self, self.store.render(f"SELECT * FROM {qname(q)}"), q)

    def sql(self, query: str, params: Sequence[Any] | dict | None = None, *,
            frames: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run your SQL as written, in the store's dialect (DuckDB for a local build; PostgreSQL's or
        BigQuery's on a server; mimic-code table names, or on DuckDB unqualified ones such as ``admissions``)
        and return a pandas DataFrame (dtypes: docs/api.md).

        ``frames`` maps names to pandas/polars DataFrames or Arrow tables that the query can read like
        tables (``frames={"ids": df}`` then ``... FROM ids JOIN admissions ...``), for this query only, on
        stores that can register them (DuckDB); elsewhere a QueryError says so.
        """
        return frame(self.arrow(query, params, frames=frames))

    def arrow(self, query: str, params: Sequence[Any] | dict | None = None, *,
              frames: dict[str, Any] | None = None) -> pa.Table:
        """Like ``sql``, as Arrow with the database's own types."""
        store = self._session()
        if self._ambiguous:
            self._check_ambiguous(query, frames or {})
        if frames and not store.capabilities.register_frames:
            raise QueryError(f"frames= needs a store that can query DataFrames; {self.slug} is on {store.backend}, "
                             "which cannot: load the frame into a table there, or use a local build")
        registered = []  # on this thread's connection: the frames are seen by this query only
        try:
            for name, df in (frames or {}).items():
                try:
                    store.register(name, _as_arrow(df))
                except Exception as exc:
                    raise QueryError(f"frames[{name!r}] must be a pandas or polars DataFrame or an Arrow table, "
                                     f"not {type(df).__name__} ({str(exc).splitlines()[0]})") from None
                registered.append(name)
            return store.arrow(query, params)
        except QueryError as exc:
            raise _with_hint(exc) from None
        finally:
            for name in registered:
                with contextlib.suppress(Exception):
                    store.unregister(name)

    # ------------------------------------------------------------------ names as users write them
    @cached_property
    def search_path(self) -> list[str]:
        """The schemas an unqualified table name is looked up in, in the catalog's module order
        (mimiciv_hosp before mimiciv_icu, ...); ``main`` (OMOP's unqualified views) is searched too."""
        schemas = list(dict.fromkeys(e.db_schema for e in self.manifest.tables.values()))
        if self.family:
            order = {m.db_schema: i for i, m in enumerate(catalog.family(self.family).modules)}
            schemas.sort(key=lambda s: order.get(s, len(order)))
        return schemas

    @cached_property
    def _ambiguous(self) -> dict[str, list[str]]:
        """Table names found in more than one schema: unqualified, they would silently mean the first."""
        by_name: dict[str, list[str]] = {}
        for key, e in sorted(self.workspace.items()):
            by_name.setdefault(e.table.lower(), []).append(key)
        return {n: keys for n, keys in by_name.items() if len(keys) > 1}

    def _check_ambiguous(self, query: str, frames: dict) -> None:
        low = query.lower()
        if not any(n in low for n in self._ambiguous):
            return
        import sqlglot
        from sqlglot import exp

        try:
            trees = [t for t in sqlglot.parse(query, read=self.store.dialect) if t is not None]
        except sqlglot.errors.SqlglotError:
            return  # let the query itself report the syntax error
        shadowed = {n.lower() for n in frames}
        for tree in trees:
            shadowed |= {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}  # CTE names are not tables
        refs = [t.name for tree in trees for t in tree.find_all(exp.Table) if not t.db]
        for ref in refs:
            name = ref.lower()
            if name in self._ambiguous and name not in shadowed:
                keys = self._ambiguous[name]
                raise QueryError(f"table {name!r} is in {len(keys)} schemas of {self.slug}: write "
                                 f"{' or '.join(keys)}.")

    def _session(self) -> Store:
        """The store, with this thread's connection looking up unqualified names in the search path."""
        store = self.store
        # DuckDB: set here; a linked workspace sets its own (catalog-qualified); PostgreSQL's store sets its own
        if self._own and store.backend == "duckdb" and not getattr(store, "search_path", None):
            con = store.connection  # type: ignore[attr-defined]  # DuckDBStore
            if con not in self._prepared:
                with contextlib.suppress(Exception):
                    con.execute("SET search_path=" + lit(",".join(self.search_path)))
                self._prepared.add(con)
        return store

    def fetch(self, query: str, params: Sequence[Any] | dict | None = None) -> pa.Table:
        """The API's own queries (portable: DuckDB spelling, rendered by the store for its dialect). On an
        untimed DuckDB store, point lookups go through execute(): planned once, not twice."""
        store = self.store
        if store.backend != "duckdb" or store.max_seconds:  # a time-limited store: keep its cancellation
            return store.arrow(query, params, portable=True)
        try:
            con = store.connection  # type: ignore[attr-defined]  # DuckDBStore
            return con.execute(query, params if params is not None else []).to_arrow_table()
        except Exception as exc:
            if type(exc).__module__.partition(".")[0] != "duckdb":  # duckdb.Error, without importing duckdb here
                raise
            raise QueryError(str(exc).split("\n\n")[0]) from None

    # ------------------------------------------------------------------ summaries
    def describe(self, table: str) -> pd.DataFrame:
        """Per column: type, null %, distinct count, min/max (numbers, times) or top values (text)."""
        from mimiclab.api.describe import describe

        return describe(self, self.resolve(table))

    def distribution(self, table: str, column: str, by: str | None = None, bins: int = 50,
                     kind: str = "auto", top: int = 30) -> pd.DataFrame:
        """Counts behind a distribution plot (see api/describe.py for the columns and the `kind` rule)."""
        from mimiclab.api.describe import distribution

        return distribution(self, table, column, by=by, bins=bins, kind=kind, top=top)

    def plot_distribution(self, table: str, column: str, by: str | None = None, bins: int = 50,
                          kind: str = "auto", top: int = 30, path: str | os.PathLike | None = None):
        """Histogram (numbers, times) or bar chart (categories) as a plotly Figure; saved when `path` is
        given (.html fully offline, .png/.svg/.pdf drawn with matplotlib)."""
        from mimiclab.api import plots

        dist = self.distribution(table, column, by=by, bins=bins, kind=kind, top=top)
        fig = plots.distribution_figure(dist, title=f"{self.resolve(table)}.{column}")
        if path is not None:
            plots.save(fig, path)
        return fig

    # ------------------------------------------------------------------ patients
    def patient(self, subject_id: int) -> Patient:
        """One patient's demographics, stays, diagnoses, timeline. Unknown ids list the nearest ones."""
        from mimiclab.api.patient import Patient

        return Patient(self, subject_id)

    def patient_list(self, limit: int = 50) -> pd.DataFrame:
        """Patients to start exploring from: subject_id, admissions, icu_stays, most admissions then most ICU
        stays first. Counted with the spans' own filters (OMOP: hospital admissions, not lab-only visits; ICU
        wards, not every visit_detail row), as the patient view counts them."""
        m = self.concepts
        pid = ident(m.patient_id)

        def counted(kind: str) -> str | None:
            sp = m.spans.get(kind)
            if sp is None or any(getattr(self.workspace.get(t), "status", None) != "loaded"
                                 for t in (sp.requires or (sp.table,))) or (
                    sp.join is not None and sp.join.table not in self.workspace):
                return None
            where = f" WHERE {sp.where}" if sp.where else ""
            return f"SELECT t.{pid} AS pid, count(*) AS n FROM {mapped_from(sp)}{where} GROUP BY t.{pid}"

        adm, icu = counted("admission"), counted("icustay")
        if adm is None:
            raise MimiclabError(f"{self.slug}: {m.spans['admission'].table} is not loaded, so there are no admissions "
                                "to list patients by")
        icu_join = f" LEFT JOIN ({icu}) AS i ON i.pid = a.pid" if icu else ""
        icu_n = "CAST(coalesce(i.n, 0) AS BIGINT)" if icu else "CAST(0 AS BIGINT)"
        return frame(self.fetch(
            f"SELECT a.pid AS subject_id, CAST(a.n AS BIGINT) AS admissions, {icu_n} AS icu_stays FROM ({adm}) AS a"
            f"{icu_join} ORDER BY admissions DESC, icu_stays DESC, subject_id LIMIT {int(limit)}"))

    def _patients_table(self) -> str:
        """The table whose ids define "a patient exists": patients, or admissions when it is not loaded."""
        m = self.concepts
        for q in (m.demographics.table, m.spans["admission"].table):
            e = self.manifest.tables.get(q)
            if e is not None and e.status == "loaded":
                return q
        return m.demographics.table

    def _check_id(self, table: str, column: str, value: int, what: str) -> None:
        col = ident(column)
        if self.fetch(f"SELECT 1 FROM {table_sql(table)} AS t WHERE {col} = $v LIMIT 1", {"v": value}).num_rows:
            return
        # distance in DOUBLE (every backend has it; OMOP's 64-bit ids overflow no integer type this way)
        near = self.store.arrow(
            f"SELECT id, dist FROM (SELECT DISTINCT {col} AS id, abs(CAST({col} AS DOUBLE) - CAST($v AS DOUBLE)) "
            f"AS dist FROM {table_sql(table)} AS t WHERE {col} IS NOT NULL) AS s ORDER BY dist, id LIMIT 3", {"v": value},
            portable=True).column("id").to_pylist()
        hint = f" Nearest existing: {', '.join(map(str, near))}." if near else (
            f" ({table} is empty.)" if not is_select(table) else " (there are none.)")
        raise UnknownNameError(f"no {what} {value} in {self.slug} {self.version}.{hint}")

    def find_patient(self, subject_id: int | None = None, hadm_id: int | None = None,
                     stay_id: int | None = None) -> int:
        """The subject_id of a patient given one of: subject_id, hadm_id (hospitalization), stay_id (ICU
        stay). For OMOP these are person_id, visit_occurrence_id and visit_detail_id."""
        given = {k: v for k, v in {"subject_id": subject_id, "hadm_id": hadm_id, "stay_id": stay_id}.items()
                 if v is not None}
        if len(given) != 1:
            raise MimiclabError("give exactly one of subject_id, hadm_id, stay_id")
        (kind, value), = given.items()
        value = as_int(value, kind)
        m = self.concepts
        pid = ident(m.patient_id)
        if kind == "subject_id":
            self._check_id(self._patients_table(), m.patient_id, value, "subject_id")
            return value
        span = m.spans["admission" if kind == "hadm_id" else "icustay"]
        id_col = m.hadm_id if kind == "hadm_id" else m.stay_id
        rows = self.fetch(f"SELECT {pid} FROM {table_sql(span.table)} AS t WHERE {ident(id_col)} = $v LIMIT 1",
                          {"v": value}).column(0).to_pylist()
        got = rows[0] if rows else None
        if got is None:
            self._check_id(span.table, id_col, value, kind)  # raises, naming the nearest ids
        return int(got)  # type: ignore[arg-type]

    def plot_item(self, subject_id: int, item: int | str, path: str | os.PathLike | None = None):
        return self.patient(subject_id).plot_item(item, path=path)

    def plot_stays(self, subject_id: int, path: str | os.PathLike | None = None):
        return self.patient(subject_id).plot_stays(path=path)

    # ------------------------------------------------------------------ the one upward hook
    def cohort(self, spec):
        """Run a cohort spec (YAML path, dict or Cohort spec) on this dataset.

        The one deliberate upward import of the API layer: cohorts are built on Dataset, and this
        convenience lets notebooks write ``ds.cohort("spec.yaml")``. Imported lazily so the API never
        needs the cohort package to load.
        """
        from mimiclab.cohort import Cohort

        return Cohort.run(self, spec)


def _as_arrow(df):
    """A pandas/polars DataFrame or Arrow table as Arrow (what Store.register takes)."""
    import pyarrow as pa

    if isinstance(df, (pa.Table, pa.RecordBatchReader)):
        return df
    if type(df).__module__.startswith("polars"):
        return df.to_arrow()
    if type(df).__module__.startswith("pandas"):
        return pa.Table.from_pandas(df, preserve_index=False)
    raise TypeError("not a DataFrame")
