"""Concept mappings: how one schema family spells patients, stays, diagnoses and timeline events.

The Python API (``Patient``, timelines, stay charts, ``find_patient``) has one code path for every
family; what differs between MIMIC-IV, MIMIC-III and OMOP (``anchor_age`` vs ``dob``, ``stay_id`` vs
``icustay_id``, ``person_id`` and concept joins) lives in ``concepts/<family>.yaml`` beside this module,
in the spirit of ricu's concept dictionary.

Expressions in a mapping are DuckDB SQL. In a timeline source or a patient table, ``t`` is the row of the
source table and ``d`` the joined dictionary row; in demographics ``p`` is the patient row. A bare column
name (``charttime``) is read as ``t.charttime``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mimiclab.catalog import CatalogError, _suggest

HERE = Path(__file__).parent / "concepts"

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def qualify(expr: str | None, alias: str = "t") -> str | None:
    """A bare column name becomes ``alias.name``; any other SQL expression is returned as written."""
    if expr is None:
        return None
    expr = str(expr)
    return f"{alias}.{expr}" if _BARE.match(expr) else expr


class Join(_Model):
    """A dictionary joined to a source as ``d``: ``by`` columns of the source = ``key`` columns of the dictionary."""

    table: str  # qualified, e.g. mimiciv_icu.d_items
    by: tuple[str, ...]  # columns of the source row (not `on`: YAML 1.1 reads it as true)
    key: tuple[str, ...] | None = None  # columns of the dictionary (default: same names as `by`)

    def condition(self) -> str:
        keys = self.key or self.by
        return " AND ".join(f"d.{k} = {qualify(o)}" for o, k in zip(self.by, keys, strict=True))


class PatientTable(_Model):
    """A per-patient frame (admissions, diagnoses, ...): every column of ``table`` plus joined extras."""

    table: str
    order: tuple[str, ...] = ()  # SQL expressions
    join: Join | None = None
    extra: dict[str, str] = Field(default_factory=dict)  # output column -> expression (may use d.)
    where: str | None = None  # extra row filter (SQL over t and d)


class Span(_Model):
    """An interval for the stay overview chart and id lookups (admission, ICU stay, transfer)."""

    table: str
    start: str
    end: str
    id: str | None = None  # id column of the span (hadm_id, stay_id) in the table
    label: str | None = None  # expression shown on the bar
    join: Join | None = None
    where: str | None = None


class Demographics(_Model):
    table: str  # the patients table, as `p`
    columns: dict[str, str]  # output name -> expression over p


class TimelineSource(_Model):
    """One table's events, projected onto the common timeline columns."""

    name: str  # source label shown in the timeline (usually the table name)
    table: str
    time: str
    end: str | None = None
    label: str | None = None
    value: str | None = None  # text value
    valuenum: str | None = None  # numeric value
    unit: str | None = None
    hadm_id: str | None = None
    stay_id: str | None = None
    itemid: str | None = None
    join: Join | None = None
    where: str | None = None
    items: bool = False  # measured items: offered by Patient.items() / item_series()


class ConceptMap(_Model):
    family: str
    description: str = ""
    patient_id: str  # the patient key column in every table (subject_id, person_id)
    hadm_id: str  # hospitalization id column (hadm_id, visit_occurrence_id)
    stay_id: str  # ICU stay id column (stay_id, icustay_id, visit_detail_id)
    demographics: Demographics
    tables: dict[str, PatientTable]  # admissions, icustays, transfers, diagnoses, procedures, ...
    spans: dict[str, Span]  # admission, icustay, transfer
    timeline: tuple[TimelineSource, ...]
    cohort: dict | None = None  # names the cohort compiler needs (interpreted by mimiclab.cohort)
    # items a chart opens on, best first (itemid or label): a clinician expects creatinine or heart rate, not
    # whatever was measured most often
    default_items: tuple[str, ...] = ()

    def table(self, name: str) -> PatientTable:
        try:
            return self.tables[name]
        except KeyError:
            raise CatalogError(f"the {self.family} mapping has no patient table {name!r}."
                               + _suggest(name, list(self.tables))) from None


def families() -> list[str]:
    """Families that have a concept mapping."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


@lru_cache(maxsize=None)
def load(family: str) -> ConceptMap:
    """The concept mapping of a schema family; CatalogError (with close matches) when there is none."""
    path = HERE / f"{family}.yaml"
    if not path.exists():
        raise CatalogError(f"no concept mapping for the {family!r} family (expected {path})."
                           + _suggest(family, families()))
    raw = yaml.safe_load(path.read_text())
    raw["timeline"] = tuple({"name": name, **spec} for name, spec in (raw.get("timeline") or {}).items())
    return ConceptMap(**raw)
