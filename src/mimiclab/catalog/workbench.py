"""What the workbench shows of each schema family: names, searchable dictionaries, record columns, notes, SQL examples.

The web layer has one code path for every family; what differs between MIMIC-IV, MIMIC-III, ED, OMOP (which
dictionary tables get a search box, where notes live and how their columns are named, which example queries
the SQL page offers) lives in ``workbench/<family>.yaml`` beside this module, like the concept maps.

SQL examples are run by users as written, in the store's own dialect: an example's ``sql`` is written so that
DuckDB and PostgreSQL both run it; ``dialects`` holds a spelling for a dialect that needs its own.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mimiclab.catalog import CatalogError

HERE = Path(__file__).parent / "workbench"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lookup(_Model):
    """A dictionary table worth a search box (d_items, ICD titles, OMOP concept)."""

    table: str  # bare table name, as in the catalog
    label: str


class NoteSource(_Model):
    """A table of free-text notes, read for one patient: ``time``, ``title``, ``subtitle``, ``text`` are its columns."""

    table: str  # qualified
    time: str
    title: str
    text: str
    subtitle: str | None = None
    patient_id: str = "subject_id"


class Example(_Model):
    """An example query for the SQL page. ``sql`` runs on DuckDB and PostgreSQL alike; ``dialects`` overrides it
    for a dialect (sqlglot names: duckdb, postgres, bigquery) that needs another spelling."""

    title: str
    sql: str
    dialects: dict[str, str] = Field(default_factory=dict)

    def for_dialect(self, dialect: str) -> str:
        return self.dialects.get(dialect, self.sql)


class Workbench(_Model):
    """One family's workbench data."""

    family: str
    name: str  # shown to users: MIMIC-IV, OMOP
    lookups: tuple[Lookup, ...] = ()
    record_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # record section -> columns shown first
    notes: tuple[NoteSource, ...] = ()  # note tables inside datasets of this family
    notes_from: dict[str, tuple[NoteSource, ...]] = Field(default_factory=dict)  # other family -> its note tables
    notes_hint: str = "No note table is loaded in this dataset."
    examples: tuple[Example, ...] = ()


def families() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


@cache
def load(family: str | None) -> Workbench:
    """The workbench data of `family`; an empty one (nothing family-specific) for a family without a file."""
    path = HERE / f"{family}.yaml"
    if not family or not path.is_file():
        return Workbench(family=family or "", name=family or "dataset")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Workbench(family=family, **data)
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise CatalogError(f"{path}: not a valid workbench file: {exc}") from None


def name(family: str | None) -> str:
    return load(family).name


__all__ = ["Example", "Lookup", "NoteSource", "Workbench", "families", "load", "name"]
