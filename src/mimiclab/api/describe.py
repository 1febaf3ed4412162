"""Column summaries and distributions, computed by the store (any backend: portable SQL) so whole tables
never reach Python.

``counts`` is the one distribution engine: ``Dataset.distribution`` (Python, CLI plots) and the workbench's
/distribution endpoint both present its result, so they always agree.

* numeric kind: columns ``[by], bin, bin_start, bin_end, count`` — equal-width bins with exactly
  ``numpy.histogram``'s edges and edge rules (last bin closed), every bin listed (zeros included);
  timestamps/dates are binned on their time axis and bin edges come back as timestamps;
* categorical kind: columns ``[by], value, count`` — the `top` most frequent values (ties by value), the
  rest summed into ``"(other)"``.

``kind="auto"`` is categorical for text and booleans, and for integer columns with at most 10 distinct
values (flags, codes); numeric otherwise. Nulls are left out and counted in ``df.attrs["nulls"]``;
``df.attrs["kind"]`` says which kind was used. With ``by``, groups come most rows first (ties by value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mimiclab.api._common import ident, number_text, qname
from mimiclab.errors import MimiclabError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mimiclab.api.dataset import Dataset

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "REAL")
INTEGER = NUMERIC[:9]
FLOATING = ("FLOAT", "DOUBLE", "REAL")  # after _base(): PostgreSQL's and BigQuery's names map to these
TEMPORAL = ("TIMESTAMP", "DATE", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
APPROX_DISTINCT_ABOVE = 5_000_000  # rows; beyond this distinct counts are HyperLogLog estimates
TOP_VALUES = 5

# the same classes under PostgreSQL's and BigQuery's names (a store reports its own database's types)
_ALIASES = {"SMALLINT": "SMALLINT", "INT2": "SMALLINT", "INT4": "INTEGER", "INT": "INTEGER", "INT8": "BIGINT",
            "INT64": "BIGINT", "FLOAT4": "REAL", "FLOAT8": "DOUBLE", "DOUBLE PRECISION": "DOUBLE",
            "FLOAT64": "DOUBLE", "NUMERIC": "DECIMAL", "BIGNUMERIC": "DECIMAL",
            "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP", "DATETIME": "TIMESTAMP", "BOOL": "BOOLEAN",
            "TEXT": "VARCHAR", "STRING": "VARCHAR", "CHARACTER VARYING": "VARCHAR",
            "TIME WITHOUT TIME ZONE": "TIME"}


def _base(t: str) -> str:
    b = str(t).upper().split("(")[0].strip()
    return _ALIASES.get(b, b)


def is_floating(t: str) -> bool:
    """A floating-point column type, in any backend's spelling."""
    return _base(t) in FLOATING


def _is_numeric(t: str) -> bool:
    return _base(t) in NUMERIC or _base(t).startswith("DECIMAL")


def describe(ds: Dataset, qualified: str) -> pd.DataFrame:
    import pandas as pd

    store = ds.store
    cols = store.columns(qualified)
    tbl = qname(qualified)
    n = int(store.scalar(f"SELECT count(*) FROM {tbl}", portable=True) or 0)
    # PostgreSQL has no approximate distinct count: it counts exactly, however long that takes
    approx = n > APPROX_DISTINCT_ABOVE and store.dialect != "postgres"
    parts: list[str] = []
    for c, t in cols:
        q = ident(c)
        distinct = f"approx_count_distinct({q})" if approx else f"count(DISTINCT {q})"
        ordered = _is_numeric(t) or _base(t) in TEMPORAL or _base(t) == "TIME"
        if _base(t) in ("FLOAT", "DOUBLE", "REAL"):  # 169000, not DuckDB's 169000.0 (PostgreSQL's, the file's)
            mn, mx = number_text(f"min({q})"), number_text(f"max({q})")
        else:
            mn = f"CAST(min({q}) AS VARCHAR)" if ordered else "NULL::VARCHAR"
            mx = f"CAST(max({q}) AS VARCHAR)" if ordered else "NULL::VARCHAR"
        i = len(parts)
        parts.append(f"count({q}) AS n{i}, {distinct} AS d{i}, {mn} AS lo{i}, {mx} AS hi{i}")
    row = store.arrow(f"SELECT {', '.join(parts)} FROM {tbl}", portable=True).to_pylist()[0] if cols else {}
    vals = list(row.values())
    cat = ds._catalog_table(qualified)
    out = []
    for i, (c, t) in enumerate(cols):
        nonnull, distinct, mn, mx = vals[4 * i: 4 * i + 4]
        top = None
        if not (_is_numeric(t) or _base(t) in TEMPORAL or _base(t) == "TIME") and n:
            q = ident(c)
            pairs = store.arrow(
                f"SELECT {q} AS v, count(*) AS n FROM {tbl} WHERE {q} IS NOT NULL GROUP BY 1 "
                f"ORDER BY n DESC, v LIMIT {TOP_VALUES}", portable=True).to_pylist()
            top = ", ".join(f"{p['v']} ({p['n']:,})" for p in pairs)
        desc = ""
        if cat is not None:
            desc = next((cc.description for cc in cat.columns if cc.name == c), "")
        out.append({"column": c, "type": t, "null_pct": round(100.0 * (n - nonnull) / n, 2) if n else 0.0,
                    "distinct": int(distinct or 0), "min": mn, "max": mx, "top_values": top, "description": desc})
    df = pd.DataFrame(out, columns=["column", "type", "null_pct", "distinct", "min", "max", "top_values",
                                    "description"])
    df.attrs.update(table=qualified, rows=n, distinct_is_approx=approx)
    return df


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """numpy.histogram's edges for data spanning [lo, hi] (a zero-width range widens by 0.5 each side)."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1, endpoint=True)


def bin_index_sql(x: str, bins: int) -> tuple[str, str]:
    """Portable SQL for numpy.histogram's bin (0-based) of `x`, given the edges' $lo, $step and $norm.

    numpy computes trunc((x - lo) * bins / (hi - lo)), then corrects floating-point rounding by comparing x
    with the edges themselves: np.linspace's edges are exactly `i * step + lo` (the last one is hi, and the
    last bin is closed), so the same doubles are computed here."""
    n = int(bins)
    raw = f"least(CAST(trunc(({x} - $lo) * $norm) AS BIGINT), {n - 1})"
    return (f"CASE WHEN {x} < CAST(i AS DOUBLE) * $step + $lo THEN i - 1 "
            f"WHEN i <> {n - 1} AND {x} >= CAST(i + 1 AS DOUBLE) * $step + $lo THEN i + 1 ELSE i END"), raw


@dataclass
class Counts:
    """What the one distribution engine found; Dataset.distribution and the workbench present it.

    `groups`: the values of `by` as text (None: missing), most rows first (ties by value), at most
    `max_groups` of them and then "(other)" for the rest; `[None]`-free `["all"]` without `by`.
    numeric: `edges` (bins + 1; seconds since 1970 for times) and `counts[group][bin]`;
    categorical: `categories` (the `top` most frequent values, ties by value, then "(other)") and
    `counts[group][category]`.
    """

    kind: str  # numeric | categorical | empty
    type: str
    temporal: bool
    rows: int
    nulls: int
    groups: list
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    integer: bool = False  # an integer column whose bins are exactly one unit wide

    @property
    def grouped(self) -> bool:
        return self.groups != ["all"]


def kind_of(ctype: str, kind: str, distinct_at_most_10, whole_levels=None) -> str:
    """The one `kind` rule: categorical for text and booleans, for integer columns with at most 10
    distinct values (flags, codes), and for floating-point columns holding at most 10 whole numbers (levels
    stored as DOUBLE, as ED triage's acuity 1-5 is); numeric for other numbers and times.
    `distinct_at_most_10()` is asked only for integer columns, `whole_levels()` only for floating ones."""
    if kind not in ("auto", "numeric", "categorical"):
        raise MimiclabError(f"kind must be auto, numeric or categorical, not {kind!r}")
    numeric = _is_numeric(ctype) or _base(ctype) in TEMPORAL
    if kind == "numeric" and not numeric:
        raise MimiclabError(f"the column is {ctype}: not numeric; use kind='categorical'")
    if kind != "auto":
        return kind
    if not numeric:
        return "categorical"
    if _base(ctype) in INTEGER and distinct_at_most_10():
        return "categorical"
    if _base(ctype) in FLOATING and whole_levels is not None and whole_levels():
        return "categorical"
    return "numeric"


def counts(store, qualified: str, column: str, ctype: str, by: str | None = None, bins: int = 50,
           kind: str = "auto", top: int = 30, max_groups: int | None = None) -> Counts:
    """The single distribution engine (API, CLI plots and the workbench): portable SQL on any store.

    Numbers and times: equal-width bins with numpy.histogram's edges and edge rules; categories: the `top`
    most frequent values plus "(other)". Names are the caller's checked column names."""
    if int(bins) < 1:
        raise MimiclabError("bins must be at least 1")
    bins, top = int(bins), int(top)
    tbl, c = qname(qualified), ident(column)
    temporal = _base(ctype) in TEMPORAL

    def few() -> bool:
        nd = store.scalar(f"SELECT count(*) FROM (SELECT DISTINCT {c} FROM {tbl} WHERE {c} IS NOT NULL "
                          f"LIMIT 11) AS s", portable=True)
        return int(nd or 0) <= 10

    span: list = []  # a floating column's (min, max), asked once: the numeric path needs them too

    def whole_levels() -> bool:
        lo_, hi_ = store.arrow(f"SELECT min(CAST({c} AS DOUBLE)) AS lo, max(CAST({c} AS DOUBLE)) AS hi FROM {tbl}",
                               portable=True).to_pylist()[0].values()
        span[:] = [lo_, hi_]
        if lo_ is None or not (math.isfinite(lo_) and math.isfinite(hi_)) or hi_ - lo_ > 9 \
                or lo_ != math.floor(lo_) or hi_ != math.floor(hi_):
            return False  # more than 10 whole numbers could lie between (or a fraction at an end)
        frac = store.scalar(f"SELECT sum(CASE WHEN {c} <> floor({c}) THEN 1 ELSE 0 END) FROM {tbl}", portable=True)
        return int(frac or 0) == 0

    try:
        kind = kind_of(ctype, kind, few, whole_levels)
    except MimiclabError as exc:
        raise MimiclabError(f"{qualified}.{column}: {exc}") from None
    rows, nulls = store.arrow(f"SELECT count(*) AS n, count(*) - count({c}) AS nulls FROM {tbl}",
                              portable=True).to_pylist()[0].values()
    rows, nulls = int(rows or 0), int(nulls or 0)
    params: dict = {}
    if by is None:
        gexpr, groups = "'all'", ["all"]
    else:
        gtext = f"CAST({ident(by)} AS VARCHAR)"
        found = store.arrow(
            f"SELECT g, count(*) AS n FROM (SELECT {gtext} AS g FROM {tbl}) AS s GROUP BY g "
            f"ORDER BY n DESC, g" + (f" LIMIT {int(max_groups) + 1}" if max_groups else ""),
            portable=True).to_pylist()
        groups = [r["g"] for r in found]
        if max_groups and len(groups) > max_groups:
            groups = groups[:max_groups]
            keep = [g for g in groups if g is not None]
            params.update({f"g{i}": g for i, g in enumerate(keep)})
            inlist = ", ".join(f"$g{i}" for i in range(len(keep))) or "NULL"
            # NULL is its own group ("(missing)") only when it is among the largest; else it is "(other)"
            # (it had been left out of every series: 311 of emar's rows grouped by event_txt)
            gexpr = ("CASE " + (f"WHEN {gtext} IS NULL THEN NULL " if None in groups else "")
                     + f"WHEN {gtext} IN ({inlist}) THEN {gtext} ELSE '(other)' END")
            groups.append("(other)")
        else:
            gexpr = gtext
    out = Counts(kind=kind, type=ctype, temporal=temporal, rows=rows, nulls=nulls, groups=groups)
    if kind == "categorical":
        # whole numbers of a DOUBLE as the file writes them ("2", not DuckDB's "2.0"), on every backend
        v = number_text(c) if _base(ctype) in FLOATING else f"CAST({c} AS VARCHAR)"
        top_rows = store.arrow(
            f"SELECT v, count(*) AS n FROM (SELECT {v} AS v FROM {tbl} WHERE {c} IS NOT NULL) AS s "
            f"GROUP BY v ORDER BY n DESC, v LIMIT {top + 1}", portable=True).to_pylist()
        keep = [r["v"] for r in sorted(top_rows, key=lambda r: (-r["n"], r["v"]))][:top]
        if not keep:
            out.kind = "empty"
            return out
        params.update({f"k{i}": k for i, k in enumerate(keep)})
        label = (f"CASE WHEN {v} IN ({', '.join(f'$k{i}' for i in range(len(keep)))}) THEN {v} "
                 f"ELSE '(other)' END")
        res = store.arrow(
            f"SELECT g, v, count(*) AS n FROM (SELECT {gexpr} AS g, {label} AS v FROM {tbl} "
            f"WHERE {c} IS NOT NULL) AS s GROUP BY g, v", params, portable=True).to_pylist()
        out.categories = keep + (["(other)"] if any(r["v"] == "(other)" for r in res) else [])
        idx = {k: i for i, k in enumerate(out.categories)}
        out.counts = {g: [0] * len(out.categories) for g in groups}
        for r in res:
            out.counts.setdefault(r["g"], [0] * len(out.categories))[idx[r["v"]]] += int(r["n"])
        return out
    # whole seconds since 1970 (MIMIC's times are whole seconds): the same number on every backend
    x = (f"CAST(date_diff('second', TIMESTAMP '1970-01-01 00:00:00', CAST({c} AS TIMESTAMP)) AS DOUBLE)"
         if temporal else f"CAST({c} AS DOUBLE)")
    if span:
        lo, hi = span
    else:
        lo, hi = store.arrow(f"SELECT min(x) AS lo, max(x) AS hi FROM (SELECT {x} AS x FROM {tbl}) AS s",
                             portable=True).to_pylist()[0].values()
    if lo is None:
        out.kind = "empty"
        return out
    edges = histogram_edges(float(lo), float(hi), bins)
    first, last = float(edges[0]), float(edges[-1])
    params.update(lo=first, step=(last - first) / bins, norm=bins / (last - first))
    fix, raw = bin_index_sql("x", bins)
    res = store.arrow(
        f"SELECT g, b, count(*) AS n FROM (SELECT g, {fix} AS b FROM (SELECT g, x, {raw} AS i FROM "
        f"(SELECT {gexpr} AS g, {x} AS x FROM {tbl} WHERE {c} IS NOT NULL) AS s0) AS s1) AS s2 GROUP BY g, b",
        params, portable=True).to_pylist()
    out.edges = [float(e) for e in edges]
    out.integer = _base(ctype) in INTEGER and all(float(e).is_integer() for e in edges) and \
        (last - first) / bins == 1.0
    out.counts = {g: [0] * bins for g in groups}
    for r in res:
        out.counts.setdefault(r["g"], [0] * bins)[int(r["b"])] += int(r["n"])
    return out


def distribution(ds: Dataset, table: str, column: str, by: str | None = None, bins: int = 50,
                 kind: str = "auto", top: int = 30) -> pd.DataFrame:
    import pandas as pd

    if kind not in ("auto", "numeric", "categorical"):
        raise MimiclabError(f"kind must be auto, numeric or categorical, not {kind!r}")
    if int(bins) < 1:
        raise MimiclabError("bins must be at least 1")
    q = ds.resolve(table)
    col, ctype = ds.column(q, column)
    byc = ds.column(q, by)[0] if by else None
    res = counts(ds.store, q, col, ctype, by=byc, bins=bins, kind=kind, top=top)
    gcols = [byc] if byc else []
    rows = []
    if res.kind == "categorical":
        for g in res.groups:
            for v, n in zip(res.categories, res.counts[g], strict=True):
                if n:
                    rows.append(({byc: g} if byc else {}) | {"value": v, "count": n})
        df = pd.DataFrame(rows, columns=gcols + ["value", "count"])
        df["count"] = df["count"].astype("int64")
    elif res.kind == "numeric":
        e = res.edges
        for g in res.groups:
            for i, n in enumerate(res.counts[g]):
                rows.append(({byc: g} if byc else {}) | {"bin": i, "bin_start": e[i], "bin_end": e[i + 1],
                                                         "count": n})
        df = pd.DataFrame(rows, columns=gcols + ["bin", "bin_start", "bin_end", "count"])
        if res.temporal:
            for k in ("bin_start", "bin_end"):
                df[k] = pd.to_datetime((df[k] * 1e6).round().astype("int64"), unit="us")
    else:
        df = pd.DataFrame(columns=gcols + (["value", "count"] if kind == "categorical" or not (
            _is_numeric(ctype) or res.temporal) else ["bin", "bin_start", "bin_end", "count"]))
    df.attrs.update(kind=res.kind if res.kind != "empty" else ("categorical" if "value" in df.columns else "numeric"),
                    table=q, column=col, by=byc, nulls=res.nulls, type=ctype)
    return df
