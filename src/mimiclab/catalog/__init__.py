"""The catalog: what PhysioNet publishes, as data.

Dataset differences (MIMIC-IV vs MIMIC-III vs OMOP, demo vs full) live in the YAML files beside this
module, not in code branches. Two kinds of file:

* ``datasets.yaml`` — one entry per PhysioNet project (slug): versions, access level, license, page,
  which *schema family* describes its tables, which modules it has, file sizes and known row counts.
* ``schemas/<family>.yaml`` — the tables of a family (mimiciv, mimiciii, omop, ...): per module the
  database schema name (as mimic-code and PhysioNet's BigQuery name it), and per table the source file
  stem, typed columns with a one-line description, primary key and the patient key.

Every layer reads the catalog; the catalog imports only mimiclab.errors.
"""

from __future__ import annotations

import difflib
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mimiclab.errors import MimiclabError

HERE = Path(__file__).parent

Access = Literal["open", "credentialed", "local"]  # local: made on this machine (synthetic), not on PhysioNet


class CatalogError(MimiclabError, LookupError):
    """An unknown dataset, version, module or table; the message lists close matches."""


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if close:
        return f" Did you mean: {', '.join(close)}?"
    return f" Known: {', '.join(sorted(options))}." if len(options) <= 25 else ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    name: str
    type: str  # DuckDB type name: INTEGER, BIGINT, SMALLINT, DOUBLE, VARCHAR, TIMESTAMP, DATE, TIME, BOOLEAN
    description: str = ""
    only_versions: tuple[str, ...] | None = None  # present only in these dataset versions

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        v = v.upper()
        base = v.split("(")[0]
        if base not in {"INTEGER", "BIGINT", "SMALLINT", "DOUBLE", "VARCHAR", "TIMESTAMP", "DATE", "TIME", "BOOLEAN"}:
            raise ValueError(f"unknown column type {v!r}")
        return v


class Table(_Model):
    name: str  # lower-case table name in the database
    module: str
    file: str  # path stem inside the dataset version folder, without .csv/.csv.gz (e.g. "hosp/admissions")
    description: str = ""
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    patient_key: str | None = None  # column that links a row to a patient (subject_id, person_id)
    kind: Literal["data", "dictionary"] = "data"  # dictionary tables (d_items, ...) are kept whole in subsets
    only_versions: tuple[str, ...] | None = None

    def columns_for(self, version: str) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.only_versions is None or version in c.only_versions)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise CatalogError(f"table {self.name} has no column {name!r}." + _suggest(name, [c.name for c in self.columns]))


class Module(_Model):
    name: str  # PhysioNet folder / module name: hosp, icu, ed, note, ...
    db_schema: str  # database schema: mimiciv_hosp, mimiciii, cdm
    description: str = ""
    unqualified: bool = False  # also expose tables in the default schema (OMOP: SELECT * FROM person)
    tables: tuple[Table, ...] = ()


class Family(_Model):
    """A set of table definitions shared by the full dataset and its demo."""

    name: str
    description: str = ""
    modules: tuple[Module, ...]
    extra_schemas: tuple[str, ...] = ()  # empty schemas scripts expect, e.g. mimiciv_derived for mimic-code concepts

    def module(self, name: str) -> Module:
        for m in self.modules:
            if m.name == name:
                return m
        raise CatalogError(f"no module {name!r} in {self.name}." + _suggest(name, [m.name for m in self.modules]))


class FileInfo(_Model):
    size: int | None = None  # bytes, approximate where not published exactly
    rows: int | None = None  # data rows, header excluded, where known
    approx_size: bool = False  # size is an estimate, not the exact byte count of the published file
    approx_rows: bool = False  # rows is an estimate, not an exact published/measured count


class BigQueryDataset(_Model):
    """A dataset of PhysioNet's BigQuery project and the mimiclab schema its tables are known by: queries are
    written once with mimic-code's names (`mimiciv_hosp.admissions`) and the BigQuery store rewrites them."""

    dataset: str  # BigQuery dataset in `project`: mimiciv_3_1_hosp
    db_schema: str  # mimiclab's (mimic-code's) schema: mimiciv_hosp
    tables: tuple[str, ...] | None = None  # only these tables of db_schema live here (mimiciii_notes: noteevents)
    project: str = "physionet-data"

    @property
    def path(self) -> str:
        return f"{self.project}.{self.dataset}"


class Version(_Model):
    version: str
    published: str | None = None  # ISO date
    size_bytes: int | None = None  # total compressed size of the version (approximate)
    files: dict[str, FileInfo] = Field(default_factory=dict)  # path -> info, PhysioNet's layout
    modules: tuple[str, ...] | None = None  # modules present in this version (default: the dataset's)
    bigquery: dict[str, str] = Field(default_factory=dict)  # module -> version-pinned BigQuery dataset
    bigquery_extra: tuple[BigQueryDataset, ...] = ()  # version-pinned datasets beyond the modules (derived)
    notes: str = ""


class Dataset(_Model):
    slug: str
    title: str
    short: str = ""  # short human name, e.g. "MIMIC-IV demo"
    access: Access
    license: str
    page: str  # https://physionet.org/content/<slug>/
    family: str | None = None  # schema family; None for file-only datasets without tables
    modules: tuple[str, ...] = ()
    versions: tuple[Version, ...]
    default_version: str
    demo_of: str | None = None  # slug of the full dataset this is a demo of
    zip_name: str | None = None  # <title>-<version>.zip stem on /static/published-projects/ (open data)
    bigquery: dict[str, str] = Field(default_factory=dict)  # module -> BigQuery dataset in physionet-data
    bigquery_extra: tuple[BigQueryDataset, ...] = ()  # datasets beyond the modules (derived, notes)
    description: str = ""
    synthetic: bool = False  # generated by mimiclab.synth; never downloaded, never real patients

    def version(self, version: str | None = None) -> Version:
        want = version or self.default_version
        for v in self.versions:
            if v.version == want:
                return v
        raise CatalogError(
            f"{self.slug} has no version {want!r}; published: {', '.join(v.version for v in self.versions)}."
        )

    def schema_family(self) -> Family | None:
        return family(self.family) if self.family else None

    def modules_for(self, version: str | None = None) -> tuple[str, ...]:
        v = self.version(version)
        return v.modules if v.modules is not None else self.modules

    def tables(self, version: str | None = None, modules: list[str] | None = None,
               names: list[str] | None = None) -> list[Table]:
        """The tables this dataset version has, optionally narrowed to modules and table names."""
        fam = self.schema_family()
        if fam is None:
            return []
        v = self.version(version).version
        present = self.modules_for(v)
        if modules:
            for m in modules:
                if m not in present:
                    raise CatalogError(f"{self.slug} {v} has no module {m!r}." + _suggest(m, list(present)))
        out = [
            t
            for m in fam.modules
            if m.name in present and (not modules or m.name in modules)
            for t in m.tables
            if t.only_versions is None or v in t.only_versions
        ]
        if names:
            known = {t.name: t for t in out} | {f"{t.module}/{t.name}": t for t in out}
            picked = []
            for n in names:
                if n not in known:
                    raise CatalogError(f"{self.slug} {v} has no table {n!r}." + _suggest(n, list(known)))
                picked.append(known[n])
            out = [t for t in out if t in picked]
        return out

    def bigquery_for(self, version: str | None = None) -> dict[str, str]:
        """Module -> BigQuery dataset in physionet-data: the version-pinned one where it exists, else the
        dataset-wide (latest) one."""
        return {**self.bigquery, **self.version(version).bigquery}

    def bigquery_datasets(self, version: str | None = None) -> tuple[BigQueryDataset, ...]:
        """Every BigQuery dataset of this version with the mimiclab schema it stands for, version-pinned
        names first (a schema given twice resolves to the first: the pinned one, not the moving latest)."""
        v = self.version(version)
        mods = [BigQueryDataset(dataset=name, db_schema=self.db_schema(m)) for m, name in self.bigquery_for(v.version).items()]
        out: list[BigQueryDataset] = []
        for d in (*v.bigquery_extra, *mods, *self.bigquery_extra):
            if not any(o.db_schema == d.db_schema and o.tables == d.tables for o in out):
                out.append(d)
        return tuple(out)

    def db_schema(self, module: str) -> str:
        fam = self.schema_family()
        if fam is None:
            raise CatalogError(f"{self.slug} has no tables")
        return fam.module(module).db_schema

    @property
    def is_demo(self) -> bool:
        return self.demo_of is not None


class Catalog(_Model):
    datasets: tuple[Dataset, ...]

    def get(self, slug: str) -> Dataset:
        for d in self.datasets:
            if d.slug == slug:
                return d
        raise CatalogError(f"unknown dataset {slug!r}." + _suggest(slug, [d.slug for d in self.datasets]))


@cache
def family(name: str) -> Family:
    path = HERE / "schemas" / f"{name}.yaml"
    if not path.exists():
        raise CatalogError(f"no schema family {name!r} (expected {path})")
    raw = yaml.safe_load(path.read_text())
    modules = []
    for mname, m in raw["modules"].items():
        tables = []
        for tname, t in (m.get("tables") or {}).items():
            cols = []
            for cname, spec in t["columns"].items():
                # compact form: name: [TYPE, "description"] or name: {type:, description:, only_versions:}
                if isinstance(spec, (list, tuple)):
                    spec = {"type": spec[0], "description": spec[1] if len(spec) > 1 else ""}
                elif isinstance(spec, str):
                    spec = {"type": spec}
                cols.append(Column(name=cname, **spec))
            rest = {k: v for k, v in t.items() if k != "columns"}
            tables.append(Table(name=tname, module=mname, columns=tuple(cols), **rest))
        rest = {k: v for k, v in m.items() if k != "tables"}
        modules.append(Module(name=mname, tables=tuple(tables), **rest))
    return Family(name=name, description=raw.get("description", ""), modules=tuple(modules),
                  extra_schemas=tuple(raw.get("extra_schemas") or ()))


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    raw = yaml.safe_load((HERE / "datasets.yaml").read_text())
    return Catalog(datasets=tuple(Dataset(**d) for d in raw["datasets"]))


def get(slug: str) -> Dataset:
    return catalog().get(slug)


def datasets() -> tuple[Dataset, ...]:
    return catalog().datasets
