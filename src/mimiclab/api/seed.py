"""``MIMICDataset``: the datathon's example class, same interface and results, without loading tables.

The example (pandas.read_csv of each ``<datapath>/<file>.csv.gz`` into memory, ``np.where`` per patient)
runs out of memory on full MIMIC-IV. This class keeps its behaviour — keys, ``len``, ``ds[i]`` ->
``PatientSample(subject_id, data)``, ``repr``, ``plot_distribution`` — over a DuckDB/Parquet build:
subject ids and counts come from SQL, each ``ds[i]`` is one point query per file.

Differences, on purpose:

* values are typed by the catalog instead of guessed: times and dates are ``datetime64`` (read_csv gives
  strings), codes stay text. Integer columns are ``int64``, or ``float64`` when the file has an empty cell
  in that column — as read_csv does; text read_csv reads as missing ("", "N/A", "NA", "None", "null", ...:
  pandas' own list) is NaN whether quoted or not (the database keeps the text, and PostgreSQL's
  distinction between "" and NULL); column names are spelled as the file's header spells them;
* each patient frame keeps read_csv's index (the row's position in the file) and the file's row order;
* ``datapath`` may also be a built dataset's name (``"mimic-iv-demo"``) or a build folder; a raw folder is
  built on first use under $MIMICLAB_HOME/folders and reused while its files are unchanged;
* ``.data[key]`` still gives the whole table as a DataFrame, but loads it only when asked.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mimiclab import catalog
from mimiclab.api._common import MissingFileError, UnknownNameError, frame, ident, lit, read_csv_na, suggest
from mimiclab.api.dataset import Dataset
from mimiclab.errors import MimiclabError
from mimiclab.load import manifest as mf
from mimiclab.load.source import EXTENSIONS, SourceFile, header_spelling, locate
from mimiclab.sources.registry import Build, find
from mimiclab.sqltext import exact_path

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

SUFFIXES = EXTENSIONS  # ".csv.gz", ".csv"
_INTS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")


class PatientSample(NamedTuple):
    subject_id: int
    data: dict[str, pd.DataFrame]


def _key(name: str) -> str:
    for ext in SUFFIXES:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


class _LazyTables(Mapping):
    """``ds.data``: key -> whole table as a DataFrame, read only when a key is accessed."""

    def __init__(self, owner: MIMICDataset):
        self._owner = owner
        self._cache: dict[str, pd.DataFrame] = {}

    def __getitem__(self, key: str) -> pd.DataFrame:
        self._owner._live()
        if key not in self._owner._sql:
            raise UnknownNameError(f"no file {key!r} in this dataset." + suggest(key, self._owner.keys))
        if key not in self._cache:
            self._cache[key] = self._owner._fetch(key, None)
        return self._cache[key]

    def __iter__(self):
        return iter(self._owner.keys)

    def __len__(self) -> int:
        return len(self._owner.keys)


def _runs_to_rows(m):
    """Map entries (subject_id, line, run) -> one (subject_id, line) per row: a run of k from line L is
    lines L .. L+k-1, in that order."""
    import numpy as np
    import pyarrow as pa

    from mimiclab.load.arrowcsv import LINE, RUN  # the writer's names for the map's columns

    run = m.column(RUN).to_numpy().astype(np.int64)
    if len(run) == 0 or bool((run == 1).all()):
        return m.select(["subject_id", LINE])
    # row j of entry e is line first[e] + (j - start[e]), start[e] being e's first row: one repeat, one add
    line = np.repeat(m.column(LINE).to_numpy() - (np.cumsum(run) - run), run)
    line += np.arange(len(line))
    subject = m.column("subject_id").take(pa.array(np.repeat(np.arange(len(run)), run)))
    return pa.table([subject, pa.array(line, pa.int64())], names=["subject_id", LINE])


_NA = read_csv_na()


def _header_spelling(build: Build, entry: mf.TableEntry) -> dict[str, str]:
    """Column names as the source file's header spells them, where that differs from the stored (catalog)
    name: read_csv keeps the header (the demo's icu/procedureevents ends in ORIGINALAMOUNT, ORIGINALRATE;
    full MIMIC-III is upper case). From the manifest (kept at build time, so the same once the raw files
    are gone); a build from before reads the source file's header, if it is still there."""
    if entry.header is not None:
        return dict(entry.header)
    if not entry.source_file:
        return {}
    path = Path(build.manifest.source) / entry.source_file
    try:
        st = path.stat()
        return header_spelling(SourceFile(path, entry.source_file, st.st_size, st.st_mtime_ns))
    except (OSError, MimiclabError):
        return {}


class MIMICDataset:
    """Patients present in every selected file, each with their rows of each file."""

    def __init__(self, datapath: str | os.PathLike, files: str | list[str], *, version: str | None = None,
                 memory_limit: str | None = None):
        """`memory_limit`: DuckDB's memory per process (each DataLoader worker opens its own), as in
        mimiclab.open."""
        from mimiclab.api import folder as fo

        self.datapath = datapath
        self.files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        if not self.files:
            raise MimiclabError("files must name at least one file, e.g. ['hosp/admissions']")
        self.keys = [_key(str(f)) for f in self.files]
        path = Path(datapath)
        if path.is_dir() and not fo.is_build_dir(path):
            ds_cat, ver = fo.detect(path)
            tables = []
            for f in self.files:
                try:
                    t = fo.match_file(ds_cat, ver, str(f))
                except catalog.CatalogError as exc:  # a misspelled file: read_csv raised FileNotFoundError
                    raise MissingFileError(str(exc)) from None
                if locate(path, t) is None:
                    raise MissingFileError(f"{path / (_key(str(f)) + '.csv.gz')} does not exist "
                                           f"(nor {t.file}.csv): check the folder and the file name")
                tables.append(t)
            build = fo.ensure_built(path, tables)
        elif path.is_dir():
            man = mf.read(path)
            if man is None:
                raise MimiclabError(f"{path / mf.MANIFEST} is not a valid build manifest; rebuild the dataset")
            build = Build(path, man)
        elif os.sep in str(datapath):
            raise MissingFileError(f"{datapath} does not exist")
        else:
            build = find(str(datapath), version)
        self._ds = Dataset(build, memory_limit=memory_limit)
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.data = _LazyTables(self)
        self._setup(build)

    # ------------------------------------------------------------------ setup
    def _setup(self, build: Build) -> None:
        """Tables, lookup SQL, dtypes and patient ids of one build (again after a rebuild)."""
        ds_cat = catalog.get(build.slug) if build.slug in {d.slug for d in catalog.datasets()} else None
        self._sql: dict[str, str] = {}
        self._parquet: dict[str, str] = {}
        self._lines: dict[str, tuple[str, str, str]] = {}  # row maps of tables stored in patient order
        self._tables: dict[str, str] = {}
        self._conv: dict[str, dict[str, str]] = {}
        self._names: dict[str, dict[str, str]] = {}  # stored name -> the file header's spelling, where they differ
        self._manifest, self._gen = build.manifest, self._ds.generation
        for f, key in zip(self.files, self.keys, strict=True):
            qualified = self._qualified(build, ds_cat, str(f))
            entry = build.manifest.tables[qualified]
            if entry.status != "loaded":
                raise MissingFileError(
                    f"{key}: the table {qualified} is not loaded in {build.slug} {build.version} "
                    f"(its file was not there at build time); add the file and rebuild")
            self._tables[key] = qualified
            self._parquet[key] = str((build.build_dir / entry.parquet).resolve())
            if entry.lines:
                self._lines[key] = self._row_map(str((build.build_dir / entry.lines).resolve()))
            self._sql[key], self._conv[key] = self._select(key)
            self._names[key] = _header_spelling(build, entry)
        self._subject_ids: list[int] = self._ids()
        self.data._cache.clear()

    def _live(self) -> None:
        """Before each use: a forked child gets its own threads (the parent's pool did not survive the
        fork; the Dataset opens its own connection), and a newer build of the data is picked up."""
        if self._pid != os.getpid():
            self._pool, self._pid, self._lock = None, os.getpid(), threading.Lock()
        ds = self._ds
        ds.store  # noqa: B018 - reopens the store when the build changed or the process is new
        if ds.generation != self._gen:
            with self._lock:
                if ds.generation != self._gen:
                    if ds.manifest != self._manifest:
                        self._setup(ds.build)
                    self._gen = ds.generation

    def __getstate__(self) -> dict:
        """Pickled by build and file names (for DataLoader workers, joblib): no connection, no threads."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_lock", "data")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool, self._pid, self._lock = None, os.getpid(), threading.Lock()
        self.data = _LazyTables(self)

    def _qualified(self, build: Build, ds_cat, name: str) -> str:
        from mimiclab.api import folder as fo

        if ds_cat is not None:
            t = fo.match_file(ds_cat, build.version, name)
            return f"{ds_cat.db_schema(t.module)}.{t.name}"
        return self._ds.resolve(_key(name))  # a dataset the catalog does not list: match table names

    def _select(self, key: str) -> tuple[str, dict[str, str]]:
        """The lookup SQL (plain, so DuckDB only prunes and decodes) and per-column conversions that give
        read_csv's dtypes where the data defines them: int64, or float64 when the file has empty cells
        (every other type follows the API's policy, see _convert)."""
        src = lit(exact_path(self._parquet[key]))
        cols = self._ds.store.arrow(f"DESCRIBE SELECT * FROM read_parquet({src})").to_pylist()
        nulls = {r["path_in_schema"]: r["n"] for r in self._ds.store.arrow(
            f"SELECT path_in_schema, sum(stats_null_count) AS n, count(*) - count(stats_null_count) AS unknown "
            f"FROM parquet_metadata({src}) GROUP BY 1").to_pylist() if not r["unknown"]}
        conv: dict[str, str] = {}
        for c in cols:
            name, typ = c["column_name"], c["column_type"].upper()
            if typ in _INTS:
                n = nulls.get(name)
                if n is None:
                    n = self._ds.store.scalar(f"SELECT count(*) - count({ident(name)}) FROM read_parquet({src})")
                conv[name] = "float64" if n else "int64"
        if self._ds.manifest.storage == "native":
            # DuckDB's own table: far faster point lookups; rowid is the row's position: its line in the file,
            # or, in a table with a row map (stored by patient), its order among the patient's rows (_file_lines)
            sql = f"SELECT rowid AS __row__, * FROM {self._tables[key]}"
        else:
            sql = (f"SELECT file_row_number AS __row__, * EXCLUDE (file_row_number) "
                   f"FROM read_parquet({src}, file_row_number=true)")
        return sql, conv

    def _convert(self, key: str, t) -> pd.DataFrame:
        """Arrow -> pandas by the API's one dtype policy (api/_common.frame), with read_csv's integers
        (int64, or float64 for a file with empty cells) and "" as NaN; rows in file order, indexed by
        their row in the file."""
        df = frame(t.sort_by("__row__"), int_dtypes={**self._conv[key], "__row__": "int64"}, text_as_null=_NA)
        df.index = df.pop("__row__").to_numpy(dtype="int64")
        return df.rename(columns=self._names[key]) if self._names[key] else df

    def _ids(self) -> list[int]:
        parts = [f"SELECT DISTINCT subject_id FROM read_parquet({lit(exact_path(p))})" for p in self._parquet.values()]
        for key, p in self._parquet.items():
            cols = self._ds.store.arrow(f"DESCRIBE SELECT * FROM read_parquet({lit(exact_path(p))})").column("column_name")
            if "subject_id" not in cols.to_pylist():
                raise MimiclabError(f"{key} has no subject_id column, so it cannot be split by patient "
                                    f"(dictionary tables such as d_labitems are joined, not sampled)")
        sql = " INTERSECT ".join(parts) + " ORDER BY 1"
        return [int(x) for x in self._ds.store.arrow(sql).column(0).to_pylist() if x is not None]

    def _fetch(self, key: str, subject_id: int | None) -> pd.DataFrame:
        if subject_id is None:
            t = self._ds.store.arrow(self._sql[key])
        else:
            t = self._ds.fetch(f"{self._sql[key]} WHERE subject_id = $sid", {"sid": subject_id})
        if key in self._lines:
            t = self._file_lines(key, t, subject_id)
        return self._convert(key, t)

    def _row_map(self, path: str) -> tuple[str, str, str]:
        """(relation, its order column, its run column or "1") of a row map: the native database's copy
        (store.row_map_table; several times faster), else the Parquet file (views storage, or a database from
        before the copy). A map written before runs (no `run` column, load.arrowcsv.RUN) has an entry per row:
        a run of 1."""
        from mimiclab.load.arrowcsv import RUN
        from mimiclab.store import ROW_MAP_SCHEMA, row_map_table

        rel, order = f"read_parquet({lit(exact_path(path))}, file_row_number=true)", "file_row_number"
        if self._ds.manifest.storage == "native":
            name = row_map_table(path)
            if self._ds.store.scalar("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                                     f"AND schema_name = {lit(ROW_MAP_SCHEMA)} AND table_name = {lit(name)}"):
                rel, order = f"{ident(ROW_MAP_SCHEMA)}.{ident(name)}", "rowid"
        cols = self._ds.store.arrow(f"DESCRIBE SELECT * FROM {rel}").column("column_name").to_pylist()
        return rel, order, (RUN if RUN in cols else "1")

    def _file_lines(self, key: str, t, subject_id: int | None):
        """Rows of a table stored in patient order get their line in the file from its row map, which lists
        (subject_id, line, run), read as one line per row (_runs_to_rows): the k-th of a patient's rows in
        stored order is the k-th of that patient's lines in the map's order. Paired per patient, not by
        global position: a native table is sorted whole by patient while its Parquet file and map may be in
        sorted windows (built before whole sorts), and every one of these orders keeps a patient's rows in
        the same relative order."""
        import pyarrow as pa

        from mimiclab.load.arrowcsv import RUN

        src, order, run = self._lines[key]
        if subject_id is None:
            m = self._ds.store.arrow(f"SELECT subject_id, line, {run} AS {RUN} FROM {src} "
                                     f"ORDER BY subject_id NULLS LAST, {order}")
        else:
            m = self._ds.fetch(f"SELECT subject_id, line, {run} AS {RUN} FROM {src} WHERE subject_id = $sid "
                               f"ORDER BY {order}", {"sid": subject_id})
        m = _runs_to_rows(m)
        t = t.sort_by([("subject_id", "ascending"), ("__row__", "ascending")])  # nulls last: the default
        if m.num_rows != t.num_rows or not m.column("subject_id").cast(pa.int64()).equals(
                t.column("subject_id").cast(pa.int64())):  # the same patients, row for row (the map's own check)
            raise MimiclabError(f"{key}: the build's row map ({src}) does not match its table "
                                f"({m.num_rows} against {t.num_rows} rows, or other patients); rebuild with --force")
        return t.set_column(t.schema.get_field_index("__row__"), "__row__", m.column("line"))

    def _fetch_all(self, subject_id: int) -> dict[str, pd.DataFrame]:
        """One point query per file, run concurrently (DuckDB releases the GIL; one cursor per thread)."""
        if len(self.keys) == 1:
            return {self.keys[0]: self._fetch(self.keys[0], subject_id)}
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=min(len(self.keys), 4), thread_name_prefix="mimicdataset")
        pool = self._pool
        futures = {k: pool.submit(self._fetch, k, subject_id) for k in self.keys}
        return {k: f.result() for k, f in futures.items()}

    # ------------------------------------------------------------------ the example class's interface
    @property
    def dataset(self) -> Dataset:
        """The underlying Dataset (SQL, patients, timelines, plotly plots)."""
        return self._ds

    def __len__(self) -> int:
        self._live()
        return len(self._subject_ids)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]
        try:
            i = idx.__index__()
        except AttributeError:
            raise TypeError(f"MIMICDataset indices must be integers or slices, not {type(idx).__name__}") from None
        self._live()
        n = len(self._subject_ids)
        if i < -n or i >= n:
            raise IndexError(f"index {idx} out of range for {n} patients")
        sid = self._subject_ids[i]
        return PatientSample(sid, self._fetch_all(sid))

    def _dtypes(self, key: str) -> list[tuple[str, str]]:
        t = self._convert(key, self._ds.store.arrow(f"{self._sql[key]} LIMIT 0"))
        return [(str(c), str(d)) for c, d in t.dtypes.items()]

    def __repr__(self) -> str:
        self._live()
        out = ""
        for key in self.keys:
            cols = self._dtypes(key)
            rows = self._ds.manifest.tables[self._tables[key]].rows
            out += f"{key}: MIMIC Dataset with {rows} entries and {len(cols)} features.\nFeatures:\n"
            for c, d in cols:
                out += f"  `{c}` with {d} datatype\n"
        return out[:-1] if out.endswith("\n") else out

    def plot_distribution(self, key: str, column: str, savepath: str | os.PathLike | None = None, *,
                          return_fig: bool = False):
        """Drawn as the datathon class draws it: ``plt.figure(figsize=(10, 6))``, a 100-bin histogram over
        the whole file (numbers, times) or a bar per value (text), x labels rotated 45 degrees; saved at
        dpi 600, transparent, when `savepath` is given; then shown. Returns None, as the class does (a
        returned Figure would be drawn twice in Jupyter); ``return_fig=True`` returns the matplotlib Figure
        instead of showing it. ``dataset.plot_distribution`` gives the interactive plotly figure."""
        self._live()
        if key not in self._tables:
            raise UnknownNameError(f"no file {key!r} in this dataset." + suggest(key, self.keys))
        dist = self._ds.distribution(self._tables[key], column, bins=100,
                                     kind="categorical" if self._is_text(key, column) else "numeric", top=10**9)
        import matplotlib
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 6))
        ax = fig.gca()
        if dist.attrs["kind"] == "numeric":
            edges = list(dist["bin_start"]) + list(dist["bin_end"].iloc[-1:])
            if len(dist):
                import pandas as pd

                if pd.api.types.is_datetime64_any_dtype(dist["bin_start"].dtype):
                    import matplotlib.dates as mdates

                    edges = mdates.date2num([e.to_pydatetime() for e in edges])
                    ax.xaxis_date()
                ax.hist(edges[:-1], bins=edges, weights=dist["count"].tolist())
        else:
            ax.bar(dist["value"].tolist(), dist["count"].tolist())
        ax.set_xlabel(column.title())
        ax.set_ylabel("Number of Patients")
        for label in ax.get_xticklabels():  # 45 degrees as the class does, each label ending at its tick
            label.set(rotation=45, horizontalalignment="right", rotation_mode="anchor")
        if savepath is not None:
            fig.savefig(str(savepath), dpi=600, transparent=True, bbox_inches="tight")
        if return_fig:
            return fig
        plt.show()
        if matplotlib.get_backend().lower() in {"agg", "pdf", "svg", "ps", "cairo", "template"}:
            plt.close(fig)  # shown nowhere: do not let figures pile up in scripts and servers
        return None

    def _is_text(self, key: str, column: str) -> bool:
        from mimiclab.api.describe import TEMPORAL, _is_numeric

        _, t = self._ds.column(self._tables[key], column)
        return not (_is_numeric(t) or t.upper() in TEMPORAL)
