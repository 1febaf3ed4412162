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
from functools import cache
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
    requires: tuple[str, ...] = ()  # when `table` is a (SELECT ...): the tables it reads, for presence checks


class Span(_Model):
    """An interval for the stay overview chart and id lookups (admission, ICU stay, transfer)."""

    table: str
    start: str
    end: str
    id: str | None = None  # id column of the span (hadm_id, stay_id) in the table
    label: str | None = None  # expression shown on the bar
    join: Join | None = None
    where: str | None = None
    requires: tuple[str, ...] = ()  # when `table` is a (SELECT ...): the tables it reads, for presence checks


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


# ------------------------------------------------------------------ cohort names (read by mimiclab.cohort)
# Column fields are bare column names of the table they belong to; `table` may be a qualified table name or a
# parenthesised SELECT (OMOP: ICU stays are visit_detail rows in an intensive-care site). The cohort compiler
# reads only these models, so a family gets cohorts by filling them in its YAML, not by branches in code.


class CohortPatients(_Model):
    table: str
    gender: str = "gender"  # column holding 'M' / 'F'
    anchor_year_group: str | None = None  # MIMIC-IV's shifted year group; None: the year_group criterion is refused


class CohortAdmissions(_Model):
    table: str
    start: str = "admittime"
    end: str = "dischtime"
    type: str | None = "admission_type"
    location: str | None = "admission_location"
    died: str | None = "hospital_expire_flag"  # 1 = died in hospital, 0 = not


class CohortMembers(_Model):
    """The raw rows a stay is made of, where `table` merges several (OMOP: a stay's ICU ward rows):
    `condition` joins a row `m` of `table` to its stay `s` (not `on`: YAML 1.1 reads it as true). A stay
    subset keeps them all, not only the row that names the stay."""

    table: str
    condition: str


class CohortStays(_Model):
    table: str
    start: str = "intime"
    end: str = "outtime"
    los: str | None = "los"  # length of stay in days; None: computed from start and end
    first_careunit: str | None = "first_careunit"
    last_careunit: str | None = "last_careunit"
    members: CohortMembers | None = None


class CohortCodes(_Model):
    """Coded diagnoses or procedures (ICD)."""

    table: str
    code: str  # code without dots
    version: str | None = None  # column holding 9 or 10; None: see `icd10`
    icd10: bool = False  # without a version column: True = ICD-9 and ICD-10 codes both match `code` (OMOP)
    seq_num: str | None = None  # 1 = the primary diagnosis; None: `primary` is refused
    dictionary: str | None = None  # code titles for the builder's picker
    title: str | None = None


class CohortItems(_Model):
    """Measured items (labs, charted values) with their dictionary."""

    table: str
    time: str
    dictionary: str
    item: str = "itemid"
    value: str = "valuenum"
    key: str | None = None  # key column of the dictionary (default: `item`)
    label: str = "label"  # label column of the dictionary


class CohortDrugs(_Model):
    table: str
    time: str
    name: str
    # `time` holds a calendar date (MIMIC-III's startdate, at midnight): windows compare days, else a drug
    # started on the day of admission fell "before" its admittime (MIMIC-III heparin: 69 admissions for 99)
    time_is_date: bool = False
    codes: tuple[str, ...] = ()
    # a column true where the row has a real drug name (OMOP: a concept name; the rest carry only an NDC),
    # so that a spec matching by name is warned how many rows it cannot see
    named: str | None = None


class CohortInputs(_Model):
    table: str
    time: str
    item: str = "itemid"


class CohortLink(_Model):
    parent: str
    key: str


class CohortNames(_Model):
    """What the cohort compiler needs of a family. `age` and `race` are SQL over `a` (the admission) and `p`
    (the patient). A criterion whose table is None here is refused with a SpecError naming the family."""

    patient_id: str = "subject_id"
    admission_id: str = "hadm_id"
    stay_id: str = "stay_id"
    patients: CohortPatients
    admissions: CohortAdmissions
    icustays: CohortStays | None = None
    age: str
    race: str
    diagnoses: CohortCodes | None = None
    procedures: CohortCodes | None = None
    lab: CohortItems | None = None
    chart: CohortItems | None = None
    prescriptions: CohortDrugs | None = None
    inputevents: CohortInputs | None = None
    links: dict[str, CohortLink] = Field(default_factory=dict)  # subset export: tables reaching an admission via a parent


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
    cohort: CohortNames | None = None  # what the cohort compiler (mimiclab.cohort) needs
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


@cache
def load(family: str) -> ConceptMap:
    """The concept mapping of a schema family; CatalogError (with close matches) when there is none."""
    path = HERE / f"{family}.yaml"
    if not path.exists():
        raise CatalogError(f"no concept mapping for the {family!r} family (expected {path})."
                           + _suggest(family, families()))
    raw = yaml.safe_load(path.read_text())
    raw["timeline"] = tuple({"name": name, **spec} for name, spec in (raw.get("timeline") or {}).items())
    return ConceptMap(**raw)
