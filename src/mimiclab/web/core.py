"""What every route shares: the built datasets, one sandboxed store per build, heavy work, and Arrow -> JSON.

The web layer reaches data only through `Workbench.store()` (the build's sandboxed store: read-only, no file
or network access, one reading statement per call, time-limited) and `Workbench.api()` (a Dataset over that
same store). `Workbench.build()` hands routes a read-only description of a build that cannot open a
connection, so no route can obtain an unsandboxed one.

Heavy requests (SQL, exports, cohorts, distributions) run through `Workbench.heavy()`: at most a few at a
time (light requests such as pages and patient lookups never queue behind them), each with one deadline for
all its queries, and stopped when the client goes away or the server stops.

Builds are re-read from $MIMICLAB_HOME when their manifests change, so a dataset built while the
workbench runs shows up on the next page load without a restart. Datasets on a server (PostgreSQL, BigQuery:
`mimiclab serve postgresql://...`) are given at start as sources and listed with the local builds; a server's
copy of a dataset is the one shown when a local build has the same slug.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

import anyio
import pyarrow as pa

from mimiclab import catalog, cells, config
from mimiclab.catalog import CatalogError, Table
from mimiclab.errors import MimiclabError, NotBuiltError, QueryError
from mimiclab.load.manifest import Manifest
from mimiclab.sources import Source, registry
from mimiclab.sqltext import ident, qname
from mimiclab.store import Store
from mimiclab.store.work import Cancelled, Work

T = TypeVar("T")
REMEMBERED = 1024  # entries of Workbench.remembered: a hash and a small value (a count) each
REMEMBER_SECONDS = 600.0  # a server's tables can be republished under a running workbench
REMEMBER_WAIT = 60.0  # how long a second asker waits for the same computation before doing its own


@dataclass
class Limits:
    """Caps on what one request may cost. The SQL page shows them to the user."""

    sql_rows: int = 5_000  # rows returned to the page
    sql_bytes: int = 32 * 2**20  # result size returned to the page (Arrow bytes; a few huge values stop early)
    memory: str = "4GB"  # DuckDB memory of the workbench's stores (queries beyond it fail, the machine lives)
    sql_seconds: float = 10.0  # a request's queries together, then interrupted
    csv_rows: int = 1_000_000  # rows in one CSV export
    csv_bytes: int = 256 * 2**20  # size of one CSV export
    export_seconds: float = 30.0  # one CSV export, cohort report or subset, from first query to last byte
    page_rows: int = 500  # table browser page size cap
    heavy_jobs: int = max(2, os.cpu_count() or 2)  # heavy requests running at once; the rest wait
    heavy_wait: float = 30.0  # how long a heavy request waits for its turn before "busy"


class BusyError(MimiclabError):
    """Too many heavy requests are waiting; the client should try again shortly (HTTP 503)."""


@dataclass(frozen=True)
class BuiltDataset:
    """What routes may know of a dataset (local build or server source): identity, manifest and folder (None on
    a server). It cannot open a connection (routes get data only through the workbench's sandboxed store)."""

    slug: str
    version: str
    manifest: Manifest
    build_dir: Path | None
    backend: str = "duckdb"  # where the data is: duckdb (a local build), postgres, bigquery
    linked: tuple[Manifest, ...] = ()  # the population's other datasets its store attaches (ED beside hosp)

    @classmethod
    def of(cls, b: Source, among: Sequence[Source] | None = None) -> BuiltDataset:
        # a RemoteSource says its backend; the manifest a server holds is often the local build's it was published from
        if isinstance(b, registry.Build):
            linked = b.linked_manifests([x for x in among if isinstance(x, registry.Build)] if among is not None else None)
        else:
            linked = b.linked_manifests()
        return cls(b.slug, b.version, b.manifest, getattr(b, "build_dir", None), getattr(b, "backend", "duckdb"),
                   tuple(linked))

    def linked_manifests(self) -> list[Manifest]:
        return list(self.linked)

    @property
    def key(self) -> tuple:
        """Which store serves it: this build, and the linked builds attached beside it."""
        return (self.slug, self.version, self.manifest.built_at,
                tuple((m.dataset, m.version, m.built_at) for m in self.linked))


class Workbench:
    """State of one running workbench: the default dataset, limits, and cached stores."""

    def __init__(self, dataset: str | None = None, limits: Limits | None = None, sources: list[Source] | tuple = ()):
        self.sources = list(sources)  # datasets on servers, given at start; they shadow local builds of their slug
        self.default_dataset = dataset or (self.sources[0].slug if self.sources else None)
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._stores: dict[tuple, Store] = {}
        self._retired: list[tuple[float, Store]] = []  # replaced by a rebuild, closed after a grace period
        self._apis: dict[tuple, Any] = {}
        self._patients: OrderedDict = OrderedDict()
        self._remembered: OrderedDict = OrderedDict()
        self._computing: dict[tuple, threading.Event] = {}
        self._builds: list[Source] = []
        self._builds_key: tuple | None = None
        self._builds_checked = 0.0
        self._closing = threading.Event()
        self._warming: threading.Thread | None = None
        self._heavy_slots: anyio.Semaphore | None = None
        self._works: set[Work] = set()

    # -- builds ---------------------------------------------------------------------------------------
    def builds(self) -> list[BuiltDataset]:
        """Datasets to show (read-only views): the server sources given at start, then completed local builds."""
        found = self._registry_builds()
        return [BuiltDataset.of(b, found) for b in found]

    def _registry_builds(self) -> list[Source]:
        """Server sources, then completed builds; re-scanned at most once a second, and only re-read when a
        manifest changed."""
        now = time.monotonic()
        if now - self._builds_checked < 1.0 and self._builds_key is not None:
            return self._builds
        root = config.home() / "db"
        key = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in root.glob("*/*/manifest.json"))) \
            if root.is_dir() else ()
        with self._lock:
            if key != self._builds_key:
                served = {s.slug for s in self.sources}
                self._builds = self.sources + [b for b in registry.builds() if b.slug not in served]
                self._builds_key = key
            self._builds_checked = now
        return self._builds

    def _build(self, slug: str) -> Source:
        cands = [b for b in self._registry_builds() if b.slug == slug]
        if cands:
            return sorted(cands, key=lambda b: registry._vkey(b.version))[-1]
        return registry.find(slug)  # raises the helpful error

    def build(self, slug: str) -> BuiltDataset:
        """Newest build of `slug`; NotBuiltError (with the command to build it) or CatalogError otherwise."""
        return BuiltDataset.of(self._build(slug), self._registry_builds())

    def current(self, slug: str | None = None) -> str | None:
        """The dataset a page should show: asked for, else the default, else the first built."""
        if slug:
            return slug
        built = {b.slug for b in self.builds()}
        if self.default_dataset and (self.default_dataset in built or not built):
            return self.default_dataset
        for b in self.builds():
            if b.slug == "mimic-iv-demo":
                return b.slug
        return self.builds()[0].slug if self.builds() else self.default_dataset

    # -- stores ---------------------------------------------------------------------------------------
    def store(self, slug: str) -> Store:
        """The sandboxed, read-only store of a dataset: every workbench query goes through it."""
        b = self._build(slug)
        key = BuiltDataset.of(b, self._registry_builds()).key  # a module built since (ED) opens a new store
        with self._lock:
            st = self._stores.get(key)
            if st is None:
                for old in [k for k in self._stores if k[:2] == key[:2]]:
                    gone = self._stores.pop(old)
                    for k in [k for k in self._remembered if k[0] == id(gone)]:
                        del self._remembered[k]
                    # requests may still be reading it (a table page, an export): closed once they are done
                    self._retired.append((time.monotonic(), gone))
                st = self._stores[key] = b.open(sandbox=True, max_seconds=self.limits.sql_seconds,
                                                memory_limit=self.limits.memory)
            self._close_retired()
        return st

    def _close_retired(self, everything: bool = False) -> None:
        """Close the stores a rebuild replaced, once no request begun on them can still be running: each
        request stops at its time limit (an old store closed at once had failed a running request with
        'Connection already closed')."""
        grace = RETIRE_AFTER + max(self.limits.sql_seconds or 0, self.limits.export_seconds or 0)
        now, keep = time.monotonic(), []
        for t0, st in self._retired:
            if everything or now - t0 > grace:
                st.close()
            else:
                keep.append((t0, st))
        self._retired = keep

    def api(self, slug: str):
        """A mimiclab.api Dataset over the sandboxed store, so the explorer and a notebook agree."""
        from mimiclab.api import Dataset

        b = self.build(slug)  # the read-only view: this Dataset can only use the sandboxed store below
        if not b.manifest.family:
            raise MimiclabError(f"{slug} has no tables, so no patients.")
        key = b.key
        store = self.store(slug)
        with self._lock:
            ds = self._apis.get(key)
            if ds is None or ds.store is not store:
                # given its store, the Dataset never opens one: BuiltDataset has no open() on purpose
                ds = self._apis[key] = Dataset(b, store=store)  # type: ignore[arg-type]
        return ds

    def patient(self, slug: str, subject_id: int):
        """A Patient, kept for the next requests (switching chart items must not re-read the record)."""
        ds = self.api(slug)
        key = (*ds.build.key, int(subject_id))  # a rebuilt linked module (ED) is a new store: new patients
        with self._lock:
            p = self._patients.get(key)
            if p is not None:
                self._patients.move_to_end(key)
                return p
        p = ds.patient(subject_id)
        with self._lock:
            self._patients[key] = p
            while len(self._patients) > 32:
                self._patients.popitem(last=False)
        return p

    def remembered(self, store: Store, key: tuple, compute: Callable[[], T]) -> T:
        """A small result computed on `store` once: e.g. a filtered table's row count, which every page and
        sort of that filter asks for again (at full scale a second scan of labevents, 95 of 320 ms). Kept per
        store, and a local store is one build: when a new build replaces it, its entries go with it
        (`store()`); a server's data can change under the same store, so entries expire after
        REMEMBER_SECONDS. The least recently used of REMEMBERED
        entries is dropped. One computation per key at a time: a second asker waits for the first (the
        table page asks for a count again when paged before it arrived). A failure is not remembered."""
        full = _memo_key(store, key)
        mine: threading.Event | None = None
        while True:
            with self._lock:
                hit = self._remembered.get(full)
                if _fresh(hit):
                    self._remembered.move_to_end(full)
                    return hit[0]
                running = self._computing.get(full)
                if running is None:
                    mine = self._computing[full] = threading.Event()
                    break
            if not running.wait(timeout=REMEMBER_WAIT):
                break  # still running: compute alongside rather than wait past a request's limit
        try:
            value = compute()
        finally:
            if mine is not None:
                with self._lock:
                    if self._computing.get(full) is mine:
                        del self._computing[full]
                mine.set()
        with self._lock:
            if any(st is store for st in self._stores.values()):  # not replaced meanwhile
                self._remembered[full] = (value, time.monotonic())
                while len(self._remembered) > REMEMBERED:
                    self._remembered.popitem(last=False)
        return value

    def recall(self, store: Store, key: tuple) -> Any:
        """What `remembered` holds for (store, key) and has not expired, else None; computes nothing."""
        with self._lock:
            hit = self._remembered.get(_memo_key(store, key))
        return hit[0] if _fresh(hit) else None

    def table(self, slug: str, qualified: str) -> tuple[BuiltDataset, Table]:
        """A built table by `schema.table` (or bare name), with its catalog entry."""
        b = self.build(slug)
        ds = catalog.get(b.slug)
        tables = {f"{ds.db_schema(t.module)}.{t.name}": t for t in ds.tables(b.version)}
        if qualified not in tables:
            bare = {t.name: k for k, t in tables.items()}
            if qualified in bare:
                qualified = bare[qualified]
            else:
                raise CatalogError(f"{b.slug} has no table {qualified!r}.")
        return b, tables[qualified]

    def warm(self) -> None:
        """Load the catalog and open the default dataset before the first request, so it is not slow."""
        try:
            catalog.datasets()
            slug = self.current()
            if slug:
                self.api(slug).concepts  # noqa: B018 - loads the concept map
                b = self.build(slug)
                b.manifest.digest()
                self._warming = threading.Thread(target=self._touch, args=(slug, [t.qualified for t in b.manifest.loaded]),
                                                 daemon=True, name="mimiclab-warm")
                self._warming.start()
        except MimiclabError:
            pass  # not built: the pages explain it

    def _touch(self, slug: str, tables: list[str]) -> None:
        """Read one row of each table once, in the background: the first patient opened is then as fast
        as the next (Parquet footers and DuckDB's caches are warm)."""
        for t in tables:
            if self._closing.is_set():
                return
            try:
                self.store(slug).arrow(f"SELECT * FROM {qualify(t)} LIMIT 1", portable=True)
            except MimiclabError:
                return

    # -- heavy work -----------------------------------------------------------------------------------
    async def heavy(self, request: Any, fn: Callable[[], T], *, what: str, seconds: float | None = None) -> T:
        """Run `fn` in a worker thread as one Work: after waiting for one of `heavy_jobs` slots, within
        `seconds` for all its queries together, stopped if the client disconnects or the server stops."""
        if self._closing.is_set():
            raise Cancelled("the workbench is stopping.")
        if self._heavy_slots is None:
            self._heavy_slots = anyio.Semaphore(self.limits.heavy_jobs)
        slots = self._heavy_slots
        try:
            with anyio.fail_after(self.limits.heavy_wait):
                await slots.acquire()
        except TimeoutError:
            raise BusyError(f"the workbench is busy with {self.limits.heavy_jobs} other heavy requests; "
                            "try again in a moment.") from None
        work = Work(seconds or self.limits.sql_seconds, what)
        self._works.add(work)
        outcome: dict[str, Any] = {}

        def call() -> T:
            with work.running():
                return fn()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, request, work)
                try:
                    outcome["value"] = await anyio.to_thread.run_sync(call)
                except Exception as exc:  # re-raised below, outside the task group (no ExceptionGroup)
                    outcome["error"] = exc
                tg.cancel_scope.cancel()
        finally:
            work.done()
            self._works.discard(work)
            slots.release()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    @staticmethod
    async def _watch(request: Any, work: Work) -> None:
        while work.reason is None:
            if request is not None and await request.is_disconnected():
                work.cancel(f"{work.what} was stopped: the client went away.")
                return
            await anyio.sleep(0.2)

    def cancel_all(self, reason: str = "the workbench is stopping.") -> None:
        """Stop every running heavy request (server shutdown)."""
        self._closing.set()
        for w in list(self._works):
            w.cancel(reason)

    @property
    def running(self) -> int:
        """Heavy requests running now (tests and /api/health use it)."""
        return len(self._works)

    def close(self) -> None:
        # A thread still inside DuckDB when the interpreter exits aborts the process: stop the warm-up first.
        self.cancel_all()
        if self._warming is not None:
            self._warming.join(timeout=30)
        with self._lock:
            for st in self._stores.values():
                st.close()
            self._stores.clear()
            self._close_retired(everything=True)
            self._apis.clear()
            self._patients.clear()
            self._remembered.clear()


RETIRE_AFTER = 30.0  # seconds beyond the longest request time limit before a replaced store is closed


def _memo_key(store: Store, key: tuple) -> tuple[int, str]:
    return id(store), hashlib.sha256(repr(key).encode()).hexdigest()  # hashed: a filter can be long


def _fresh(hit: tuple[Any, float] | None) -> TypeGuard[tuple[Any, float]]:
    return hit is not None and time.monotonic() - hit[1] < REMEMBER_SECONDS


def qualified(ds: catalog.Dataset, t: Table) -> str:
    return f"{ds.db_schema(t.module)}.{t.name}"


quote = ident  # the web layer's names for the one quoting helper (mimiclab.sqltext)
qualify = qname


# -- Arrow -> JSON ------------------------------------------------------------------------------------
def jsonable(v: Any) -> Any:
    """A value as the pages can use it (mimiclab.cells: one conversion for every export)."""
    return cells.jsonable(v)


def arrow_rows(t: pa.Table) -> dict:
    """{columns, types, rows} with rows as lists: compact for grids, no pandas round trip."""
    cols = t.column_names
    data = [t.column(i).to_pylist() for i in range(t.num_columns)]
    rows = [[jsonable(col[r]) for col in data] for r in range(t.num_rows)]
    return {"columns": cols, "types": [str(f.type) for f in t.schema], "rows": rows}


def frame_rows(df) -> dict:
    """The same shape from a pandas DataFrame (API layer results)."""
    if df is None:
        return {"columns": [], "types": [], "rows": []}
    try:
        return arrow_rows(pa.Table.from_pandas(df, preserve_index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        cols = [str(c) for c in df.columns]
        rows = [[jsonable(None if _isna(x) else x) for x in r] for r in df.itertuples(index=False, name=None)]
        return {"columns": cols, "types": [str(df[c].dtype) for c in df.columns], "rows": rows}


def _isna(x) -> bool:
    try:
        import pandas as pd

        r = pd.isna(x)
        return bool(r) if isinstance(r, bool) or getattr(r, "shape", None) == () else False
    except (TypeError, ValueError):
        return False


__all__ = [
    "BuiltDataset",
    "BusyError",
    "CatalogError",
    "Limits",
    "MimiclabError",
    "NotBuiltError",
    "QueryError",
    "Workbench",
    "arrow_rows",
    "frame_rows",
    "jsonable",
    "qualified",
    "qualify",
    "quote",
]
