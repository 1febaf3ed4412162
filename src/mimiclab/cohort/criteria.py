"""Each criterion -> one SQL SELECT returning the ids of the units that satisfy it.

Fragments are written in a portable subset of SQL (EXTRACT, SUBSTR, LOWER/UPPER ... LIKE, INTERVAL 'n'
SECOND, window functions) in DuckDB spelling; sqlglot transpiles them for PostgreSQL and BigQuery.
Names of tables and columns come from the `cohort` section of catalog/concepts/<family>.yaml, so MIMIC-III and MIMIC-IV share this code.

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



def families() -> list[str]:
    """Schema families whose concept mapping (catalog/concepts/<family>.yaml) has a `cohort` section."""
    return [f for f in concepts.families() if concepts.load(f).cohort]


def family_names(family: str | None) -> dict[str, Any]:
    if family not in families():
        raise SpecError(f"cohorts are not supported for the {family or 'file-only'} schema family yet "
                        f"(supported: {', '.join(families())})")
    return concepts.load(family).cohort


def lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


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


@dataclass(frozen=True)
class Context:
    """What a fragment needs: the family's names and the unit of analysis."""

    names: dict[str, Any]
    unit: str

    @property
    def stay(self) -> str:
        return self.names["stay_id"]

    @property
    def key(self) -> str:
        return {"patient": "subject_id", "admission": "hadm_id", "stay": self.stay}[self.unit]

    @property
    def unit_columns(self) -> list[str]:
        return {"patient": ["subject_id"], "admission": ["subject_id", "hadm_id"],
                "stay": ["subject_id", "hadm_id", self.stay]}[self.unit]

    def units_sql(self) -> str:
        n = self.names
        src = {"patient": n["patients"], "admission": n["admissions"], "stay": n["icustays"]}[self.unit]
        return f"SELECT {', '.join(self.unit_columns)} FROM {src}"

    def adm_link(self) -> str:
        """Join condition units u -> admissions a."""
        return "a.subject_id = u.subject_id" if self.unit == "patient" else "a.hadm_id = u.hadm_id"

    def icu_link(self, alias: str = "i") -> str:
        return {"patient": f"{alias}.subject_id = u.subject_id", "admission": f"{alias}.hadm_id = u.hadm_id",
                "stay": f"{alias}.{self.stay} = u.{self.stay}"}[self.unit]

    def select(self, joins: str, where: str) -> str:
        return f"SELECT DISTINCT u.{self.key} FROM units u {joins} WHERE {where}"


def _values_cond(col: str, c: S._Values) -> str:
    if c.match == "exact":
        return f"UPPER({col}) IN ({', '.join(lit(v.upper()) for v in c.values)})"
    return "(" + " OR ".join(f"UPPER({col}) LIKE {lit('%' + v.upper() + '%')}" for v in c.values) + ")"


def _seconds(hours: float) -> int:
    return int(round(hours * 3600))


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


def _window(ctx: Context, w: S.Window, time_col: str) -> tuple[str, str]:
    """(join to the anchor rows w, condition on the event time)."""
    n = ctx.names
    if w.anchor == "admission":
        join = f"JOIN {n['admissions']} w ON {ctx.adm_link().replace('a.', 'w.')}"
        t0, t1 = "w.admittime", "w.dischtime"
    else:
        join = f"JOIN {n['icustays']} w ON {ctx.icu_link('w')}"
        t0, t1 = "w.intime", "w.outtime"
    end = _shift(t0, w.end_hours) if w.end_hours is not None else t1
    return join, f"{time_col} >= {_shift(t0, w.start_hours)} AND {time_col} <= {end}"


def _items(c: S._Measurement, dictionary: str) -> str:
    parts = []
    if c.itemids:
        parts.append(f"m.itemid IN ({', '.join(str(i) for i in c.itemids)})")
    if c.labels:
        labels = ", ".join(lit(x.lower()) for x in c.labels)
        parts.append(f"m.itemid IN (SELECT itemid FROM {dictionary} WHERE LOWER(label) IN ({labels}))")
    return "(" + " OR ".join(parts) + ")"


def fragment(c: S._Criterion, ctx: Context) -> str:
    """The SELECT of unit ids satisfying `c`."""
    n = ctx.names
    adm = f"JOIN {n['admissions']} a ON {ctx.adm_link()}"
    pat = f"JOIN {n['patients']} p ON p.subject_id = u.subject_id"
    icu = f"JOIN {n['icustays']} i ON {ctx.icu_link()}"
    if isinstance(c, S.Age):
        return ctx.select(f"{adm} {pat}", _range(f"({n['age']})", c.min, c.max))
    if isinstance(c, S.Sex):
        return ctx.select(pat, f"p.gender = {lit(c.value)}")
    if isinstance(c, S.Race):
        return ctx.select(adm, f"{race_group_sql('a.' + n['race'])} IN ({', '.join(lit(g) for g in c.groups)})")
    if isinstance(c, S.AdmissionType):
        return ctx.select(adm, _values_cond("a.admission_type", c))
    if isinstance(c, S.AdmissionLocation):
        return ctx.select(adm, _values_cond("a.admission_location", c))
    if isinstance(c, S.YearGroup):
        if not n.get("anchor_year_group"):
            raise SpecError("this dataset has no anchor_year_group (MIMIC-III): remove the year_group criterion")
        return ctx.select(pat, _values_cond(f"p.{n['anchor_year_group']}", c))
    if isinstance(c, S.HospitalLOS):
        hours = 24 if c.unit == "days" else 1
        parts = []
        if c.min is not None:
            parts.append(f"a.dischtime >= {_shift('a.admittime', c.min * hours)}")
        if c.max is not None:
            parts.append(f"a.dischtime <= {_shift('a.admittime', c.max * hours)}")
        return ctx.select(adm, " AND ".join(parts))
    if isinstance(c, S.InHospitalDeath):
        return ctx.select(adm, f"a.hospital_expire_flag = {1 if c.value else 0}")
    if isinstance(c, S.HasICUStay):
        return ctx.select(icu, "1 = 1")
    if isinstance(c, S.FirstICUStay):
        first = (f"JOIN (SELECT subject_id, hadm_id, {ctx.stay}, ROW_NUMBER() OVER (PARTITION BY subject_id "
                 f"ORDER BY intime, {ctx.stay}) AS rn FROM {n['icustays']}) f ON {ctx.icu_link('f')}")
        return ctx.select(first, "f.rn = 1")
    if isinstance(c, S.ICULOS):
        div = 1 if c.unit == "days" else 24
        return ctx.select(icu, _range("i.los", None if c.min is None else c.min / div,
                                      None if c.max is None else c.max / div))
    if isinstance(c, S.CareUnit):
        conds = {"first": [_values_cond("i.first_careunit", c)], "last": [_values_cond("i.last_careunit", c)],
                 "any": [_values_cond("i.first_careunit", c), _values_cond("i.last_careunit", c)]}[c.which]
        return ctx.select(icu, "(" + " OR ".join(conds) + ")")
    if isinstance(c, (S.Diagnosis, S.Procedure)):
        t = n["diagnoses" if isinstance(c, S.Diagnosis) else "procedures"]
        link = "d.subject_id = u.subject_id" if ctx.unit == "patient" else "d.hadm_id = u.hadm_id"
        code = f"d.{t['code']}"
        groups = []
        for version, codes in ((9, c.icd9), (10, c.icd10)):
            if not codes:
                continue
            if t["version"] is None and version != 9:
                raise SpecError("this dataset codes diagnoses and procedures in ICD-9 only: use icd9 codes")
            any_code = " OR ".join(_code_cond(code, x) for x in codes)
            groups.append(f"(d.{t['version']} = {version} AND ({any_code}))" if t["version"] else f"({any_code})")
        where = "(" + " OR ".join(groups) + ")"
        if isinstance(c, S.Diagnosis) and c.primary:
            where += " AND d.seq_num = 1"
        return ctx.select(f"JOIN {t['table']} d ON {link}", where)
    if isinstance(c, S._Measurement):
        t = n["lab" if isinstance(c, S.Lab) else "chart"]
        join, when = _window(ctx, c.effective_window(), f"m.{t['time']}")
        conds = [_items(c, t["dictionary"]), when]
        for op, v in ((">", c.above), ("<", c.below), (">=", c.at_least), ("<=", c.at_most)):
            if v is not None:
                conds.append(f"m.valuenum {op} {v!r}")
        return ctx.select(f"{join} JOIN {t['table']} m ON m.subject_id = u.subject_id", " AND ".join(conds))
    if isinstance(c, S.Medication):
        w = c.window or S.Window()
        parts = []
        if c.names or c.codes:
            t = n["prescriptions"]
            join, when = _window(ctx, w, f"m.{t['time']}")
            what = [f"LOWER(m.{t['name']}) LIKE {lit('%' + x.lower() + '%')}" for x in c.names]
            if c.codes:
                codes = ", ".join(lit(x) for x in c.codes)
                what += [f"m.{col} IN ({codes})" for col in t["codes"]]
            parts.append(ctx.select(f"{join} JOIN {t['table']} m ON m.subject_id = u.subject_id",
                                    f"({' OR '.join(what)}) AND {when}"))
        if c.itemids:
            t = n["inputevents"]
            join, when = _window(ctx, w, f"m.{t['time']}")
            parts.append(ctx.select(f"{join} JOIN {t['table']} m ON m.subject_id = u.subject_id",
                                    f"m.itemid IN ({', '.join(str(i) for i in c.itemids)}) AND {when}"))
        return " UNION ".join(parts)
    if isinstance(c, S.SQL):
        ret = c.returns or {"patient": "subject_id", "admission": "hadm_id", "stay": "stay_id"}[ctx.unit]
        col = ctx.stay if ret == "stay_id" else ret
        inner = f"SELECT q.{col} FROM ({c.query}) q"
        if col in ctx.unit_columns:
            return ctx.select("", f"u.{col} IN ({inner})")
        # ids finer than the unit (a stay id for an admission cohort): map them up
        src = n["admissions"] if col == "hadm_id" else n["icustays"]
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
            typ, choices, optional = _param_type(f.annotation)
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
