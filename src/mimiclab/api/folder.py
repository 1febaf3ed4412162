"""A folder in PhysioNet's layout, used directly: which dataset it is, and its build under $MIMICLAB_HOME.

``MIMICDataset("/data/mimic-iv-demo/2.2", ...)`` and ``mimiclab.open("/data/...")`` should just work on a
folder someone unzipped, without a `mimiclab build` first. The build goes to
``$MIMICLAB_HOME/folders/<slug>-<hash of the resolved path>/`` — outside ``db/`` on purpose, so a partial
build of a folder never stands in for ``mimiclab.open("<slug>")``. A small stamp file (size and mtime of
each source used) lets a second call skip even the build layer's checksum pass when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mimiclab import catalog, config
from mimiclab.catalog import Dataset, Table
from mimiclab.errors import MimiclabError
from mimiclab.load import SYNTHETIC_MARKER, build
from mimiclab.load import manifest as mf
from mimiclab.load.source import EXTENSIONS, find, locate, normalize_column, read_header
from mimiclab.load.version import resolve as resolve_version
from mimiclab.sources.registry import Build

STAMP = "folder-stamp.json"


def is_build_dir(path: Path) -> bool:
    return (path / mf.MANIFEST).is_file()


def _present(folder: Path, table: Table) -> bool:
    return locate(folder, table) is not None


def detect(folder: Path) -> tuple[Dataset, str]:
    """(catalog dataset, version) that a folder holds, from the files present.

    The family is the one with most of its files present; within the family: a synthetic marker picks a
    synthetic dataset if the catalog has one; exact published file sizes pick a demo; otherwise the full
    dataset, at the version whose columns match the files' headers.
    """
    folder = Path(folder)
    best: tuple[int, str] | None = None
    for fam_name in sorted({d.family for d in catalog.datasets() if d.family}):
        fam = catalog.family(fam_name)
        n = sum(_present(folder, t) for m in fam.modules for t in m.tables)
        if n and (best is None or n > best[0]):
            best = (n, fam_name)
    if best is None:
        raise MimiclabError(
            f"{folder} does not look like a PhysioNet dataset folder: none of the files the catalog knows "
            f"(e.g. hosp/admissions.csv.gz, ADMISSIONS.csv, person.csv) are there. Point at the version folder "
            f"(the one with LICENSE.txt and SHA256SUMS.txt).")
    fam_name = best[1]
    members = [d for d in catalog.datasets() if d.family == fam_name]
    marker = folder / SYNTHETIC_MARKER
    if marker.exists():
        synth = [d for d in members if "synthetic" in d.slug]
        if synth:
            ds = synth[0]
            try:
                want = json.loads(marker.read_text()).get("version")
            except ValueError:
                want = None
            versions = [v.version for v in ds.versions]
            return ds, want if want in versions else ds.default_version
    # exact sizes of published files (demos list them exactly)
    for ds in members:
        for v in ds.versions:
            exact = [(p, i.size) for p, i in v.files.items()
                     if i.size is not None and not i.approx_size and p.endswith((".csv", ".csv.gz"))]
            present = [(f, size) for p, size in exact if (f := find(folder / p)) is not None]
            hits = [f for f, size in present if f.stat().st_size == size]
            if hits and len(hits) * 2 >= len(present):
                return ds, v.version
    full = [d for d in members if d.demo_of is None and "synthetic" not in d.slug] or members
    ds = full[0]
    return ds, resolve_version(ds, folder)  # from evidence (headers, row counts); asks when it cannot tell


def _version_by_headers(folder: Path, ds: Dataset) -> str:
    """The newest version whose catalog columns match the headers of the files present."""
    order = sorted(ds.versions, key=lambda v: v.version != ds.default_version)
    for v in order:
        ok = True
        for t in ds.tables(v.version):
            src = locate(folder, t)
            if src is None:
                continue
            try:
                got = [normalize_column(c) for c in read_header(src)]
            except MimiclabError:
                continue
            if got != [c.name for c in t.columns_for(v.version)]:
                ok = False
                break
        if ok:
            return v.version
    return ds.default_version


def build_dir_for(folder: Path, slug: str) -> Path:
    resolved = str(Path(folder).resolve())
    return config.home() / "folders" / f"{slug}-{hashlib.sha256(resolved.encode()).hexdigest()[:16]}"


def match_file(ds: Dataset, version: str, name: str) -> Table:
    """The catalog table behind a file name as the datathon code writes it ("hosp/admissions",
    "hosp/admissions.csv.gz", "ADMISSIONS"), else a CatalogError with close matches."""
    stem = name
    for ext in EXTENSIONS:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = stem.strip("/")
    tables = ds.tables(version)
    for t in tables:
        if t.file == stem:
            return t
    for t in tables:
        if t.file.lower() == stem.lower() or f"{t.module}/{t.name}" == stem.lower():
            return t
    known = [t.file for t in tables]
    raise catalog.CatalogError(f"{ds.slug} {version} has no file {name!r}." + catalog._suggest(stem, known))


def _stamp(folder: Path, tables: list[Table]) -> dict[str, list[int]]:
    out = {}
    for t in tables:
        src = locate(folder, t)
        if src is not None:
            out[src.rel] = [src.size, src.mtime_ns]
    return out


def ensure_built(folder: Path, tables: list[Table] | None = None) -> Build:
    """Build `folder` (only `tables`, or all) into its private build dir unless it is already current."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MimiclabError(f"{folder} is not a folder")
    ds, version = detect(folder)
    out = build_dir_for(folder, ds.slug)
    wanted = tables if tables is not None else ds.tables(version)
    shared = _registered_build(folder, ds, version, wanted)
    if shared is not None:
        return shared
    keys = {f"{ds.db_schema(t.module)}.{t.name}" for t in wanted}
    stamp_now = _stamp(folder, wanted)
    man = mf.read(out) if is_build_dir(out) else None
    if man is not None and man.version == version and (out / man.database).exists():
        try:
            old = json.loads((out / STAMP).read_text())
        except (OSError, ValueError):
            old = {}
        current = (all(k in man.tables and (out / man.tables[k].parquet).exists() for k in keys)
                   and all(old.get(rel) == st for rel, st in stamp_now.items())
                   and not _newly_present(folder, man, wanted, ds))
        if current:
            return Build(out, man)
    res = build(ds.slug, version=version, source=folder, dest=out,
                tables=[f"{t.module}/{t.name}" for t in wanted],
                progress=notebook_progress(f"{ds.slug} {version} from {folder}", len(wanted)))
    if res.failed:
        first = next(iter(res.failed.values()))
        raise MimiclabError(f"could not build {folder}: {first}")
    try:
        old = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        old = {}
    tmp = out / f"{STAMP}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({**old, **stamp_now}, indent=1))
    os.replace(tmp, out / STAMP)
    return Build(out, res.manifest)


class _Status:
    """One line of build status, shown as text and as an HTML <progress> bar (no ipywidgets needed)."""

    def __init__(self, text: str, done: int, total: int):
        self.text, self.done, self.total = text, done, total

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        import html

        return (f'<progress value="{self.done}" max="{max(self.total, 1)}" style="width:12em"></progress> '
                f"<code>{html.escape(self.text)}</code>")


def notebook_progress(what: str, total: int):
    """A build progress callback for a Jupyter kernel: one display, updated in place, opened on the first
    table actually loaded (a build that finds everything current shows nothing). None elsewhere: scripts
    stay quiet (the CLI draws its own progress with rich)."""
    ip = getattr(__import__("sys").modules.get("IPython"), "get_ipython", lambda: None)()
    if ip is None or getattr(ip, "kernel", None) is None:
        return None
    from IPython.display import display

    state: dict = {"done": 0, "handle": None, "loaded": 0, "missing": 0}

    def show(text: str) -> None:
        status = _Status(text if text.startswith("Built") else f"Building {what}: {text}", state["done"], total)
        if state["handle"] is None:
            state["handle"] = display(status, display_id=True)
        else:
            state["handle"].update(status)

    def progress(event: str, key: str | None, **info) -> None:
        if event in ("loaded", "skipped", "missing", "failed", "gone"):
            state["done"] += 1
            if event in ("loaded", "missing"):
                state[event] += 1
        if event == "loading":
            show(f"{state['done']}/{total} tables, loading {info.get('file') or key}")
        elif event == "waiting":
            show("waiting for another build of the same folder to finish")
        elif event == "publishing" and state["handle"] is not None:
            show(f"{state['done']}/{total} tables, writing the database")
        elif event == "done" and state["handle"] is not None:
            miss = f", {state['missing']} without a file" if state["missing"] else ""
            show(f"Built {what} in {info.get('seconds', 0):g} s: {state['loaded']} tables loaded{miss}")

    return progress


def _newly_present(folder: Path, man: mf.Manifest, wanted: list[Table], ds: Dataset) -> bool:
    """A wanted table that was missing at the last build but has a file now."""
    for t in wanted:
        e = man.tables.get(f"{ds.db_schema(t.module)}.{t.name}")
        if e is None or (e.status != "loaded" and locate(folder, t) is not None):
            return True
    return False


def _registered_build(folder: Path, ds: Dataset, version: str, wanted: list[Table]) -> Build | None:
    """A `mimiclab build` of this very folder (e.g. by `mimiclab demo`) that is still current: reuse it
    rather than building a second copy. Current = every wanted table loaded from a file of the same size
    that has not been modified since that build."""
    import datetime as dt

    from mimiclab.sources.registry import builds

    resolved = str(folder.resolve())
    for b in builds():
        m = b.manifest
        if m.source != resolved or m.dataset != ds.slug or m.version != version:
            continue
        try:
            built = dt.datetime.fromisoformat(m.built_at).timestamp()
        except ValueError:
            continue
        ok = True
        for t in wanted:
            e = m.tables.get(f"{ds.db_schema(t.module)}.{t.name}")
            src = locate(folder, t)
            changed = src is not None and (e is None or e.size != src.size or src.mtime_ns / 1e9 > built)
            if e is None or (src is None) != (e.status != "loaded") or changed:
                ok = False
            if not ok:
                break
        if ok:
            return b
    return None
