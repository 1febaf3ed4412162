"""One patient across all tables: demographics, stays, diagnoses, a single time-ordered timeline.

All of it is driven by the family's concept mapping (catalog/concepts/<family>.yaml): the same code runs
on MIMIC-IV, MIMIC-III and OMOP, and on every backend (portable SQL, run through Dataset.fetch). Every query
filters on the patient key, so on tables sorted by patient DuckDB reads only the row groups that hold this
patient.

Timeline columns (every family, ids under MIMIC-IV's names; for OMOP subject_id = person_id, hadm_id =
visit_occurrence_id, stay_id = visit_detail_id, itemid = concept_id):

    time, endtime, source, label, value, valuenum, unit, subject_id, hadm_id, stay_id, itemid
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from mimiclab.api._common import UnknownNameError, as_int, frame, ident, lit, mapped_from, number_text, qname, suggest
from mimiclab.catalog.concepts import PatientTable, Span, TimelineSource, qualify

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mimiclab.api.dataset import Dataset

TIMELINE_COLUMNS = ["time", "endtime", "source", "label", "value", "valuenum", "unit",
                    "subject_id", "hadm_id", "stay_id", "itemid"]
# time, source, item, label, value, then every other column: rows that tie on the first five (two doses of one
# drug at one time) had come back in a different order from run to run, and from backend to backend
TIMELINE_ORDER = ("time NULLS LAST, source, itemid NULLS LAST, label NULLS LAST, value NULLS LAST, endtime NULLS LAST, "
                  "valuenum NULLS LAST, unit NULLS LAST, hadm_id NULLS LAST, stay_id NULLS LAST")


def _cast(expr: str | None, typ: str, alias: str = "t") -> str:
    if expr is None:
        return f"CAST(NULL AS {typ})"
    return f"CAST({qualify(expr, alias)} AS {typ})"


def source_sql(src: TimelineSource, patient_id: str) -> str:
    """One timeline source as a SELECT of the common columns for the patient in parameter $sid."""
    # a value that is the number itself (inputevents' amount) as text the same way on every backend
    value = (number_text(_cast(src.valuenum, "DOUBLE")) if src.value is not None and src.value == src.valuenum
             else _cast(src.value, "VARCHAR"))
    return (
        f"SELECT {_cast(src.time, 'TIMESTAMP')} AS time, {_cast(src.end, 'TIMESTAMP')} AS endtime, "
        f"{lit(src.name)} AS source, {_cast(src.label, 'VARCHAR')} AS label, "
        f"{value} AS value, {_cast(src.valuenum, 'DOUBLE')} AS valuenum, "
        f"{_cast(src.unit, 'VARCHAR')} AS unit, CAST(t.{ident(patient_id)} AS BIGINT) AS subject_id, "
        f"{_cast(src.hadm_id, 'BIGINT')} AS hadm_id, {_cast(src.stay_id, 'BIGINT')} AS stay_id, "
        f"{_cast(src.itemid, 'BIGINT')} AS itemid "
        f"FROM {mapped_from(src)} WHERE t.{ident(patient_id)} = $sid"
        + (f" AND ({src.where})" if src.where else "")
    )


class Patient:
    """A patient of a Dataset. Frames are fetched on first access and kept."""

    def __init__(self, ds: Dataset, subject_id: int):
        self.ds = ds
        self.subject_id = ds.find_patient(subject_id=as_int(subject_id, "subject_id"))
        self._map = ds.concepts

    def __repr__(self) -> str:
        d = self.demographics
        bits = ", ".join(f"{k}={v}" for k, v in d.items() if k in ("gender", "anchor_age", "age_at_first_admission",
                                                                   "year_of_birth", "n_admissions", "n_icustays"))
        return f"<Patient {self.subject_id} of {self.ds.slug}: {bits}>"

    def _p(self) -> dict:
        return {"sid": self.subject_id}

    def _loaded(self, table: str) -> bool:
        e = self.ds.workspace.get(table)  # with the linked datasets' tables (MIMIC-IV-ED's stays)
        return e is not None and e.status == "loaded"

    def _present(self, table: str) -> bool:
        return table in self.ds.workspace

    def _has(self, spec: PatientTable | Span) -> bool:
        """A mapped table or span is there: its table, or every table its (SELECT ...) reads."""
        ws = self.ds.workspace
        return all(t in ws for t in spec.requires) if spec.requires else spec.table in ws

    # ------------------------------------------------------------------ demographics & frames
    @cached_property
    def demographics(self) -> dict:
        """Family-specific fields from the mapping, plus counts and first/last hospital times."""
        m = self._map
        dem = m.demographics
        out: dict = {"subject_id": self.subject_id}
        if self._present(dem.table):
            cols = ", ".join(f"{expr} AS {ident(name)}" for name, expr in dem.columns.items())
            rows = self.ds.fetch(
                f"SELECT {cols} FROM {qname(dem.table)} p WHERE p.{ident(m.patient_id)} = $sid LIMIT 1",
                self._p()).to_pylist()
            out.update(rows[0] if rows else {k: None for k in dem.columns})
        adm, icu = m.spans["admission"], m.spans["icustay"]
        pid = ident(m.patient_id)
        # the span's own filter (OMOP: hospital admissions, not lab-only pseudo visits), as stays() uses it
        awhere = f" AND ({adm.where})" if adm.where else ""
        row = self.ds.fetch(
            f"SELECT count(*) AS n_admissions, min({qualify(adm.start)}) AS first_admission, "
            f"max({qualify(adm.end)}) AS last_discharge FROM {mapped_from(adm, joined=bool(adm.where))} "
            f"WHERE t.{pid} = $sid{awhere}",
            self._p()).to_pylist()[0]
        out.update(row)
        where = f" AND ({icu.where})" if icu.where else ""
        out["n_icustays"] = self.ds.fetch(
            f"SELECT count(*) FROM {mapped_from(icu)} WHERE t.{pid} = $sid{where}",
            self._p()).column(0)[0].as_py() if self._has(icu) else 0
        return out

    def frame(self, name: str) -> pd.DataFrame:
        """A mapped per-patient table (admissions, icustays, transfers, diagnoses, procedures,
        prescriptions, microbiology, services): all its columns plus joined titles, in time order."""
        spec: PatientTable = self._map.table(name)
        if not self._has(spec):
            import pandas as pd

            return pd.DataFrame()
        joined = spec.join is not None and self._present(spec.join.table)
        extra = "".join(f", {expr if joined or not spec.join else 'NULL'} AS {ident(col)}"
                        for col, expr in spec.extra.items())
        order = f" ORDER BY {', '.join(str(qualify(o)) for o in spec.order)}" if spec.order else ""
        where = f" AND ({spec.where})" if spec.where else ""
        return frame(self.ds.fetch(
            f"SELECT t.*{extra} FROM {mapped_from(spec, joined)} "
            f"WHERE t.{ident(self._map.patient_id)} = $sid{where}{order}", self._p()))

    @cached_property
    def admissions(self) -> pd.DataFrame:
        return self.frame("admissions")

    @cached_property
    def icustays(self) -> pd.DataFrame:
        return self.frame("icustays")

    @cached_property
    def transfers(self) -> pd.DataFrame:
        return self.frame("transfers")

    @cached_property
    def diagnoses(self) -> pd.DataFrame:
        """Diagnoses with their titles (long_title; OMOP: the condition concept name)."""
        return self.frame("diagnoses")

    @cached_property
    def procedures(self) -> pd.DataFrame:
        return self.frame("procedures")

    @cached_property
    def prescriptions(self) -> pd.DataFrame:
        return self.frame("prescriptions")

    @cached_property
    def microbiology(self) -> pd.DataFrame:
        return self.frame("microbiology")

    @cached_property
    def services(self) -> pd.DataFrame:
        return self.frame("services")

    @cached_property
    def ed_stays(self) -> pd.DataFrame:
        """Emergency department stays with triage acuity and chief complaint, when a MIMIC-IV-ED build is
        linked (an empty frame without columns otherwise)."""
        if "ed_stays" not in self._map.tables:
            import pandas as pd

            return pd.DataFrame()
        return self.frame("ed_stays")

    def stays(self) -> pd.DataFrame:
        """Admissions, ICU stays, transfers (and ED stays, when linked) as intervals: kind, id, start, end,
        label (stay chart data)."""
        m = self._map
        parts = []
        for kind, sp in m.spans.items():
            if not self._has(sp):
                continue
            parts.append(
                f"SELECT {lit(kind)} AS kind, {_cast(sp.id, 'BIGINT')} AS id, {_cast(sp.start, 'TIMESTAMP')} AS start, "
                f"{_cast(sp.end, 'TIMESTAMP')} AS \"end\", {_cast(sp.label, 'VARCHAR')} AS label "
                f"FROM {mapped_from(sp)} WHERE t.{ident(m.patient_id)} = $sid"
                + (f" AND ({sp.where})" if sp.where else ""))
        order = {k: i for i, k in enumerate(m.spans)}
        # wrapped: PostgreSQL orders a UNION by its output columns only, not by expressions over them
        sql = ("SELECT * FROM (" + " UNION ALL ".join(parts) + ") AS s ORDER BY CASE kind "
               + " ".join(f"WHEN {lit(k)} THEN {i}" for k, i in order.items()) + " END, start, id")
        return frame(self.ds.fetch(sql, self._p()))

    # ------------------------------------------------------------------ timeline & items
    def _sources(self, sources=None, items_only: bool = False) -> list[TimelineSource]:
        allsrc = list(self._map.timeline)
        if sources is not None:
            names = [sources] if isinstance(sources, str) else list(sources)
            known = {s.name: s for s in allsrc}
            for n in names:
                if n not in known:
                    raise UnknownNameError(f"no timeline source {n!r} for {self.ds.family}." + suggest(n, list(known)))
            allsrc = [known[n] for n in names]
        return [s for s in allsrc if self._loaded(s.table) and (not items_only or s.items)
                and (s.join is None or self._present(s.join.table))]

    def _union(self, srcs: list[TimelineSource]) -> str | None:
        if not srcs:
            return None
        return " UNION ALL ".join(source_sql(s, self._map.patient_id) for s in srcs)

    def _empty_timeline(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            TIMELINE_COLUMNS, ["datetime64[us]", "datetime64[us]", "str", "str", "str", "float64", "str",
                               "Int64", "Int64", "Int64", "Int64"], strict=True)})

    def timeline(self, sources: str | list[str] | None = None, start=None, end=None) -> pd.DataFrame:
        """Every event of the patient across the mapped tables, ordered by time (then source, item,
        label, value, and the other columns: the same order every time, on every backend). `sources`
        narrows to some tables (names as in the mapping); `start`/`end` bound
        the time (inclusive)."""
        srcs = self._sources(sources)
        if not srcs:
            return self._empty_timeline()
        where, params = "", self._p()
        if start is not None:
            where += " AND time >= CAST($start AS TIMESTAMP)"
            params["start"] = str(start)
        if end is not None:
            where += " AND time <= CAST($end AS TIMESTAMP)"
            params["end"] = str(end)
        # one query: DuckDB runs the branches' point lookups in parallel and sorts once
        union = " UNION ALL ".join(f"SELECT * FROM ({source_sql(s, self._map.patient_id)}) AS s{i} WHERE true{where}"
                                   for i, s in enumerate(srcs))
        return frame(self.ds.fetch(
            f"SELECT * FROM ({union}) AS e ORDER BY {TIMELINE_ORDER}", params))

    def items(self) -> pd.DataFrame:
        """The patient's measured items (labs, charted vitals, inputs/outputs): source, itemid, label,
        unit, count, numeric (count of numeric values), first, last — most frequent first."""
        union = self._union(self._sources(items_only=True))
        if union is None:
            import pandas as pd

            return pd.DataFrame(columns=["source", "itemid", "label", "unit", "count", "numeric", "first", "last"])
        # unit: the most frequent one of the item (ties: the first by name), written without mode(), which
        # neither PostgreSQL (an ordered-set aggregate there) nor BigQuery spell like DuckDB
        per_unit = (f"SELECT source, itemid, label, unit, count(*) AS n, count(valuenum) AS nnum, min(time) AS t0, "
                    f"max(time) AS t1 FROM ({union}) AS e GROUP BY source, itemid, label, unit")
        ranked = (f"SELECT *, row_number() OVER (PARTITION BY source, itemid, label ORDER BY "
                  f"CASE WHEN unit IS NULL THEN 1 ELSE 0 END, n DESC, unit) AS r FROM ({per_unit}) AS u")
        return frame(self.ds.fetch(
            # sums of counts cast back to BIGINT: PostgreSQL's sum(bigint) is NUMERIC, read as float64 there
            f"SELECT source, itemid, label, max(CASE WHEN r = 1 THEN unit END) AS unit, CAST(sum(n) AS BIGINT) AS count, "
            f"CAST(sum(nnum) AS BIGINT) AS numeric, min(t0) AS first, max(t1) AS last FROM ({ranked}) AS k "
            f"GROUP BY source, itemid, label ORDER BY count DESC, label, source, itemid", self._p()))

    def item_series(self, item: int | str) -> pd.DataFrame:
        """One item over time: time, value (numeric), value_text, unit, source, itemid, label, hadm_id,
        stay_id. `item` is an itemid or a label (case-insensitive exact match)."""
        union = self._union(self._sources(items_only=True))
        params = self._p()
        if isinstance(item, str) and not item.strip().lstrip("-").isdigit():
            cond, params["item"] = "lower(label) = lower($item)", item.strip()
        else:
            cond, params["item"] = "itemid = $item", as_int(item, "itemid")
        if union is not None:
            df = frame(self.ds.fetch(
                f"SELECT time, valuenum AS value, value AS value_text, unit, source, itemid, label, hadm_id, stay_id "
                # ties (two results at one time) in one order on every backend
                f"FROM ({union}) AS e WHERE {cond} ORDER BY time NULLS LAST, source, value NULLS LAST, "
                f"value_text NULLS LAST", params))
            if len(df):
                return df
        its = self.items()
        options = [str(x) for x in its["label"].dropna().tolist()] + [str(x) for x in its["itemid"].dropna().tolist()]
        hint = suggest(str(item), options) if options else " This patient has no measured items."
        raise UnknownNameError(f"patient {self.subject_id} has no item {item!r}.{hint}")

    # ------------------------------------------------------------------ plots
    def plot_item(self, item: int | str, path: str | os.PathLike | None = None):
        """The item's numeric values over time (plotly Figure); saved when `path` is given."""
        from mimiclab.api import plots

        s = self.item_series(item)
        label = s["label"].dropna().iloc[0] if s["label"].notna().any() else str(item)
        unit = s["unit"].dropna().iloc[0] if s["unit"].notna().any() else ""
        fig = plots.item_figure(s, title=f"Patient {self.subject_id}: {label}", ylabel=f"{label} ({unit})" if unit else label)
        if path is not None:
            plots.save(fig, path)
        return fig

    def plot_stays(self, path: str | os.PathLike | None = None):
        """Admissions, ICU stays and transfers as a Gantt-like chart (plotly Figure)."""
        from mimiclab.api import plots

        fig = plots.stays_figure(self.stays(), title=f"Patient {self.subject_id}: stays")
        if path is not None:
            plots.save(fig, path)
        return fig
