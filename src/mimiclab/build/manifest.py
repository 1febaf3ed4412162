"""The build manifest: what a build contains and where it came from.

It is the single record the upper layers trust (info, workbench, cohort reports cite its hash), so it is
written atomically and read with validation.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1

TableStatus = Literal["loaded", "not_loaded", "failed"]


class TableEntry(BaseModel):
    module: str
    table: str
    db_schema: str
    status: TableStatus
    parquet: str  # relative to the build dir
    rows: int = 0
    source_file: str | None = None  # relative to the source folder
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
    p = build_dir / MANIFEST
    if not p.exists():
        return None
    return Manifest.model_validate_json(p.read_text())


def write(build_dir: Path, manifest: Manifest) -> None:
    p = build_dir / MANIFEST
    tmp = p.with_name(p.name + f".tmp-{os.getpid()}")
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, p)


def schema_hash(columns: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:12]
