"""Table 1: baseline characteristics of the cohort, as most papers report them.

One row per unit is fetched with SQL (the baseline admission: the unit's own admission; for a patient
cohort the first admission; ICU LOS of the stay itself, else of the first ICU stay in that scope), then
summarised in pandas: median [IQR] for continuous variables, n (%) for categorical ones.
"""

from __future__ import annotations

import pandas as pd

from mimiclab.cohort.compile import Compiled
from mimiclab.cohort.criteria import race_group_sql
from mimiclab.cohort.spec import RACE_GROUPS

BASELINE = ["age", "gender", "race_group", "admission_type", "los_days", "icu_los_days", "died_in_hospital"]


def rows_sql(comp: Compiled) -> str:
    """The cohort's ids plus baseline columns, one row per unit, ordered by the unit's id."""
    ctx, n = comp.ctx, comp.ctx.names
    stay = ctx.stay
    ids = ", ".join(f"c.{col}" for col in ctx.unit_columns)
    age = n["age"]
    if ctx.unit == "patient":
        scope_a, scope_i = "subject_id", "subject_id"
    elif ctx.unit == "admission":
        scope_a, scope_i = "hadm_id", "hadm_id"
    else:
        scope_a, scope_i = "hadm_id", stay
    select = f"""ba AS (
  SELECT x.*, ROW_NUMBER() OVER (PARTITION BY x.{scope_a} ORDER BY x.admittime, x.hadm_id) AS rn
  FROM {n['admissions']} x WHERE x.{scope_a} IN (SELECT {scope_a} FROM cohort)
),
bi AS (
  SELECT y.{scope_i} AS scope, y.los, ROW_NUMBER() OVER (PARTITION BY y.{scope_i} ORDER BY y.intime, y.{stay}) AS rn
  FROM {n['icustays']} y WHERE y.{scope_i} IN (SELECT {scope_i} FROM cohort)
)
SELECT {ids},
  {age} AS age,
  p.gender AS gender,
  {race_group_sql('a.' + n['race'])} AS race_group,
  a.admission_type AS admission_type,
  EXTRACT(EPOCH FROM (a.dischtime - a.admittime)) / 86400.0 AS los_days,
  i.los AS icu_los_days,
  a.hospital_expire_flag AS died_in_hospital
FROM cohort c
LEFT JOIN ba a ON a.{scope_a} = c.{scope_a} AND a.rn = 1
LEFT JOIN {n['patients']} p ON p.subject_id = c.subject_id
LEFT JOIN bi i ON i.scope = c.{scope_i} AND i.rn = 1
ORDER BY c.{ctx.key}"""
    return _then(comp, select)


def _then(comp: Compiled, tail: str) -> str:
    return f"{comp.with_clause()},\ncohort AS (SELECT * FROM {comp.last}),\n{tail}"


def _median_iqr(s: pd.Series, digits: int) -> str:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return "–"
    q1, med, q3 = s.quantile([0.25, 0.5, 0.75]).tolist()
    return f"{med:.{digits}f} [{q1:.{digits}f}–{q3:.{digits}f}]"


def _n_pct(k: int, n: int) -> str:
    return f"{k} ({100.0 * k / n:.1f})" if n else "0 (–)"


def summarise(rows: pd.DataFrame, unit_label: str) -> pd.DataFrame:
    """Columns: variable, level, value. `rows` has the BASELINE columns."""
    n = len(rows)
    out: list[tuple[str, str, str]] = [(unit_label, "", str(n))]
    out.append(("Age, years, median [IQR]", "", _median_iqr(rows["age"], 0)))
    out.append(("Female, n (%)", "", _n_pct(int((rows["gender"] == "F").sum()), n)))
    out.append(("Race, n (%)", "", ""))
    race = rows["race_group"].fillna("Unknown")
    for g in RACE_GROUPS:
        out.append(("Race, n (%)", g, _n_pct(int((race == g).sum()), n)))
    out.append(("Admission type, n (%)", "", ""))
    types = rows["admission_type"].fillna("(missing)").value_counts()
    for name, k in sorted(types.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(("Admission type, n (%)", str(name), _n_pct(int(k), n)))
    out.append(("Hospital LOS, days, median [IQR]", "", _median_iqr(rows["los_days"], 1)))
    icu = pd.to_numeric(rows["icu_los_days"], errors="coerce")
    note = "" if icu.notna().sum() == n else f" (n = {int(icu.notna().sum())} with an ICU stay)"
    out.append(("ICU LOS, days, median [IQR]" + note, "", _median_iqr(icu, 1)))
    died = pd.to_numeric(rows["died_in_hospital"], errors="coerce").fillna(0)
    out.append(("In-hospital mortality, n (%)", "", _n_pct(int((died == 1).sum()), n)))
    return pd.DataFrame(out, columns=["variable", "level", "value"])
