"""Finding and checking source files in PhysioNet's layout before anything is loaded.

Checks here are cheap (a header line, a checksum) and catch the common failures — wrong folder, wrong
file, wrong version — with a message that names the file, before DuckDB spends minutes on it.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from mimiclab.catalog import Table
from mimiclab.errors import BuildError

EXTENSIONS = (".csv.gz", ".csv")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel: str  # path relative to the dataset version folder, as PhysioNet lists it
    size: int
    mtime_ns: int

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")


def locate(source: Path, table: Table) -> SourceFile | None:
    """The table's file under `source` (.csv.gz preferred, .csv accepted), or None when absent.

    PhysioNet spells MIMIC-III's files in upper case and MIMIC-IV's in lower case; copies that changed the
    case (a BigQuery export, an unzip tool, a case-insensitive disk copied to Linux) are found too when
    exactly one file in the folder matches whatever its case: on Linux they had been refused as missing."""
    for ext in EXTENSIONS:
        p = source / (table.file + ext)
        if p.is_file():
            st = p.stat()
            return SourceFile(p, table.file + ext, st.st_size, st.st_mtime_ns)
    for ext in EXTENSIONS:
        other = _other_case(source / (table.file + ext))
        if other is not None:
            st = other.stat()
            return SourceFile(other, str(other.relative_to(source)), st.st_size, st.st_mtime_ns)
    return None


def find(path: Path) -> Path | None:
    """`path` if it is a file, else the one file its folder holds under that name in another case (see
    `locate`), else None."""
    return path if path.is_file() else _other_case(path)


def _other_case(path: Path) -> Path | None:
    """The one regular file in `path`'s folder whose name equals `path`'s but for case (None if none, or
    if several do: which of them was meant cannot be told)."""
    try:
        names = [n for n in os.listdir(path.parent) if n.lower() == path.name.lower() and n != path.name]
    except OSError:
        return None
    found = [path.parent / n for n in names if (path.parent / n).is_file()]
    return found[0] if len(found) == 1 else None


def source_problem(source: Path, table: Table) -> str | None:
    """Why the table's path holds something that is not a readable file (a directory, a broken link or a
    link loop), or None when nothing is there at all. Such a path is a mistake to report, not an absence."""
    for ext in EXTENSIONS:
        p = source / (table.file + ext)
        if p.is_dir():
            return f"{p}: is a directory, not a data file"
        if p.is_symlink() and not p.exists():
            try:
                os.stat(p)
                reason = "unreadable"
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
            return f"{p}: is a symlink that leads to no file ({reason})"
        if p.exists() and not p.is_file():
            return f"{p}: is not a regular file"
    return None


def read_header(src: SourceFile) -> list[str]:
    """The header row, parsed as CSV. Raises BuildError for unreadable or empty files."""
    try:
        raw: io.BufferedIOBase
        raw = gzip.open(src.path, "rb") if src.compressed else open(src.path, "rb")  # noqa: SIM115 - closed by the with below
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
            row = next(csv.reader(text), None)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise BuildError(f"{src.path}: cannot read the header line ({exc})") from None
    if not row:
        raise BuildError(f"{src.path}: file is empty (no header line)")
    return [c.strip() for c in row]


def header_spelling(src: SourceFile) -> dict[str, str]:
    """Stored (catalog) name -> the header's own spelling, for the names that differ (the demo's
    icu/procedureevents ends in ORIGINALAMOUNT; full MIMIC-III is upper case): MIMICDataset gives the
    columns read_csv would, also once the raw files are gone, so the build keeps this in its manifest."""
    return {normalize_column(h): h for h in read_header(src) if normalize_column(h) != h}


def normalize_column(name: str) -> str:
    """Header names as the catalog spells them: MIMIC-III is upper case, CXR has 'Enlarged Cardiomediastinum'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def check_header(src: SourceFile, table: Table, version: str) -> None:
    """The header must list the catalog's columns in order (names normalized, see normalize_column)."""
    got = [normalize_column(c) for c in read_header(src)]
    want = [c.name for c in table.columns_for(version)]
    if got == want:
        return
    missing = [c for c in want if c not in got]
    extra = [c for c in got if c not in want]
    detail = []
    if missing:
        detail.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        detail.append(f"unexpected column(s) {', '.join(extra)}")
    if not detail:
        detail.append(f"columns in a different order: {', '.join(got)}")
    raise BuildError(
        f"{src.path}, line 1 (header): does not match {table.module}/{table.name} "
        f"in the catalog: {'; '.join(detail)}. Is this the right file and dataset version?"
    )


def stat_key(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
