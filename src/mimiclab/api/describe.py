"""Column summaries and distributions, computed in DuckDB so whole tables never reach Python.

``distribution`` is the data behind every distribution plot (Python, CLI and the workbench's plotly.js):

* numeric kind: columns ``[by], bin, bin_start, bin_end, count`` — equal-width bins with exactly
  ``numpy.histogram``'s edges and edge rules (last bin closed), every bin listed (zeros included);
  timestamps/dates are binned on their time axis and bin edges come back as timestamps;
* categorical kind: columns ``[by], value, count`` — the `top` most frequent values (ties by value), the
  rest summed into ``"(other)"``.

``kind="auto"`` is categorical for text and booleans, and for integer columns with at most 10 distinct
values (flags, codes); numeric otherwise. Nulls are left out and counted in ``df.attrs["nulls"]``;
``df.attrs["kind"]`` says which kind was used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mimiclab.api._common import frame, ident, qname
from mimiclab.errors import MimiclabError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mimiclab.api.dataset import Dataset

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "REAL")
INTEGER = NUMERIC[:9]
TEMPORAL = ("TIMESTAMP", "DATE", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
APPROX_DISTINCT_ABOVE = 5_000_000  # rows; beyond this distinct counts are HyperLogLog estimates
TOP_VALUES = 5


def _base(t: str) -> str:
    return t.upper().split("(")[0]


def _is_numeric(t: str) -> bool:
    return _base(t) in NUMERIC or _base(t).startswith("DECIMAL")


def describe(ds: Dataset, qualified: str) -> pd.DataFrame:
    import pandas as pd

    cols = ds.store.columns(qualified)
    tbl = qname(qualified)
    n = int(ds.store.scalar(f"SELECT count(*) FROM {tbl}") or 0)
    approx = n > APPROX_DISTINCT_ABOVE
    parts = []
    for c, t in cols:
        q = ident(c)
        distinct = f"approx_count_distinct({q})" if approx else f"count(DISTINCT {q})"
        ordered = _is_numeric(t) or _base(t) in TEMPORAL or _base(t) == "TIME"
        mn = f"CAST(min({q}) AS VARCHAR)" if ordered else "NULL::VARCHAR"
        mx = f"CAST(max({q}) AS VARCHAR)" if ordered else "NULL::VARCHAR"
        i = len(parts)
        parts.append(f"count({q}) AS n{i}, {distinct} AS d{i}, {mn} AS lo{i}, {mx} AS hi{i}")
    row = ds.store.arrow(f"SELECT {', '.join(parts)} FROM {tbl}").to_pylist()[0] if cols else {}
    vals = list(row.values())
    cat = ds._catalog_table(qualified)
    out = []
    for i, (c, t) in enumerate(cols):
        nonnull, distinct, mn, mx = vals[4 * i: 4 * i + 4]
        top = None
        if not (_is_numeric(t) or _base(t) in TEMPORAL or _base(t) == "TIME") and n:
            q = ident(c)
            pairs = ds.store.arrow(
                f"SELECT {q} AS v, count(*) AS n FROM {tbl} WHERE {q} IS NOT NULL GROUP BY 1 "
                f"ORDER BY n DESC, v LIMIT {TOP_VALUES}").to_pylist()
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


def bin_index_sql(x: str, bins: int) -> str:
    """SQL for numpy.histogram's bin of `x` given edges in the list parameter $edges (1-based in SQL)."""
    n = int(bins)
    raw = f"least(CAST(trunc(({x} - $edges[1]) / ($edges[{n + 1}] - $edges[1]) * {n}) AS BIGINT), {n - 1})"
    # numpy's correction for floating-point rounding: step down if below the bin's left edge, up if at or
    # beyond its right edge (except in the last, closed bin)
    return (f"(SELECT CASE WHEN {x} < list_extract($edges, i + 1) THEN i - 1 "
            f"WHEN i != {n - 1} AND {x} >= list_extract($edges, i + 2) THEN i + 1 ELSE i END "
            f"FROM (SELECT {raw} AS i))")


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
    tbl, c = qname(q), ident(col)
    g = ident(byc) if byc else None
    base = _base(ctype)
    temporal = base in TEMPORAL
    nulls = int(ds.store.scalar(f"SELECT count(*) - count({c}) FROM {tbl}") or 0)
    if kind == "auto":
        if _is_numeric(ctype) or temporal:
            kind = "numeric"
            if base in INTEGER:
                nd = ds.store.scalar(f"SELECT count(*) FROM (SELECT DISTINCT {c} FROM {tbl} "
                                     f"WHERE {c} IS NOT NULL LIMIT 11)")
                if nd <= 10:
                    kind = "categorical"
        else:
            kind = "categorical"
    elif kind == "numeric" and not (_is_numeric(ctype) or temporal):
        raise MimiclabError(f"{q}.{col} is {ctype}: not numeric; use kind='categorical'")

    gsel = f"CAST({g} AS VARCHAR) AS {ident(byc)}, " if g else ""
    gcols = [byc] if byc else []
    if kind == "categorical":
        vals = ds.store.arrow(
            f"SELECT CAST({c} AS VARCHAR) AS value, count(*) AS n FROM {tbl} WHERE {c} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, value LIMIT {int(top) + 1}").column("value").to_pylist()
        keep = vals[: int(top)]
        other = len(vals) > int(top)
        label = "CASE WHEN list_contains($keep, CAST({c} AS VARCHAR)) THEN CAST({c} AS VARCHAR) ELSE '(other)' END"
        sql = (f"SELECT {gsel}{label.format(c=c)} AS value, count(*) AS count FROM {tbl} "
               f"WHERE {c} IS NOT NULL GROUP BY ALL")
        df = frame(ds.store.arrow(sql, {"keep": keep})) if keep else pd.DataFrame(columns=gcols + ["value", "count"])
        order = {v: i for i, v in enumerate(keep + (["(other)"] if other else []))}
        df["_o"] = df["value"].map(order)
        df = df.sort_values(gcols + ["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
        df["count"] = df["count"].astype("int64")
    else:
        x = f"CAST(epoch_us(CAST({c} AS TIMESTAMP)) AS DOUBLE)" if temporal else f"CAST({c} AS DOUBLE)"
        lo, hi = ds.store.arrow(f"SELECT min({x}) AS lo, max({x}) AS hi FROM {tbl}").to_pylist()[0].values()
        if lo is None:
            df = pd.DataFrame(columns=gcols + ["bin", "bin_start", "bin_end", "count"])
        else:
            edges = histogram_edges(float(lo), float(hi), int(bins))
            sql = (f"SELECT {gsel}{bin_index_sql('x', int(bins))} AS bin, count(*) AS count FROM "
                   f"(SELECT {g + ', ' if g else ''}{x} AS x FROM {tbl} WHERE {c} IS NOT NULL) GROUP BY ALL")
            counts = frame(ds.store.arrow(sql, {"edges": [float(e) for e in edges]}))
            groups = sorted(counts[byc].dropna().unique().tolist()) + ([None] if counts[byc].isna().any() else []) \
                if byc else [None]
            rows = []
            for grp in groups:
                sub = counts if not byc else counts[counts[byc].isna()] if grp is None else counts[counts[byc] == grp]
                per = dict(zip(sub["bin"].astype(int), sub["count"].astype(int), strict=True))
                for i in range(int(bins)):
                    r = {byc: grp} if byc else {}
                    r.update(bin=i, bin_start=edges[i], bin_end=edges[i + 1], count=per.get(i, 0))
                    rows.append(r)
            df = pd.DataFrame(rows, columns=gcols + ["bin", "bin_start", "bin_end", "count"])
            if temporal:
                for k in ("bin_start", "bin_end"):
                    df[k] = pd.to_datetime(df[k].round().astype("int64"), unit="us")
    df.attrs.update(kind=kind, table=q, column=col, by=byc, nulls=nulls, type=ctype)
    return df
