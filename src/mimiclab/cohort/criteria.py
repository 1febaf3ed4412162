"""Each criterion -> one SQL SELECT returning the ids of the units that satisfy it.

Fragments are written in a portable subset of SQL (EXTRACT, SUBSTR, LOWER/UPPER, STRPOS, INTERVAL 'n'
SECOND, window functions) in DuckDB spelling; sqlglot transpiles them for PostgreSQL and BigQuery.
Names of tables and columns come from the typed `cohort` section of catalog/concepts/<family>.yaml
(catalog.concepts.CohortNames), so MIMIC-IV, MIMIC-III and OMOP share this code without branches.

Semantics, one rule for every unit: a unit satisfies a criterion when *some* row linked to it does.
Linked = same stay (stay unit), same admission (admission unit; stay unit for admission-level facts),
same patient (patient unit). Measurements and medications are linked by subject_id and time, relative to
the linked admission(s) or ICU stay(s), so ED labs just before admittime count when the window says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args, get_origin

from mimiclab.catalog import concepts
from mimiclab.cohort import spec as S
from mimiclab.cohort.spec import SpecError
from mimiclab.sqltext import lit


def families() -> list[str]:
    """Schema families whose concept mapping (catalog/concepts/<family>.yaml) has a `cohort` section."""
    return [f for f in concepts.families() if concepts.load(f).cohort]


def family_names(family: str | None) -> concepts.CohortNames:
    if family not in families():
        raise SpecError(f"cohorts are not supported for the {family or 'file-only'} schema family yet "
                        f"(supported: {', '.join(families())})")
    names = concepts.load(family).cohort
    assert names is not None
    return names


def race_group_sql(col: str) -> str:
    """MIMIC's race/ethnicity strings -> White, Black, Hispanic/Latino, Asian, Other, Unknown."""
    u = f"UPPER({col})"
    return (
        f"CASE WHEN {col} IS NULL OR {u} IN ('UNKNOWN', 'UNABLE TO OBTAIN', 'PATIENT DECLINED TO ANSWER', "
        f"'UNKNOWN/NOT SPECIFIED') THEN 'Unknown' "
        f"WHEN {u} LIKE 'HISPANIC%' OR {u} LIKE '%LATINO%' OR {u} = 'SOUTH AMERICAN' THEN 'Hispanic/Latino' "
        f"WHEN {u} LIKE 'BLACK%' THEN 'Black' "
        f"WHEN {u} LIKE 'ASIAN%' THEN 'Asian' "
        f"WHEN {u} LIKE 'WHITE%' OR {u} = 'PORTUGUESE' THEN 'White' "
        f"ELSE 'Other' END"
    )


def los_days_sql(start: str, end: str) -> str:
    """Days between two timestamps, portable (date_diff renders for PostgreSQL and BigQuery; EXTRACT(EPOCH
    FROM ...) does not for BigQuery)."""
    return f"date_diff('second', {start}, {end}) / 86400.0"


@dataclass(frozen=True)
class Context:
    """What a fragment needs: the family's typed cohort names and the unit of analysis."""

    names: concepts.CohortNames
    unit: str
    family: str = ""

    def need(self, what: str, criterion: str) -> Any:
        """The family's `what` names, or a SpecError naming the criterion and family that cannot use it."""
        value = getattr(self.names, what)
        if value is None:
            raise SpecError(f"the {criterion} criterion cannot be expressed for the {self.family or 'this'} "
                            f"family: its concept mapping has no {what.replace('_', ' ')}")
        return value

    @property
    def pid(self) -> str:
        return self.names.patient_id

    @property
    def aid(self) -> str:
        return self.names.admission_id

    @property
    def stay(self) -> str:
        return self.names.stay_id

    @property
    def key(self) -> str:
        return {"patient": self.pid, "admission": self.aid, "stay": self.stay}[self.unit]

    @property
    def unit_columns(self) -> list[str]:
        return {"patient": [self.pid], "admission": [self.pid, self.aid],
                "stay": [self.pid, self.aid, self.stay]}[self.unit]

    @property
    def icustays(self) -> concepts.CohortStays:
        return self.need("icustays", "ICU stay")

    def units_sql(self) -> str:
        n = self.names
        src = {"patient": n.patients.table, "admission": n.admissions.table,
               "stay": self.icustays.table if self.unit == "stay" else ""}[self.unit]
        return f"SELECT {', '.join('x.' + c for c in self.unit_columns)} FROM {src} x"

    def link(self, alias: str) -> str:
        """Join condition units u -> rows `alias` of a table carrying the patient and admission ids."""
        col = self.pid if self.unit == "patient" else self.aid
        return f"{alias}.{col} = u.{col}"

    def adm_link(self, alias: str = "a") -> str:
        return self.link(alias)

    def icu_link(self, alias: str = "i") -> str:
        if self.unit == "stay":
            return f"{alias}.{self.stay} = u.{self.stay}"
        return self.link(alias)

    def stay_los(self, alias: str) -> str:
        s = self.icustays
        return f"{alias}.{s.los}" if s.los else los_days_sql(f"{alias}.{s.start}", f"{alias}.{s.end}")

    def select(self, joins: str, where: str) -> str:
        return f"SELECT DISTINCT u.{self.key} FROM units u {joins} WHERE {where}"


def _values_cond(col: str, c: S._Values) -> str:
    if c.match == "exact":
        return f"UPPER({col}) IN ({', '.join(lit(v.upper()) for v in c.values)})"
    return "(" + " OR ".join(_contains(f"UPPER({col})", v.upper()) for v in c.values) + ")"


def _contains(expr: str, text: str) -> str:
    """`text` anywhere in `expr`, taken literally: in a LIKE pattern the `%` of "Dextrose 5%" matched
    "Dextrose 50%" too (141 admissions of the demo against 27), and LIKE's escape differs per dialect."""
    return f"STRPOS({expr}, {lit(text)}) > 0"


def _seconds(hours: float) -> int:
    return round(hours * 3600)


def _shift(col: str, hours: float) -> str:
    s = _seconds(hours)
    if s == 0:
        return col
    return f"{col} + INTERVAL '{s}' SECOND" if s > 0 else f"{col} - INTERVAL '{-s}' SECOND"


def _range(expr: str, lo: float | None, hi: float | None) -> str:
    parts = ([f"{expr} >= {lo!r}"] if lo is not None else []) + ([f"{expr} <= {hi!r}"] if hi is not None else [])
    return " AND ".join(parts)


def _code_cond(col: str, code: str) -> str:
    if code.endswith("*"):
        return f"{col} LIKE {lit(code[:-1] + '%')}"
    if "-" in code:
        lo, hi = code.split("-")
        return f"SUBSTR({col}, 1, {len(lo)}) BETWEEN {lit(lo)} AND {lit(hi)}"
    return f"{col} = {lit(code)}"


def _window(ctx: Context, w: S.Window, time_col: str, criterion: str, day: bool = False) -> tuple[str, str]:
    """(join to the anchor rows w, condition on the event time). `day`: the event time is a calendar date
    (a date-only start, at midnight), so the window's ends are compared as the days they fall on."""
    if w.anchor == "admission":
        a = ctx.names.admissions
        join = f"JOIN {a.table} w ON {ctx.adm_link('w')}"
        t0, t1 = f"w.{a.start}", f"w.{a.end}"
    else:
        s = ctx.need("icustays", criterion)
        join = f"JOIN {s.table} w ON {ctx.icu_link('w')}"
        t0, t1 = f"w.{s.start}", f"w.{s.end}"
    end = _shift(t0, w.end_hours) if w.end_hours is not None else t1
    start = _shift(t0, w.start_hours)
    if day:
        return join, (f"CAST({time_col} AS DATE) >= CAST({start} AS DATE) "
                      f"AND CAST({time_col} AS DATE) <= CAST({end} AS DATE)")
    return join, f"{time_col} >= {start} AND {time_col} <= {end}"


def _items(c: S._Measurement, t: concepts.CohortItems) -> str:
    parts = []
    item = f"m.{t.item}"
    if c.itemids:
        parts.append(f"{item} IN ({', '.join(str(i) for i in c.itemids)})")
    if c.labels:
        labels = ", ".join(lit(x.lower()) for x in c.labels)
        parts.append(f"{item} IN (SELECT {t.key or t.item} FROM {t.dictionary} WHERE LOWER({t.label}) IN ({labels}))")
    return "(" + " OR ".join(parts) + ")"


def fragment(c: S._Criterion, ctx: Context) -> str:
    """The SELECT of unit ids satisfying `c`."""
    n = ctx.names
    kind: str = c.type  # type: ignore[attr-defined]  # every concrete criterion has its Literal type
    A = n.admissions
    adm = f"JOIN {A.table} a ON {ctx.adm_link()}"
    pat = f"JOIN {n.patients.table} p ON p.{ctx.pid} = u.{ctx.pid}"

    def icu() -> str:
        return f"JOIN {ctx.need('icustays', kind).table} i ON {ctx.icu_link()}"

    def column(value: str | None, what: str) -> str:
        if value is None:
            raise SpecError(f"the {kind} criterion cannot be expressed for the {ctx.family or 'this'} family: "
                            f"its concept mapping has no {what}")
        return value

    if isinstance(c, S.Age):
        return ctx.select(f"{adm} {pat}", _range(f"({n.age})", c.min, c.max))
    if isinstance(c, S.Sex):
        return ctx.select(pat, f"p.{n.patients.gender} = {lit(c.value)}")
    if isinstance(c, S.Race):
        return ctx.select(f"{adm} {pat}", f"{race_group_sql(n.race)} IN ({', '.join(lit(g) for g in c.groups)})")
    if isinstance(c, S.AdmissionType):
        return ctx.select(adm, _values_cond(f"a.{column(A.type, 'admission type')}", c))
    if isinstance(c, S.AdmissionLocation):
        return ctx.select(adm, _values_cond(f"a.{column(A.location, 'admission location')}", c))
    if isinstance(c, S.YearGroup):
        col = column(n.patients.anchor_year_group, "anchor_year_group (remove the year_group criterion)")
        return ctx.select(pat, _values_cond(f"p.{col}", c))
    if isinstance(c, S.HospitalLOS):
        hours = 24 if c.unit == "days" else 1
        parts = []
        if c.min is not None:
            parts.append(f"a.{A.end} >= {_shift('a.' + A.start, c.min * hours)}")
        if c.max is not None:
            parts.append(f"a.{A.end} <= {_shift('a.' + A.start, c.max * hours)}")
        return ctx.select(adm, " AND ".join(parts))
    if isinstance(c, S.InHospitalDeath):
        return ctx.select(adm, f"a.{column(A.died, 'in-hospital death')} = {1 if c.value else 0}")
    if isinstance(c, S.HasICUStay):
        return ctx.select(icu(), "1 = 1")
    if isinstance(c, S.FirstICUStay):
        s = ctx.need("icustays", kind)
        first = (f"JOIN (SELECT z.{ctx.pid}, z.{ctx.aid}, z.{ctx.stay}, ROW_NUMBER() OVER (PARTITION BY z.{ctx.pid} "
                 f"ORDER BY z.{s.start}, z.{ctx.stay}) AS rn FROM {s.table} z) f ON {ctx.icu_link('f')}")
        return ctx.select(first, "f.rn = 1")
    if isinstance(c, S.ICULOS):
        div = 1 if c.unit == "days" else 24
        return ctx.select(icu(), _range(ctx.stay_los("i"), None if c.min is None else c.min / div,
                                        None if c.max is None else c.max / div))
    if isinstance(c, S.CareUnit):
        s = ctx.need("icustays", kind)
        first = f"i.{column(s.first_careunit, 'care unit')}"
        last = f"i.{column(s.last_careunit, 'care unit')}"
        conds = {"first": [_values_cond(first, c)], "last": [_values_cond(last, c)],
                 "any": [_values_cond(first, c), _values_cond(last, c)]}[c.which]
        return ctx.select(icu(), "(" + " OR ".join(conds) + ")")
    if isinstance(c, (S.Diagnosis, S.Procedure)):
        t: concepts.CohortCodes = ctx.need("diagnoses" if isinstance(c, S.Diagnosis) else "procedures", kind)
        link = ctx.link("d")
        code = f"d.{t.code}"
        groups = []
        for version, codes in ((9, c.icd9), (10, c.icd10)):
            if not codes:
                continue
            if t.version is None and version != 9 and not t.icd10:
                raise SpecError(f"the {ctx.family or 'this'} family codes diagnoses and procedures in ICD-9 only: "
                                "use icd9 codes")
            any_code = " OR ".join(_code_cond(code, x) for x in codes)
            groups.append(f"(d.{t.version} = {version} AND ({any_code}))" if t.version else f"({any_code})")
        where = "(" + " OR ".join(groups) + ")"
        if isinstance(c, S.Diagnosis) and c.primary:
            where += f" AND d.{column(t.seq_num, 'diagnosis sequence number (primary: true)')} = 1"
        return ctx.select(f"JOIN {t.table} d ON {link}", where)
    if isinstance(c, S._Measurement):
        t2: concepts.CohortItems = ctx.need("lab" if isinstance(c, S.Lab) else "chart", kind)
        join, when = _window(ctx, c.effective_window(), f"m.{t2.time}", kind)
        conds = [_items(c, t2), when]
        for op, v in ((">", c.above), ("<", c.below), (">=", c.at_least), ("<=", c.at_most)):
            if v is not None:
                conds.append(f"m.{t2.value} {op} {v!r}")
        return ctx.select(f"{join} JOIN {t2.table} m ON m.{ctx.pid} = u.{ctx.pid}", " AND ".join(conds))
    if isinstance(c, S.Medication):
        w = c.window or S.Window()
        parts = []
        if c.names or c.codes:
            rx: concepts.CohortDrugs = ctx.need("prescriptions", kind)
            join, when = _window(ctx, w, f"m.{rx.time}", kind, day=rx.time_is_date)
            what = [_contains(f"LOWER(m.{rx.name})", x.lower()) for x in c.names]
            if c.codes:
                code_list = ", ".join(lit(x) for x in c.codes)
                what += [f"m.{col} IN ({code_list})" for col in rx.codes]
            parts.append(ctx.select(f"{join} JOIN {rx.table} m ON m.{ctx.pid} = u.{ctx.pid}",
                                    f"({' OR '.join(what)}) AND {when}"))
        if c.itemids:
            ie: concepts.CohortInputs = ctx.need("inputevents", kind + " (itemids)")
            join, when = _window(ctx, w, f"m.{ie.time}", kind)
            parts.append(ctx.select(f"{join} JOIN {ie.table} m ON m.{ctx.pid} = u.{ctx.pid}",
                                    f"m.{ie.item} IN ({', '.join(str(i) for i in c.itemids)}) AND {when}"))
        return " UNION ".join(parts)
    if isinstance(c, S.SQL):
        ret = c.returns or {"patient": "subject_id", "admission": "hadm_id", "stay": "stay_id"}[ctx.unit]
        col = {"subject_id": ctx.pid, "hadm_id": ctx.aid, "stay_id": ctx.stay}.get(ret, ret)
        inner = f"SELECT q.{col} FROM ({c.query}) q"
        if col in ctx.unit_columns:
            return ctx.select("", f"u.{col} IN ({inner})")
        # ids finer than the unit (a stay id for an admission cohort): map them up
        src = A.table if col == ctx.aid else ctx.need("icustays", kind).table
        return ctx.select("", f"u.{ctx.key} IN (SELECT x.{ctx.key} FROM {src} x WHERE x.{col} IN ({inner}))")
    raise SpecError(f"no SQL for criterion type {type(c).__name__}")  # pragma: no cover


# ---------------------------------------------------------------- description for forms (web workbench)

_GROUPS = {
    "age": "demographics", "sex": "demographics", "race": "demographics",
    "admission_type": "admission", "admission_location": "admission", "year_group": "admission",
    "hospital_los": "admission", "in_hospital_death": "admission",
    "has_icu_stay": "icu", "first_icu_stay": "icu", "icu_los": "icu", "care_unit": "icu",
    "diagnosis": "diagnoses/procedures", "procedure": "diagnoses/procedures",
    "lab": "measurements", "chart": "measurements", "medication": "medications", "sql": "advanced",
}


def _param_type(ann: Any) -> tuple[str, list | None, bool]:
    """(type name, choices, optional) of a pydantic field annotation, for a form widget."""
    args = get_args(ann)
    optional = type(None) in args
    if optional:
        ann = next(a for a in args if a is not type(None))
        args = get_args(ann)
    origin = get_origin(ann)
    if origin is list:
        inner, choices, _ = _param_type(args[0])
        return f"list[{inner}]", choices, optional
    if str(origin) == "typing.Literal" or (origin is not None and getattr(origin, "__name__", "") == "Literal"):
        return "choice", list(args), optional
    if isinstance(ann, type) and issubclass(ann, S._Model):
        return ann.__name__.lower(), None, optional
    return getattr(ann, "__name__", str(ann)), None, optional


def describe_criteria() -> list[dict[str, Any]]:
    out = []
    for name, cls in S._TYPES.items():
        params = []
        for fname, f in cls.model_fields.items():
            if fname in ("type", "label"):
                continue
            typ, choices, _ = _param_type(f.annotation)
            entry: dict[str, Any] = {"name": fname, "type": typ, "required": f.is_required()}
            if choices:
                entry["choices"] = choices
            if not f.is_required():
                d = f.get_default(call_default_factory=True)
                entry["default"] = d.model_dump() if hasattr(d, "model_dump") else d
            if typ == "window":
                entry["fields"] = [{"name": k, "type": _param_type(v.annotation)[0],
                                    **({"choices": _param_type(v.annotation)[1]} if _param_type(v.annotation)[1] else {}),
                                    "default": v.get_default()} for k, v in S.Window.model_fields.items()]
            params.append(entry)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append({"name": name, "label": name.replace("_", " ").replace("icu", "ICU").capitalize()
                    if name != "icu_los" else "ICU length of stay",
                    "group": _GROUPS[name], "description": doc, "parameters": params})
    return out
