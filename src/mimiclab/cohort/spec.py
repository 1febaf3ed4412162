"""Cohort definition files: pydantic models and a YAML/JSON loader that remembers line numbers.

A spec is data, not code, so it can be reviewed, versioned and pasted into a paper. Every error names the
file, the line and the field (``spec.yaml, line 12 (include[1].above): Input should be a valid number``),
because the person fixing it is usually not the person who wrote the compiler.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mimiclab.errors import MimiclabError

Unit = Literal["patient", "admission", "stay"]
RaceGroup = Literal["White", "Black", "Hispanic/Latino", "Asian", "Other", "Unknown"]
RACE_GROUPS: tuple[str, ...] = ("White", "Black", "Hispanic/Latino", "Asian", "Other", "Unknown")
UNIT_ALIASES = {"patients": "patient", "subject": "patient", "admissions": "admission", "hadm": "admission",
                "icu_stay": "stay", "icustay": "stay", "icu stay": "stay", "stays": "stay"}


class SpecError(MimiclabError, ValueError):
    """A cohort spec that cannot be run; the message names file, line and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # 1e999 is inf: refused, never compiled


# Durations beyond a century are refused here, by field: 1e305 hours overflowed to an infinite number of
# seconds in the compiler (a traceback), and 1e12 failed only inside the database.
MAX_HOURS = 100 * 366 * 24


class Window(_Model):
    """Time window relative to the unit's admission or ICU stay. end_hours omitted: until discharge/ICU out."""

    anchor: Literal["admission", "icu"] = "admission"
    start_hours: float = Field(default=0, ge=-MAX_HOURS, le=MAX_HOURS)
    end_hours: float | None = Field(default=None, ge=-MAX_HOURS, le=MAX_HOURS)

    @model_validator(mode="after")
    def _order(self):
        if self.end_hours is not None and self.end_hours < self.start_hours:
            raise ValueError("end_hours must not be before start_hours")
        return self

    def describe(self) -> str:
        where = "admission" if self.anchor == "admission" else "ICU admission"
        if self.end_hours is None:
            return f"during the {'hospital' if self.anchor == 'admission' else 'ICU'} stay" + (
                f" (from {self.start_hours:g} h)" if self.start_hours else "")
        if self.start_hours == 0:
            return f"within {self.end_hours:g} h of {where}"
        return f"from {self.start_hours:g} h to {self.end_hours:g} h after {where}"


class _Criterion(_Model):
    label: str | None = None

    _line: int | None = PrivateAttr(default=None)
    _where: str = PrivateAttr(default="")

    def describe(self) -> str:  # default label when the spec gives none
        return str(self.type).replace("_", " ")  # type: ignore[attr-defined]  # each subclass's Literal

    @property
    def title(self) -> str:
        return self.label or self.describe()


def _bounds(lo, hi, unit: str = "") -> str:
    u = f" {unit}" if unit else ""
    if lo is not None and hi is not None:
        return f"{lo:g}–{hi:g}{u}"
    return f">= {lo:g}{u}" if lo is not None else f"<= {hi:g}{u}"


class _Range(_Criterion):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("max must not be below min")
        return self


class Age(_Range):
    """Age in years at admission (MIMIC-IV: anchor_age + year(admittime) - anchor_year)."""

    type: Literal["age"]

    def describe(self) -> str:
        return f"Age {_bounds(self.min, self.max, 'years')}"


class Sex(_Criterion):
    type: Literal["sex"]
    value: Literal["F", "M"]

    def describe(self) -> str:
        return "Female" if self.value == "F" else "Male"


class Race(_Criterion):
    """Race group derived from MIMIC's free-text race strings (see criteria.race_group_sql)."""

    type: Literal["race"]
    groups: list[RaceGroup] = Field(min_length=1)

    def describe(self) -> str:
        return "Race: " + ", ".join(self.groups)


class _Values(_Criterion):
    values: list[str] = Field(min_length=1)
    match: Literal["exact", "contains"] = "exact"  # case-insensitive either way

    def _vals(self) -> str:
        return ", ".join(self.values)


class AdmissionType(_Values):
    type: Literal["admission_type"]

    def describe(self) -> str:
        return f"Admission type: {self._vals()}"


class AdmissionLocation(_Values):
    type: Literal["admission_location"]

    def describe(self) -> str:
        return f"Admission location: {self._vals()}"


class YearGroup(_Values):
    """anchor_year_group, the real-time period (e.g. "2014 - 2016") a patient's shifted dates fall in."""

    type: Literal["year_group"]

    def describe(self) -> str:
        return f"Year group: {self._vals()}"


class _LOS(_Range):
    unit: Literal["hours", "days"] = "days"

    @model_validator(mode="after")
    def _within_a_century(self):
        top = MAX_HOURS / (24 if self.unit == "days" else 1)
        for name, v in (("min", self.min), ("max", self.max)):
            if v is not None and abs(v) > top:
                raise ValueError(f"{name} {v:g} {self.unit} is beyond a century (at most {top:g} {self.unit})")
        return self


class HospitalLOS(_LOS):
    type: Literal["hospital_los"]

    def describe(self) -> str:
        return f"Hospital LOS {_bounds(self.min, self.max, self.unit)}"


class InHospitalDeath(_Criterion):
    type: Literal["in_hospital_death"]
    value: bool = True

    def describe(self) -> str:
        return "Died in hospital" if self.value else "Survived to discharge"


class HasICUStay(_Criterion):
    type: Literal["has_icu_stay"]

    def describe(self) -> str:
        return "Has an ICU stay"


class FirstICUStay(_Criterion):
    """The patient's first ICU stay (stay unit), the admission holding it (admission unit)."""

    type: Literal["first_icu_stay"]

    def describe(self) -> str:
        return "First ICU stay of the patient"


class ICULOS(_LOS):
    type: Literal["icu_los"]

    def describe(self) -> str:
        return f"ICU LOS {_bounds(self.min, self.max, self.unit)}"


class CareUnit(_Values):
    type: Literal["care_unit"]
    which: Literal["first", "last", "any"] = "first"

    def describe(self) -> str:
        return f"ICU care unit ({self.which}): {self._vals()}"


_CODE = re.compile(r"^[A-Z0-9]+(\*|-[A-Z0-9]+)?$")


class _Codes(_Criterion):
    """Codes: exact "4280", prefix "I50*", or range "I50-I52" (compared on the first len(start) characters)."""

    icd9: list[str] = Field(default_factory=list)
    icd10: list[str] = Field(default_factory=list)

    @field_validator("icd9", "icd10")
    @classmethod
    def _clean(cls, codes: list[str]) -> list[str]:
        out = []
        for c in codes:
            c2 = str(c).strip().upper().replace(".", "").replace(" ", "")
            if not _CODE.match(c2):
                raise ValueError(f"{c!r} is not a code, prefix (I50*) or range (I50-I52)")
            if "-" in c2:
                lo, hi = c2.split("-")
                if len(lo) != len(hi) or hi < lo:
                    raise ValueError(f"range {c!r}: both ends need the same length, start <= end")
            out.append(c2)
        return out

    @model_validator(mode="after")
    def _some(self):
        if not self.icd9 and not self.icd10:
            raise ValueError("give icd9 and/or icd10 codes")
        return self

    def _codes(self) -> str:
        parts = ([f"ICD-9 {', '.join(self.icd9)}"] if self.icd9 else []) + (
            [f"ICD-10 {', '.join(self.icd10)}"] if self.icd10 else [])
        return "; ".join(parts)


class Diagnosis(_Codes):
    type: Literal["diagnosis"]
    primary: bool = False  # only seq_num = 1

    def describe(self) -> str:
        return ("Primary diagnosis " if self.primary else "Diagnosis ") + self._codes()


class Procedure(_Codes):
    type: Literal["procedure"]

    def describe(self) -> str:
        return "Procedure " + self._codes()


class _Measurement(_Criterion):
    itemids: list[int] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)  # exact item label, case-insensitive
    above: float | None = None  # valuenum > above
    below: float | None = None  # valuenum < below
    at_least: float | None = None  # valuenum >= at_least
    at_most: float | None = None  # valuenum <= at_most
    window: Window | None = None

    @model_validator(mode="after")
    def _items(self):
        if not self.itemids and not self.labels:
            raise ValueError("give itemids or labels")
        return self

    def _thresholds(self) -> str:
        parts = [f"{op} {v:g}" for op, v in ((">", self.above), ("<", self.below), (">=", self.at_least),
                                                ("<=", self.at_most)) if v is not None]
        return " and ".join(parts)

    def describe(self) -> str:
        what = ", ".join(self.labels + [str(i) for i in self.itemids])
        thr = self._thresholds()
        return f"{what}{' ' + thr if thr else ' measured'} {self.effective_window().describe()}"

    def effective_window(self) -> Window:
        return self.window or Window(anchor=self.default_anchor)

    default_anchor: ClassVar[Literal["admission", "icu"]] = "admission"


class Lab(_Measurement):
    type: Literal["lab"]


class Chart(_Measurement):
    type: Literal["chart"]
    default_anchor: ClassVar[Literal["admission", "icu"]] = "icu"


class Medication(_Criterion):
    """Prescriptions by drug name (case-insensitive substring) or code (NDC, GSN, formulary code), or ICU
    inputevents by itemid."""

    type: Literal["medication"]
    names: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
    itemids: list[int] = Field(default_factory=list)
    window: Window | None = None

    @model_validator(mode="after")
    def _some(self):
        if not (self.names or self.codes or self.itemids):
            raise ValueError("give names, codes or itemids")
        return self

    def describe(self) -> str:
        what = ", ".join(self.names + self.codes + [str(i) for i in self.itemids])
        return f"Medication {what} {(self.window or Window()).describe()}"


class SQL(_Criterion):
    """Escape hatch: a SELECT returning ids; `returns` names the id column (default: the unit's own)."""

    type: Literal["sql"]
    query: str
    returns: Literal["subject_id", "hadm_id", "stay_id"] | None = None

    @field_validator("query")
    @classmethod
    def _select(cls, q: str) -> str:
        """One reading statement, checked like the workbench's SQL page: it is pasted inside the cohort's
        own statement, so anything after it (a closed bracket, a `;`) would run as the spec's author wrote."""
        import sqlglot

        from mimiclab.errors import QueryError
        from mimiclab.store import sqlguard

        q = q.strip().rstrip(";").strip()
        if not re.match(r"(?is)^\s*(select|with|from)\b", q):
            raise ValueError("query must be a SELECT (or WITH ... SELECT) returning ids")
        try:
            checked = sqlguard.check(q)
            sqlglot.parse_one(f"SELECT * FROM ({checked}) q", read="duckdb")  # must stay one sub-query
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        except (sqlglot.errors.SqlglotError, RecursionError):
            raise ValueError("query must be one SELECT that can stand inside brackets") from None
        return checked

    def describe(self) -> str:
        return "Custom SQL"


Criterion = Annotated[
    Age | Sex | Race | AdmissionType | AdmissionLocation | YearGroup | HospitalLOS | InHospitalDeath | HasICUStay
    | FirstICUStay | ICULOS | CareUnit | Diagnosis | Procedure | Lab | Chart | Medication | SQL,
    Field(discriminator="type"),
]


class CohortSpec(_Model):
    """A cohort: unit of analysis, then include criteria in order, then exclude criteria in order."""

    name: str = "Cohort"
    description: str = ""
    dataset: str | None = None
    version: str | None = None
    unit: Unit
    include: list[Criterion] = Field(default_factory=list)
    exclude: list[Criterion] = Field(default_factory=list)

    _source: str = PrivateAttr(default="<spec>")
    _text: str | None = PrivateAttr(default=None)

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_alias(cls, v: Any) -> Any:
        return UNIT_ALIASES.get(v.strip().lower(), v.strip().lower()) if isinstance(v, str) else v

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) else v

    @model_validator(mode="after")
    def _locate(self):
        for kind in ("include", "exclude"):
            for i, c in enumerate(getattr(self, kind)):
                if not c._where:
                    c._where = f"{kind}[{i}]"
        return self

    def steps(self) -> list[tuple[str, _Criterion]]:
        """(include|exclude, criterion) in the order they are applied."""
        steps: list[tuple[str, _Criterion]] = [("include", c) for c in self.include]
        return steps + [("exclude", c) for c in self.exclude]

    def where(self, c: _Criterion) -> str:
        """Human pointer to a criterion: file, line, field path."""
        line = f", line {c._line}" if c._line else ""
        return f"{self._source}{line} ({c._where})"

    def to_yaml(self) -> str:
        """The spec as written (the original text when loaded from a file), for reports."""
        if self._text is not None:
            return self._text
        return yaml.safe_dump(self.model_dump(exclude_none=True, exclude_defaults=True, mode="json"),
                              sort_keys=False, allow_unicode=True)

    @property
    def unit_label(self) -> str:
        return {"patient": "patients", "admission": "admissions", "stay": "ICU stays"}[self.unit]


# ---------------------------------------------------------------- loading with line numbers

# A spec is a few hundred nodes. Aliases are shared in the composed graph but expanded by every walk over it
# (line tracking, pydantic): a "billion laughs" of nine nested aliases is 10^9 nodes, a recursive one never
# ends. Walks are bounded by this many visited nodes (aliases counted as expanded).
MAX_NODES = 100_000


def _lines(node: yaml.Node, source: str = "<spec>", limit: int = MAX_NODES) -> dict[tuple, int]:
    """Map every key path (('include', 0, 'above'), ...) to its 1-based line in the source.

    Iterative and budgeted: SpecError once more than `limit` nodes are visited, which only aliases can cause."""
    out: dict[tuple, int] = {}
    seen = 0
    stack: list[tuple[yaml.Node, tuple, frozenset]] = [(node, (), frozenset())]
    while stack:
        n, path, parents = stack.pop()
        seen += 1
        if seen > limit or id(n) in parents:
            what = "refer to themselves" if id(n) in parents else f"expand to more than {limit:,} values"
            raise SpecError(f"{source}, line {n.start_mark.line + 1}: the YAML aliases (*name of an &name) in this "
                            f"spec {what}; write the criteria out instead of aliasing them.")
        out.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            below = parents | {id(n)}
            for k, v in reversed(n.value):
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                out[path + (key,)] = k.start_mark.line + 1
                stack.append((v, path + (key,), below))
        elif isinstance(n, yaml.SequenceNode):
            below = parents | {id(n)}
            for i in range(len(n.value) - 1, -1, -1):
                stack.append((n.value[i], path + (i,), below))
    return out


def _line_for(loc: tuple, lines: dict[tuple, int], data: Any) -> tuple[int | None, str]:
    """Best line for a pydantic error location; drops union tags pydantic inserts (('include', 0, 'lab', ...))."""
    path: list = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            path.append(part)
        elif i == len(loc) - 1:
            path.append(part)  # a missing or unknown field: shown by name, line of its parent
        # else: a union tag pydantic inserted into the location; not part of the document
    shown = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])], shown
    return None, shown


def validate(data: Any, source: str = "<spec>", lines: dict[tuple, int] | None = None,
             text: str | None = None) -> CohortSpec:
    """Validate a parsed spec; SpecError lists every problem with its line."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a cohort spec is a mapping with at least `unit:` and `include:`")
    try:
        spec = CohortSpec.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            line, field = _line_for(tuple(err["loc"]), lines, data)
            where = f"{source}" + (f", line {line}" if line else "") + (f" ({field})" if field else "")
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {err['loc'][-1]!r}" + _field_hint(err["loc"], data)
            msgs.append(f"{where}: {msg}")
        raise SpecError("invalid cohort spec:\n  " + "\n  ".join(msgs)) from None
    spec._source = source
    spec._text = text
    for kind in ("include", "exclude"):
        for i, c in enumerate(getattr(spec, kind)):
            c._line = lines.get((kind, i))
            c._where = f"{kind}[{i}]"
    return spec


def _field_hint(loc: tuple, data: Any) -> str:
    import difflib

    node = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    model: type[BaseModel] | None = CohortSpec
    if isinstance(node, dict) and "type" in node:
        model = _TYPES.get(node["type"])
    elif len(loc) >= 2 and loc[-2] == "window":
        model = Window
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=2, cutoff=0.5)
    known = ", ".join(f for f in model.model_fields if f != "type")
    return f" (did you mean {' or '.join(close)}?)" if close else f" (known: {known})"


def loads(text: str, source: str = "<spec>") -> CohortSpec:
    """Parse YAML or JSON text (JSON is read by the same line-tracking loader)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = _lines(node, source) if node is not None else {}  # bounded: before anything expands aliases
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise SpecError(f"{source}{where}: not valid YAML/JSON: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:  # PyYAML composes recursively: thousands of nested brackets
        raise SpecError(f"{source}: nested too deeply to be a cohort spec.") from None
    except (ValueError, TypeError) as exc:  # a value YAML cannot build: 2001-13-45 as a date, 5000-digit ints
        raise SpecError(f"{source}: not valid YAML/JSON: {exc}") from None
    return validate(data, source, lines, text)


def load(spec: str | Path | dict | CohortSpec) -> CohortSpec:
    """A spec from a path, YAML/JSON text, a dict, or a CohortSpec (returned as is)."""
    if isinstance(spec, CohortSpec):
        return spec
    if isinstance(spec, dict):
        return validate(spec, "<dict>")
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec and
                                  spec.strip().endswith((".yaml", ".yml", ".json"))):
        p = Path(spec)
        if not p.is_file():
            raise SpecError(f"cohort spec {p} not found")
        return loads(p.read_text(encoding="utf-8"), p.name)
    return loads(str(spec))


def dumps_json(spec: CohortSpec) -> str:
    return json.dumps(spec.model_dump(exclude_none=True, mode="json"), indent=2)


_TYPES: dict[str, type[_Criterion]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (Age, Sex, Race, AdmissionType, AdmissionLocation, YearGroup, HospitalLOS, InHospitalDeath,
                HasICUStay, FirstICUStay, ICULOS, CareUnit, Diagnosis, Procedure, Lab, Chart, Medication, SQL)
}
