"""A build never silently loses or mislabels data: each case is checked against an independent read of the
raw files (Python's csv/gzip, or plain DuckDB over a single named file), never against mimiclab's output."""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from mimiclab.build import build

ED = ("edstays", "triage", "vitalsign", "diagnosis", "medrecon", "pyxis")


def csv_rows(path: Path) -> int:
    """Independent oracle: data rows counted with Python's csv module (no DuckDB, no globbing)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def _truncate(path: Path, keep: int) -> None:
    with gzip.open(path, "rt") as fh:
        lines = fh.readlines()
    with gzip.open(path, "wt") as fh:
        fh.writelines(lines[: keep + 1])


def _count(db: Path, key: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {key}").fetchone()[0]
    finally:
        con.close()


# -- 1. glob characters in --source ---------------------------------------------------------------------

@pytest.mark.parametrize("name,decoy", [("ed[12]", "ed1"), ("ed*", "ed-other"), ("ed?", "edx")])
def test_source_path_with_glob_characters_reads_exactly_the_named_file(data_root, mimiclab_home, tmp_path,
                                                                       name, decoy):
    """`ed[12]` as a glob matches `ed1`, not itself: the build must read the folder it was given."""
    real = tmp_path / name
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", real)
    other = tmp_path / decoy  # a folder the glob would pick instead, with different contents
    shutil.copytree(data_root / "mimic-iv-ed-demo" / "2.2", other)
    for t in ED:
        _truncate(other / "ed" / f"{t}.csv.gz", 7)
    res = build("mimic-iv-ed-demo", source=real)
    assert not res.failed, res.failed
    for t in ED:
        f = real / "ed" / f"{t}.csv.gz"
        entry = res.manifest.tables[f"mimiciv_ed.{t}"]
        assert entry.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
        assert entry.rows == csv_rows(f) == _count(res.database, f"mimiciv_ed.{t}"), t
