"""Which version of a dataset a folder holds: decided from evidence, never from the catalog's default.

MIMIC-IV 2.2 and 3.1 publish the same files with the same headers, so a folder's headers cannot tell them
apart, and labelling a 2.2 folder "3.1" makes every cohort report cite the wrong release. The evidence,
cheapest first:

1. headers: versions whose catalog columns (and table list) fit every file present;
2. row counts of the smallest files whose published counts differ between those versions. Dictionary
   tables (d_labitems, d_items, caregiver, ...) come first: a subset of a release keeps them whole, so they
   identify the release even when the data tables were cut down; data tables are used only when no
   dictionary is there. Every counted file must match the same single version.

SHA256SUMS.txt and LICENSE.txt are no help here: the catalog records no per-version checksums, and both
releases ship the same license text and the same file list. When the evidence is missing or disagrees,
`resolve` raises a MimiclabError that asks for the version instead of guessing.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from mimiclab.catalog import Dataset, Table
from mimiclab.errors import MimiclabError
from mimiclab.load.loader import connect, read_csv_sql
from mimiclab.load.source import SourceFile, locate, normalize_column, read_header

MAX_COUNTED = 3  # files whose rows are counted (the smallest discriminating ones)


def resolve(ds: Dataset, folder: Path, requested: str | None = None) -> str:
    """The version of `ds` that `folder` holds: `requested` if given, else the only one the evidence allows."""
    if requested is not None or len(ds.versions) == 1:
        return ds.version(requested).version
    folder = Path(folder)
    candidates = _by_headers(ds, folder)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        candidates = [v.version for v in ds.versions]
    counted = _counted_files(ds, folder, candidates)
    allowed = set(candidates)
    facts = []
    for src, table, rows in counted:
        published = {v: _published_rows(ds, v, table) for v in candidates}
        matching = {v for v, n in published.items() if n == rows}
        allowed &= matching
        facts.append(f"{src.rel} has {rows:,} rows ("
                     + ", ".join(f"{v}: {n:,}" for v, n in published.items()) + ")")
    if counted and len(allowed) == 1:
        return allowed.pop()
    versions = " and ".join(candidates)
    if not counted:
        why = "none of the files whose published row counts differ between them is there"
    elif not allowed:
        why = "the row counts match no single version: " + "; ".join(facts)
    else:
        why = "; ".join(facts)
    example = candidates[0]
    raise MimiclabError(
        f"cannot tell which version of {ds.slug} {folder} holds: {versions} have the same files and columns, "
        f"and {why}. Say which: mimiclab build {ds.slug} --source {folder} --version {example} "
        f"(in Python: build(..., version={example!r}), then mimiclab.open({ds.slug!r}, version={example!r})).")


def _by_headers(ds: Dataset, folder: Path) -> list[str]:
    """Versions whose tables and columns fit every catalog file present in `folder`."""
    fam = ds.schema_family()
    everything = [t for m in fam.modules for t in m.tables] if fam else []
    present = {t.file: src for t in everything if (src := locate(folder, t)) is not None}
    headers: dict[str, list[str] | None] = {}
    out = []
    for v in ds.versions:
        tables = {t.file: t for t in ds.tables(v.version)}
        if any(f not in tables for f in present):
            continue  # a file this version does not have
        ok = True
        for f, src in present.items():
            if f not in headers:
                try:
                    headers[f] = [normalize_column(c) for c in read_header(src)]
                except MimiclabError:
                    headers[f] = None  # unreadable: no evidence either way (the build will report it)
            got = headers[f]
            if got is not None and got != [c.name for c in tables[f].columns_for(v.version)]:
                ok = False
                break
        if ok:
            out.append(v.version)
    return out


def _published_rows(ds: Dataset, version: str, table: Table) -> int | None:
    files = ds.version(version).files
    for ext in (".csv.gz", ".csv"):
        info = files.get(table.file + ext)
        if info is not None and info.rows is not None and not info.approx_rows:
            return info.rows
    return None


def _counted_files(ds: Dataset, folder: Path, candidates: list[str]) -> list[tuple[SourceFile, Table, int]]:
    """Rows of the smallest present files whose published counts differ between `candidates`."""
    useful = []
    for t in ds.tables(candidates[0]):
        counts = {_published_rows(ds, v, t) for v in candidates}
        if None in counts or len(counts) < len(candidates):
            continue  # unknown for some version, or the same in two of them: no evidence
        if (src := locate(folder, t)) is not None:
            useful.append((t.kind != "dictionary", src.size, src, t))
    useful.sort(key=lambda x: (x[0], x[1]))
    if useful and not useful[0][0]:
        useful = [u for u in useful if not u[0]]  # dictionaries present: use only them
    out = []
    con = connect(threads=2, memory_limit="500MB")
    try:
        for _, _, src, t in useful[:MAX_COUNTED]:
            try:
                (rows,) = con.execute(f"SELECT count(*) FROM {read_csv_sql(src, t, candidates[0])}").fetchone()
            except duckdb.Error:  # a file DuckDB cannot read is no evidence; the build reports it
                continue
            out.append((src, t, int(rows)))
    finally:
        con.close()
    return out
