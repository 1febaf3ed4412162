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

# (criterion, parameter) pairs with a picker; the builder form asks for suggestions only for these.
SUGGESTED = {
    ("admission_type", "values"), ("admission_location", "values"), ("year_group", "values"),
    ("care_unit", "values"), ("diagnosis", "icd9"), ("diagnosis", "icd10"), ("procedure", "icd9"),
    ("procedure", "icd10"), ("lab", "labels"), ("lab", "itemids"), ("chart", "labels"), ("chart", "itemids"),
    ("medication", "names"), ("medication", "itemids"),
}


def _escape(q: str) -> str:
    """LIKE's wildcards (and the escape character) in `q` taken literally (used with ESCAPE '\\')."""
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(q: str) -> str:
    """`q` as an ILIKE pattern matching anywhere."""
    return "%" + _escape(q) + "%"


def _counted(expr: str, source: str, q: str, limit: int, label: str = "NULL", where: str = "") -> tuple[str, list]:
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    params: list[Any] = []
    if q:
        cond += f" AND {expr} ILIKE ? ESCAPE '\\'"
        params.append(_like(q))
    sql = (f"SELECT {expr} AS value, {label} AS label, count(*) AS n FROM {source} WHERE {cond} "
           f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(limit)}")
    return sql, params


def suggest_sql(family: str | None, criterion: str, param: str, q: str = "", limit: int = 20) -> tuple[str, list] | None:
    """(SQL, params) returning `value`, `label`, `n` (rows in the data, or NULL), or None: no picker here."""
    if (criterion, param) not in SUGGESTED:
        return None
    n = family_names(family)
    q = q.strip()[:100]
    if criterion in ("admission_type", "admission_location"):
        return _counted(f"a.{criterion}", f"{n['admissions']} a", q, limit)
    if criterion == "year_group":
        if not n.get("anchor_year_group"):
            return None
        return _counted(f"p.{n['anchor_year_group']}", f"{n['patients']} p", q, limit)
    if criterion == "care_unit":
        both = f"(SELECT first_careunit AS unit FROM {n['icustays']} UNION ALL SELECT last_careunit FROM {n['icustays']}) i"
        return _counted("i.unit", both, q, limit)
    if criterion in ("diagnosis", "procedure"):
        t = n["diagnoses" if criterion == "diagnosis" else "procedures"]
        version = 9 if param == "icd9" else 10
        if t.get("version") is None and version != 9:
            return None  # MIMIC-III: ICD-9 only
        on = f"d.{t['code']} = x.{t['code']}" + (f" AND d.{t['version']} = x.{t['version']}" if t.get("version") else "")
        where = f"x.{t['version']} = {version}" if t.get("version") else ""
        params: list[Any] = []
        if q:
            match = f"(x.{t['code']} ILIKE ? ESCAPE '\\' OR d.{t['title']} ILIKE ? ESCAPE '\\')"
            where = f"{where} AND {match}" if where else match
            params += [_escape(q.replace(".", "").upper()) + "%", _like(q)]  # codes are stored without dots
        sql = (f"SELECT x.{t['code']} AS value, max(d.{t['title']}) AS label, count(*) AS n "
               f"FROM {t['table']} x LEFT JOIN {t['dictionary']} d ON {on} "
               f"{'WHERE ' + where if where else ''} GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(limit)}")
        return sql, params
    if criterion in ("lab", "chart") or (criterion, param) == ("medication", "itemids"):
        d = n["lab" if criterion == "lab" else "chart"]["dictionary"]  # ICU inputs are itemids of d_items too
        params = []
        cond = "label IS NOT NULL"
        if q:
            cond += " AND (label ILIKE ? ESCAPE '\\'" + (" OR CAST(itemid AS VARCHAR) = ?)" if q.isdigit() else ")")
            params.append(_like(q))
            if q.isdigit():
                params.append(q)
        if param == "labels":
            sql = (f"SELECT label AS value, 'itemid ' || string_agg(CAST(itemid AS VARCHAR), ', ' ORDER BY itemid) AS label, "
                   f"NULL AS n FROM {d} WHERE {cond} GROUP BY label ORDER BY length(label), label LIMIT {int(limit)}")
        else:
            sql = (f"SELECT CAST(itemid AS VARCHAR) AS value, label, NULL AS n FROM {d} WHERE {cond} "
                   f"ORDER BY length(label), label, itemid LIMIT {int(limit)}")
        return sql, params
    if criterion == "medication":
        rx = n["prescriptions"]
        return _counted(f"r.{rx['name']}", f"{rx['table']} r", q, limit)
    return None  # pragma: no cover - SUGGESTED lists only the cases above
