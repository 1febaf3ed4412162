"""Values a criterion's parameter can take, read from the data: the cohort builder's point-and-click pickers.

Users know "sepsis" or "creatinine", not `A419` or itemid 50912. Each suggestion query is written from
the family's `cohort` names (catalog/concepts/<family>.yaml), like the criteria themselves, so MIMIC-III
and MIMIC-IV share this code. Categories and codes come from the event tables with their counts (what
this dataset really holds, most frequent first); lab and charted items come from their dictionaries,
since counting a 300-million-row chartevents on every keystroke would be far too slow.
"""

from __future__ import annotations

from typing import Any

from mimiclab.cohort.criteria import family_names
from mimiclab.sqltext import like_escape

# (criterion, parameter) pairs with a picker; the builder form asks for suggestions only for these.
SUGGESTED = {
    ("admission_type", "values"), ("admission_location", "values"), ("year_group", "values"),
    ("care_unit", "values"), ("diagnosis", "icd9"), ("diagnosis", "icd10"), ("procedure", "icd9"),
    ("procedure", "icd10"), ("lab", "labels"), ("lab", "itemids"), ("chart", "labels"), ("chart", "itemids"),
    ("medication", "names"), ("medication", "itemids"),
}


# Pickers whose whole vocabulary (every value with its count) is small enough to keep: the web layer reads it
# once per build and filters it in Python on every keystroke (see vocabulary_sql).
VOCABULARY = {("admission_type", "values"), ("admission_location", "values"), ("year_group", "values"),
              ("care_unit", "values"), ("medication", "names"), ("diagnosis", "icd9"), ("diagnosis", "icd10"),
              ("procedure", "icd9"), ("procedure", "icd10")}


def _like(q: str) -> str:
    """`q` as an ILIKE pattern matching anywhere."""
    return "%" + like_escape(q) + "%"


def _counted(expr: str, source: str, q: str, limit: int, label: str = "NULL", where: str = "") -> tuple[str, list]:
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    params: list[Any] = []
    if q:
        cond += f" AND {expr} ILIKE ? ESCAPE '\\'"
        params.append(_like(q))
    sql = (f"SELECT {expr} AS value, {label} AS label, count(*) AS n FROM {source} WHERE {cond} "
           f"GROUP BY {expr} ORDER BY n DESC, value LIMIT {int(limit)}")
    return sql, params


def suggest_sql(family: str | None, criterion: str, param: str, q: str = "", limit: int = 20) -> tuple[str, list] | None:
    """(SQL, params) returning `value`, `label`, `n` (rows in the data, or NULL), or None: no picker here.
    Portable SQL with `?` parameters: run it with `portable=True`."""
    if (criterion, param) not in SUGGESTED:
        return None
    n = family_names(family)
    q = q.strip()[:100]
    A = n.admissions
    if criterion in ("admission_type", "admission_location"):
        col = A.type if criterion == "admission_type" else A.location
        return None if col is None else _counted(f"a.{col}", f"{A.table} a", q, limit)
    if criterion == "year_group":
        if not n.patients.anchor_year_group:
            return None
        return _counted(f"p.{n.patients.anchor_year_group}", f"{n.patients.table} p", q, limit)
    if criterion == "care_unit":
        S = n.icustays
        if S is None or not S.first_careunit or not S.last_careunit:
            return None
        # stays with the unit first or last, each once (first and last both counted had made MICU 60 of 33)
        both = (f"(SELECT y.{S.first_careunit} AS unit FROM {S.table} y UNION ALL "
                f"SELECT z.{S.last_careunit} FROM {S.table} z "
                f"WHERE z.{S.last_careunit} IS DISTINCT FROM z.{S.first_careunit}) i")
        return _counted("i.unit", both, q, limit)
    if criterion in ("diagnosis", "procedure"):
        t = n.diagnoses if criterion == "diagnosis" else n.procedures
        if t is None:
            return None
        version = 9 if param == "icd9" else 10
        if t.version is None and version != 9 and not t.icd10:
            return None  # MIMIC-III: ICD-9 only
        has_dict = bool(t.dictionary and t.title)
        on = f"d.{t.code} = x.{t.code}" + (f" AND d.{t.version} = x.{t.version}" if t.version else "")
        where = f"x.{t.version} = {version}" if t.version else ""
        params: list[Any] = []
        if q:
            match = f"(x.{t.code} ILIKE ? ESCAPE '\\'" + (f" OR d.{t.title} ILIKE ? ESCAPE '\\')" if has_dict else ")")
            where = f"{where} AND {match}" if where else match
            params += [like_escape(q.replace(".", "").upper()) + "%"]  # codes are stored without dots
            if has_dict:
                params.append(_like(q))
        label = f"max(d.{t.title})" if has_dict else "CAST(NULL AS VARCHAR)"
        join = f" LEFT JOIN {t.dictionary} d ON {on}" if has_dict else ""
        sql = (f"SELECT x.{t.code} AS value, {label} AS label, count(*) AS n "
               f"FROM {t.table} x{join} "
               f"{'WHERE ' + where if where else ''} GROUP BY x.{t.code} ORDER BY n DESC, value LIMIT {int(limit)}")
        return sql, params
    if criterion in ("lab", "chart") or (criterion, param) == ("medication", "itemids"):
        d = n.lab if criterion == "lab" else n.chart  # ICU inputs are itemids of d_items too
        if d is None or (criterion == "medication" and n.inputevents is None):
            return None
        key, lab = d.key or d.item, d.label
        params = []
        cond = f"{lab} IS NOT NULL"
        if q:
            cond += f" AND ({lab} ILIKE ? ESCAPE '\\'" + (f" OR CAST({key} AS VARCHAR) = ?)" if q.isdigit() else ")")
            params.append(_like(q))
            if q.isdigit():
                params.append(q)
        if param == "labels":
            # NULLS FIRST: DuckDB's default is NULLS LAST, BigQuery's NULLS FIRST, and sqlglot cannot write the
            # former inside BigQuery's STRING_AGG; keys are never NULL, so the order is the same
            sql = (f"SELECT {lab} AS value, 'itemid ' || string_agg(CAST({key} AS VARCHAR), ', ' ORDER BY {key} "
                   f"NULLS FIRST) AS label, NULL AS n FROM {d.dictionary} WHERE {cond} GROUP BY {lab} "
                   f"ORDER BY length({lab}), {lab} LIMIT {int(limit)}")
        else:
            sql = (f"SELECT CAST({key} AS VARCHAR) AS value, {lab} AS label, NULL AS n FROM {d.dictionary} "
                   f"WHERE {cond} ORDER BY length({lab}), {lab}, {key} LIMIT {int(limit)}")
        return sql, params
    if criterion == "medication":
        rx = n.prescriptions
        return None if rx is None else _counted(f"r.{rx.name}", f"{rx.table} r", q, limit)
    return None  # pragma: no cover - SUGGESTED lists only the cases above


def vocabulary_sql(family: str | None, criterion: str, param: str, max_values: int) -> str | None:
    """SQL returning every `value`, `label`, `n` of a picker (at most `max_values` + 1 rows, most frequent first,
    as suggest_sql orders them), or None: no picker, or one read from a dictionary at each keystroke.

    Counting drug names over prescriptions' 19M rows took 0.3 s to 1 s a keystroke at full scale (DuckDB's
    ILIKE with ESCAPE is slow), ICD codes 0.1 to 0.4 s; the build does not change under a given generation, so
    its vocabulary (a few thousand names, some 20,000 codes) is read once, and `matching` answers each keystroke."""
    if (criterion, param) not in VOCABULARY:
        return None
    made = suggest_sql(family, criterion, param, "", max_values + 1)
    return None if made is None else made[0]


def matching(vocabulary: list[tuple[Any, Any, Any]], q: str, limit: int, criterion: str = "") -> list[tuple[Any, Any, Any]]:
    """The first `limit` (value, label, n) of a vocabulary matching `q` as suggest_sql's WHERE does, in the same
    order, ignoring case: the value contains `q`; for ICD codes, the code starts with `q` (dots dropped) or
    the title contains it."""
    q = q.strip()[:100].lower()
    if not q:
        return vocabulary[:limit]
    if criterion in ("diagnosis", "procedure"):
        code = q.replace(".", "")
        return [r for r in vocabulary
                if str(r[0]).lower().startswith(code) or (r[1] is not None and q in str(r[1]).lower())][:limit]
    return [r for r in vocabulary if q in str(r[0]).lower()][:limit]
