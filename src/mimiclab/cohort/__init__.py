"""Cohorts: a spec file in, ids + attrition + Table 1 + report + a PhysioNet-layout subset out.

    from mimiclab.cohort import Cohort
    c = Cohort.run(build_or_dataset, "spec.yaml")
    c.ids, c.attrition, c.table1, c.sql
    c.report("out/"); c.subset("subset/")

`Cohort.run` takes a registry Build or Source, anything Dataset-like (`.store`, `.manifest`), a dataset slug
or a server URL (postgresql://..., bigquery://...).
All work is SQL on the store (one CTE chain, see compile.py); pandas only summarises the final rows.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc

from mimiclab import catalog
from mimiclab.cohort import attrition as _attrition
from mimiclab.cohort import spec as S
from mimiclab.cohort import table1 as _table1
from mimiclab.cohort.compile import Compiled, compile_spec, transpile
from mimiclab.cohort.criteria import describe_criteria
from mimiclab.cohort.spec import CohortSpec, SpecError
from mimiclab.cohort.suggest import SUGGESTED
from mimiclab.errors import MimiclabError, QueryError

__all__ = ["CRITERIA", "Cohort", "CohortSpec", "EmptyCohortError", "SpecError", "load_spec"]

CRITERIA: list[dict[str, Any]] = describe_criteria()
for _c in CRITERIA:  # parameters the builder offers a picker for (mimiclab.cohort.suggest)
    for _p in _c["parameters"]:
        _p["suggest"] = (_c["name"], _p["name"]) in SUGGESTED
load_spec = S.load


class EmptyCohortError(MimiclabError):
    """No unit is left; the message names the step (and spec line) that removed the last ones."""

    def __init__(self, message: str, cohort: Cohort):
        super().__init__(message)
        self.cohort = cohort


def _resolve(target: Any, spec: CohortSpec):
    """(store, manifest, build or None, owns_store) from a Build, Source, Dataset-like object, slug or server URL
    (postgresql://..., bigquery://...: the spec's `dataset:` names the dataset there)."""
    from mimiclab.sources import is_url, open_source
    from mimiclab.sources.registry import find

    if target is None:
        if not spec.dataset:
            raise SpecError("no dataset given: name one with --dataset, or `dataset:` in the spec")
        target = spec.dataset
    if is_url(target):
        named = spec.dataset and not str(target).lower().startswith("bigquery://")  # BigQuery's URL names it
        target = open_source(target, spec.version if named else None, **({"dataset": spec.dataset} if named else {}))
    if isinstance(target, str):
        target = find(target, spec.version if spec.dataset in (None, target) else None)
    if hasattr(target, "store") and hasattr(target, "manifest"):  # mimiclab.api Dataset
        return target.store, target.manifest, getattr(target, "build", None), False
    if hasattr(target, "open") and hasattr(target, "manifest"):  # registry Build
        # sandboxed: a spec file may come from anyone, and nothing a cohort does needs files (reports and
        # subsets are written by Python)
        return target.open(sandbox=True), target.manifest, target, True
    raise TypeError(f"Cohort.run needs a Dataset, a registry Build or a dataset slug, not {type(target).__name__}")


class Cohort:
    """A cohort run on one build. Cheap to hold: ids and baseline rows are small DataFrames."""

    def __init__(self, spec: CohortSpec, compiled: Compiled, store, manifest, build, counts: list[int],
                 rows: pd.DataFrame, warnings: list[str], owns_store: bool = False):
        self.spec = spec
        self.compiled = compiled
        self.store = store
        self.manifest = manifest
        self.build = build
        self.counts = counts
        self.rows = rows  # ids + baseline columns, one row per unit
        self.warnings = warnings
        self._owns_store = owns_store
        self._table1: pd.DataFrame | None = None

    # ------------------------------------------------------------------ running
    @classmethod
    def run(cls, dataset: Any, spec: str | Path | dict | CohortSpec, *, allow_empty: bool = False) -> Cohort:
        """Compile and run `spec` on `dataset` (Build, Dataset-like, slug, or None = the spec's dataset).

        Raises SpecError for a spec this dataset cannot run (with file/line), EmptyCohortError when no unit
        is left (unless allow_empty; the error carries the cohort, so its attrition can still be shown).
        """
        spec = S.load(spec)
        store, manifest, build, owns = _resolve(dataset, spec)
        family = manifest.family or catalog.get(manifest.dataset).family
        compiled = compile_spec(spec, family)
        warnings = _check(spec, compiled, store, manifest)
        try:
            table = store.arrow(_table1.rows_and_counts_sql(compiled), portable=True)
        except QueryError as exc:
            raise _locate_failure(spec, compiled, store, exc) from None
        names = [_table1.count_column(i) for i in range(len(compiled.fragments) + 1)]
        counts = [int(table.column(n)[0].as_py()) for n in names]
        # an empty cohort's one row carries only the counts: dropped by its NULL key, before pandas (a NULL
        # would turn integer columns into floats)
        table = table.filter(pc.is_valid(table.column(compiled.ctx.key))).drop_columns([*names, *_table1.JOIN_COLUMNS])
        rows = table.to_pandas()
        for col in compiled.ctx.unit_columns:
            rows[col] = rows[col].astype("int64")
        cohort = cls(spec, compiled, store, manifest, build, counts, rows, warnings, owns)
        if counts[-1] == 0 and not allow_empty:
            raise EmptyCohortError(cohort._empty_message(), cohort)
        return cohort

    def _empty_message(self) -> str:
        if self.counts[0] == 0:
            return f"the cohort is empty: {self.manifest.dataset} {self.manifest.version} has no {self.spec.unit_label}"
        i = next(k for k, n in enumerate(self.counts) if n == 0)
        kind, c = self.spec.steps()[i - 1]
        head = (f"the cohort is empty: step {i} ({kind} {c.title!r}) at {self.spec.where(c)} left no "
                f"{self.spec.unit_label} of {self.counts[i - 1]:,}")
        # the cause where the checks found one (its table not loaded, a value never seen), not a generic hint
        why = [w for w in self.warnings if self.spec.where(c) in w]
        if why:
            return f"{head}: {'; '.join(why)}."
        return f"{head}. Loosen or remove that criterion."

    # ------------------------------------------------------------------ results
    @property
    def ids(self) -> pd.DataFrame:
        return self.rows[self.compiled.ctx.unit_columns].reset_index(drop=True)

    @property
    def attrition(self) -> pd.DataFrame:
        return _attrition.table(self.spec, self.counts, self.manifest.dataset, self.manifest.version)

    @property
    def table1(self) -> pd.DataFrame:
        if self._table1 is None:
            self._table1 = _table1.summarise(self.rows, f"N ({self.spec.unit_label})")
        return self._table1

    @property
    def table1_note(self) -> str:
        scope = {"patient": "the first hospital admission of each patient (ICU LOS: first ICU stay)",
                 "admission": "each admission (ICU LOS: first ICU stay of the admission)",
                 "stay": "the hospital admission of each ICU stay (ICU LOS: the stay itself)"}[self.spec.unit]
        return f"Characteristics at {scope}. Median [IQR] or n (%)."

    @property
    def sql(self) -> str:
        """The compiled SQL returning the cohort's ids (DuckDB spelling; see `sql_for`)."""
        return self.compiled.ids_sql

    def sql_for(self, dialect: str) -> str:
        """The ids SQL as a store of `dialect` (postgres, bigquery, ...) runs it (mimiclab.store.render)."""
        return transpile(self.compiled.ids_sql, dialect)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"<Cohort {self.spec.name!r}: {len(self):,} {self.spec.unit_label} of {self.counts[0]:,} "
                f"in {self.manifest.dataset} {self.manifest.version}>")

    # ------------------------------------------------------------------ outputs
    def report(self, out: str | Path) -> Path:
        """Write ids (csv, parquet), attrition, Table 1, flow diagram (svg, png), report.md/.html."""
        from mimiclab.cohort import report

        return report.write(self, out)

    def subset(self, out: str | Path, force: bool = False, whole_patients: bool = False) -> Path:
        """Export the cohort's rows in PhysioNet's layout (csv.gz per table) + report + SHA256SUMS.txt into a
        new or empty folder (`force` replaces a non-empty one). `whole_patients`: every row of the cohort's
        patients, not only of its units, so the same spec selects the same units on the subset."""
        from mimiclab.cohort import subset

        return subset.export(self, out, force=force, whole_patients=whole_patients)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()


def _check(spec: CohortSpec, comp: Compiled, store, manifest) -> list[str]:
    """Checks against the data: unknown itemids/labels are errors; values never seen, tables not loaded
    are warnings (the spec may be meant for the full dataset). Portable SQL with parameters."""
    names = comp.ctx.names
    warnings: list[str] = []
    tables = manifest.tables

    def not_loaded(qualified: str, c) -> bool:
        e = tables.get(qualified)
        if e is not None and e.status != "loaded":
            warnings.append(f"{qualified} is not loaded in this build (no source file): "
                            f"{c.title!r} ({spec.where(c)}) can match nothing")
            return True
        return False

    def marks(values: list, prefix: str) -> tuple[str, dict]:
        params = {f"{prefix}{k}": v for k, v in enumerate(values)}
        return ", ".join(f"${p}" for p in params), params

    for _, c in spec.steps():
        if isinstance(c, S._Measurement):
            kind = "lab" if isinstance(c, S.Lab) else "chart"
            t = comp.ctx.need(kind, kind)
            key = t.key or t.item
            if not_loaded(t.table, c):  # nothing to match: the dictionary may not know the items either (OMOP demo)
                continue
            if c.itemids:
                ph, params = marks([int(i) for i in c.itemids], "i")
                found = set(store.arrow(f"SELECT {key} FROM {t.dictionary} WHERE {key} IN ({ph})", params,
                                        portable=True).column(0).to_pylist())
                missing = [i for i in c.itemids if i not in found]
                if missing:
                    raise SpecError(f"{spec.where(c)}: unknown {kind} itemid(s) {', '.join(map(str, missing))} "
                                    f"(not in {t.dictionary})")
            if c.labels:
                ph, params = marks([x.lower() for x in c.labels], "l")
                known = store.arrow(f"SELECT DISTINCT LOWER({t.label}) FROM {t.dictionary} "
                                    f"WHERE LOWER({t.label}) IN ({ph})", params, portable=True).column(0)
                found_l = set(known.to_pylist())
                for label in c.labels:
                    if label.lower() not in found_l:
                        every = store.arrow(f"SELECT DISTINCT {t.label} FROM {t.dictionary} "
                                            f"WHERE {t.label} IS NOT NULL", portable=True).column(0).to_pylist()
                        close = difflib.get_close_matches(label, every, n=3, cutoff=0.6)
                        hint = f" Did you mean: {', '.join(close)}?" if close else ""
                        raise SpecError(f"{spec.where(c)}: unknown {kind} label {label!r} (not in "
                                        f"{t.dictionary}).{hint}")
        elif isinstance(c, S.Medication):
            if c.names or c.codes:
                drugs = comp.ctx.need("prescriptions", c.type)
                if not not_loaded(drugs.table, c) and c.names and drugs.named:
                    n, unnamed = store.arrow(f"SELECT count(*) AS n, sum(CASE WHEN x.{drugs.named} = 1 THEN 0 ELSE 1 END) "
                                             f"AS u FROM {drugs.table} x", portable=True).to_pylist()[0].values()
                    if n and unnamed and unnamed / n > 0.05:
                        warnings.append(f"{spec.where(c)}: {unnamed:,} of {n:,} drug rows ({100 * unnamed / n:.0f}%) "
                                        "have no drug name in this dataset's vocabulary (a name is matched against "
                                        "their source value, mostly a code): list the drugs' codes too (`codes:`, "
                                        f"matched against {', '.join(drugs.codes) or 'the code column'})")
            if c.itemids:
                not_loaded(comp.ctx.need("inputevents", c.type + " (itemids)").table, c)
        elif isinstance(c, (S.AdmissionType, S.AdmissionLocation, S.CareUnit, S.YearGroup)) and c.match == "exact":
            col, table = {
                S.AdmissionType: lambda: (names.admissions.type, names.admissions.table),
                S.AdmissionLocation: lambda: (names.admissions.location, names.admissions.table),
                S.CareUnit: lambda: (comp.ctx.icustays.first_careunit, comp.ctx.icustays.table),
                S.YearGroup: lambda: (names.patients.anchor_year_group, names.patients.table),
            }[type(c)]()
            if col is None:  # compile_spec already refused it
                continue
            ph, params = marks([v.upper() for v in c.values], "v")
            seen = set(store.arrow(f"SELECT DISTINCT UPPER(x.{col}) FROM {table} x WHERE UPPER(x.{col}) IN ({ph})",
                                   params, portable=True).column(0).to_pylist())
            unseen = [v for v in c.values if v.upper() not in seen]
            if unseen:
                where = f"{table}.{col}" if not table.startswith("(") else col  # a SELECT reads badly
                warnings.append(f"{spec.where(c)}: {', '.join(map(repr, unseen))} never occurs in {where}")
    return warnings


def _locate_failure(spec: CohortSpec, comp: Compiled, store, exc: Exception) -> MimiclabError:
    """Name the criterion whose SQL fails (usually an `sql` escape hatch), not just the database's message."""
    units = comp.ctes[0]
    for (kind, c), frag in zip(spec.steps(), comp.fragments, strict=True):
        try:
            store.arrow(f"WITH {units}\nSELECT COUNT(*) FROM ({frag}) t", portable=True)
        except QueryError as inner:
            hint = ""
            if isinstance(c, S.SQL):  # its query is wrapped as `q`: a missing column reads "table q not found"
                x = comp.ctx
                ret = c.returns or {"patient": "subject_id", "admission": "hadm_id", "stay": "stay_id"}[spec.unit]
                col = {"subject_id": x.pid, "hadm_id": x.aid, "stay_id": x.stay}.get(ret, ret)
                hint = f" (its query must return a column named {col})"
            return SpecError(f"{spec.where(c)}: the SQL of {kind} criterion {c.title!r} fails{hint}: {inner}")
    return exc if isinstance(exc, MimiclabError) else QueryError(str(exc))
