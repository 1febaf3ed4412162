"""Table 1: baseline characteristics of the cohort, as most papers report them.

One row per unit is fetched with SQL (the baseline admission: the unit's own admission; for a patient
cohort the first admission; ICU LOS of the stay itself, else of the first ICU stay in that scope), then
summarised in pandas: median [IQR] for continuous variables, n (%) for categorical ones.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from mimiclab.cohort.compile import Compiled
from mimiclab.cohort.criteria import los_days_sql, race_group_sql
from mimiclab.cohort.spec import RACE_GROUPS

BASELINE = ["age", "gender", "race_group", "admission_type", "los_days", "icu_los_days", "died_in_hospital"]


def rows_sql(comp: Compiled) -> str:
    """The cohort's ids plus baseline columns, one row per unit, ordered by the unit's id. Portable SQL."""
    ctes, select, key = _parts(comp)
    return f"{ctes}\nSELECT {select}\nORDER BY c.{key}"


def rows_and_counts_sql(comp: Compiled) -> str:
    """`rows_sql` with the attrition counts as columns `attrition_0..N`, in one statement: the step chain
    runs once instead of once for the counts and once for the rows (a 6-criterion cohort at full scale:
    0.41 s against 0.76 s of SQL). The counts are one row joined to the rows on an equality (JOIN_COLUMNS, which
    BigQuery's outer joins require), so an empty cohort is one row whose other columns are NULL and the
    counts still arrive. Portable SQL."""
    ctes, select, key = _parts(comp)
    counts = ", ".join(f"(SELECT COUNT(*) FROM step_{i}) AS {count_column(i)}" for i in range(len(comp.fragments) + 1))
    return (f"{ctes},\nbody AS (SELECT 1 AS {JOIN_COLUMNS[0]}, {select}),\ncounts AS (SELECT 1 AS {JOIN_COLUMNS[1]}, {counts})\n"
            f"SELECT body.*, counts.* FROM counts LEFT JOIN body ON body.{JOIN_COLUMNS[0]} = counts.{JOIN_COLUMNS[1]} "
            f"ORDER BY body.{key}")


JOIN_COLUMNS = ("body_one", "counts_one")  # rows_and_counts_sql's join columns, dropped by the reader


def count_column(step: int) -> str:
    return f"attrition_{step}"


def _parts(comp: Compiled) -> tuple[str, str, str]:
    """(WITH ... up to the baseline CTEs, the final SELECT's column list and FROM, the unit's key column)."""
    ctx, n = comp.ctx, comp.ctx.names
    A, P, S = n.admissions, n.patients, n.icustays
    pid, aid, stay = ctx.pid, ctx.aid, ctx.stay
    ids = ", ".join(f"c.{col}" for col in ctx.unit_columns)
    scope_a, scope_i = {"patient": (pid, pid), "admission": (aid, aid), "stay": (aid, stay)}[ctx.unit]
    a_type = f"a.{A.type}" if A.type else "CAST(NULL AS VARCHAR)"
    died = f"a.{A.died}" if A.died else "CAST(NULL AS INTEGER)"
    if S is not None:
        bi = f"""bi AS (
  SELECT y.{scope_i} AS scope, {ctx.stay_los('y')} AS los,
         ROW_NUMBER() OVER (PARTITION BY y.{scope_i} ORDER BY y.{S.start}, y.{stay}) AS rn
  FROM {S.table} y WHERE y.{scope_i} IN (SELECT {scope_i} FROM cohort)
)"""
        icu_col, icu_join = "i.los", f"\nLEFT JOIN bi i ON i.scope = c.{scope_i} AND i.rn = 1"
    else:  # a family without ICU stays: the column stays, empty
        bi, icu_col, icu_join = "", "CAST(NULL AS DOUBLE)", ""
    ctes = f"""ba AS (
  SELECT x.*, ROW_NUMBER() OVER (PARTITION BY x.{scope_a} ORDER BY x.{A.start}, x.{aid}) AS rn
  FROM {A.table} x WHERE x.{scope_a} IN (SELECT {scope_a} FROM cohort)
){',' + chr(10) + bi if bi else ''}"""
    select = f"""{ids},
  {n.age} AS age,
  p.{P.gender} AS gender,
  {race_group_sql(n.race)} AS race_group,
  {a_type} AS admission_type,
  {los_days_sql('a.' + A.start, 'a.' + A.end)} AS los_days,
  {icu_col} AS icu_los_days,
  {died} AS died_in_hospital
FROM cohort c
LEFT JOIN ba a ON a.{scope_a} = c.{scope_a} AND a.rn = 1
LEFT JOIN {P.table} p ON p.{pid} = c.{pid}{icu_join}"""
    return _then(comp, ctes), select, ctx.key


def _then(comp: Compiled, tail: str) -> str:
    return f"{comp.with_clause()},\ncohort AS (SELECT * FROM {comp.last}),\n{tail}"


def _median_iqr(s: pd.Series, digits: int) -> str:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return "–"
    q1, med, q3 = s.quantile([0.25, 0.5, 0.75]).tolist()
    return f"{_fmt(med, digits)} [{_fmt(q1, digits)}–{_fmt(q3, digits)}]"


def _n_pct(k: int, n: int) -> str:
    return f"{k} ({_fmt(100.0 * k / n, 1)})" if n else "0 (–)"


def _fmt(x: float, digits: int) -> str:
    """Rounded half away from zero, as tables in papers are: Python's format rounds halves to even, so a
    median of 64.5 showed as 64 and one of 63.5 as 64 (and 6.25% as 6.2). The shortest repr is rounded,
    so 6.25 is the decimal 6.25, not the binary double just under or over it."""
    return str(Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


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
