"""/api: datasets, access, data dictionary, table browser (rows, stats, CSV) and distributions.

Every query runs on the dataset's sandboxed store, whatever the backend: they are written in DuckDB's spelling
and run `portable=True` (the store renders them for PostgreSQL or BigQuery). User values reach SQL only as
bound parameters, converted in Python to the column's catalog type (so a bad value is a message before any
query); identifiers only after being matched against the catalog's column list.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from mimiclab import catalog, cells
from mimiclab.api._common import number_text
from mimiclab.api.describe import is_floating
from mimiclab.catalog import CatalogError
from mimiclab.catalog import workbench as wbcat
from mimiclab.errors import QueryError
from mimiclab.sqltext import ilike
from mimiclab.web.core import Workbench, arrow_rows, jsonable, qualified, qualify, quote

router = APIRouter(prefix="/api", tags=["data"])

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "DOUBLE", "FLOAT", "REAL", "DECIMAL",
           "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
TEMPORAL = ("TIMESTAMP", "DATE")
# ne is "everything but": an empty cell is not the value, so it stays (with `=`, "≠ URGENT" and "= URGENT"
# together missed the rows without a value)
FILTER_OPS = {"eq": "=", "ne": "IS DISTINCT FROM", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "contains": "ILIKE",
              "starts": "ILIKE", "null": "IS NULL", "notnull": "IS NOT NULL"}


def wb(request: Request) -> Workbench:
    return request.app.state.workbench


def _human_cmd(ds: catalog.Dataset) -> list[str]:
    if ds.is_demo:
        return [f"mimiclab download {ds.slug}", f"mimiclab build {ds.slug}"]
    if ds.family is None:
        return [f"mimiclab download {ds.slug}"]
    return [f"mimiclab download {ds.slug}", f"mimiclab build {ds.slug}"]


def _access_steps(ds: catalog.Dataset) -> list[dict]:
    if ds.access == "open":
        return []
    from mimiclab.physionet import access as acc

    return [{"text": t, "link": link} for t, link in acc.steps(ds.slug, ds.default_version)]


# -- datasets -----------------------------------------------------------------------------------------
@router.get("/datasets", summary="Built datasets, and those available on PhysioNet with how to get them")
def list_datasets(request: Request) -> dict:
    """`built` first (what the home page leads with), each with the pages that cannot work on it and why;
    `available`: what PhysioNet publishes and is not built here; `local`: generated on this machine (synthetic),
    never listed as a PhysioNet download."""
    from mimiclab.web.pages import unsupported

    w = wb(request)
    built = []
    for b in w.builds():
        m = b.manifest
        try:
            ds = catalog.get(b.slug)
            modules = list(ds.modules_for(b.version))
        except CatalogError:
            ds, modules = None, sorted({t.module for t in m.tables.values()})
        built.append({
            "slug": b.slug, "version": b.version, "title": m.title or (ds.title if ds else b.slug),
            "modules": modules, "tables": len(m.tables), "loaded_tables": len(m.loaded),
            "rows": sum(t.rows for t in m.tables.values()), "built_at": m.built_at, "seconds": m.seconds,
            "synthetic": m.synthetic, "digest": m.digest(), "access": ds.access if ds else None,
            "not_loaded": [{"table": t.qualified, "status": t.status, "error": t.error,
                            "expected_rows": t.expected_rows} for t in m.not_loaded],
            "demo_of": ds.demo_of if ds else None,
            "unsupported": unsupported(w, b.slug),
        })
    have = {b["slug"] for b in built}
    available, local = [], []
    for ds in catalog.datasets():
        if ds.slug in have:
            continue
        if ds.access == "local":
            local.append({"slug": ds.slug, "title": ds.title, "access": ds.access,
                          "commands": ["mimiclab demo --synthetic"]})
            continue
        v = ds.version()
        available.append({
            "slug": ds.slug, "title": ds.title, "short": ds.short, "access": ds.access,
            "versions": [x.version for x in ds.versions], "default_version": ds.default_version,
            "size_bytes": v.size_bytes, "page": ds.page, "has_tables": ds.family is not None,
            "modules": list(ds.modules_for()), "demo_of": ds.demo_of, "commands": _human_cmd(ds),
            "steps": _access_steps(ds),
        })
    return {"built": built, "available": available, "local": local, "default": w.current()}


@router.get("/datasets/{slug}", summary="One built dataset: manifest summary and per-table status")
def dataset_info(request: Request, slug: str) -> dict:
    b = wb(request).build(slug)
    m = b.manifest
    return {"slug": b.slug, "version": b.version, "title": m.title, "synthetic": m.synthetic,
            "built_at": m.built_at, "digest": m.digest(), "source": m.source,
            "tables": [{"table": k, "module": t.module, "status": t.status, "rows": t.rows,
                        "expected_rows": t.expected_rows, "error": t.error} for k, t in m.tables.items()]}


class AccessOut(BaseModel):
    slug: str
    version: str
    state: str
    ok: bool
    message: str


@router.post("/access/{slug}", summary="Ask PhysioNet now whether this machine's login can download a dataset",
             response_model=AccessOut)
def check_access(slug: str) -> AccessOut:
    """The only route that talks to the network, and only when the user presses the button."""
    from mimiclab import physionet

    ds = catalog.get(slug)
    st = physionet.check_access(ds.slug)
    return AccessOut(slug=st.slug, version=st.version, state=st.state, ok=st.ok, message=st.message)


# -- dictionary ---------------------------------------------------------------------------------------
@router.get("/datasets/{slug}/dictionary", summary="Every table and column with type and description")
def dictionary(request: Request, slug: str) -> dict:
    b = wb(request).build(slug)
    ds = catalog.get(b.slug)
    fam = ds.schema_family()
    modules = []
    for mod in fam.modules if fam else ():
        if mod.name not in ds.modules_for(b.version):
            continue
        tables = []
        for t in ds.tables(b.version, modules=[mod.name]):
            key = qualified(ds, t)
            e = b.manifest.tables.get(key)
            tables.append({
                "table": key, "name": t.name, "description": t.description, "kind": t.kind,
                "status": e.status if e else "not_loaded", "rows": e.rows if e else 0,
                "primary_key": list(t.primary_key), "patient_key": t.patient_key,
                "columns": [{"name": c.name, "type": c.type, "description": c.description}
                            for c in t.columns_for(b.version)],
            })
        modules.append({"module": mod.name, "db_schema": mod.db_schema, "description": mod.description,
                        "tables": tables})
    return {"slug": b.slug, "version": b.version, "modules": modules}


@router.get("/datasets/{slug}/lookups", summary="Searchable dictionary tables (d_items, d_labitems, ICD ...)")
def lookups(request: Request, slug: str) -> dict:
    """The family's dictionary tables (catalog/workbench/<family>.yaml), in the order listed there."""
    b = wb(request).build(slug)
    ds = catalog.get(b.slug)
    tables = {t.name: t for t in ds.tables(b.version)}
    out = []
    for lk in wbcat.load(ds.family).lookups:
        t = tables.get(lk.table)
        if t is not None:
            e = b.manifest.tables.get(qualified(ds, t))
            out.append({"table": qualified(ds, t), "name": t.name, "label": lk.label,
                        "rows": e.rows if e else 0, "status": e.status if e else "not_loaded"})
    return {"lookups": out}


@router.get("/datasets/{slug}/lookups/{table}", summary="Search one dictionary table by code or words")
def lookup_search(request: Request, slug: str, table: str, q: str = Query("", max_length=200),
                  limit: int = Query(50, ge=1, le=500)) -> dict:
    w = wb(request)
    b, t = w.table(slug, table)
    key = qualified(catalog.get(b.slug), t)
    if not _loaded(b, key):
        return {"columns": [c.name for c in t.columns_for(b.version)], "types": [], "rows": [], "truncated": False}
    st = w.store(slug)
    cols = t.columns_for(b.version)
    text = [c.name for c in cols if c.type.startswith("VARCHAR")]
    nums = [c.name for c in cols if c.type in ("INTEGER", "BIGINT", "SMALLINT")]
    where = ""
    params: list[Any] = []
    words = [x for x in q.split() if x][:6]
    if words:
        parts = []
        for word in words:
            alts: list[str] = []
            for c in text:
                cond, param = ilike(quote(c), word)
                alts.append(cond)
                params.append(param)
            if word.isdigit():
                alts += [f"{quote(c)} = ?" for c in nums]
                params += [int(word)] * len(nums)
            parts.append("(" + " OR ".join(alts or ["false"]) + ")")
        where = "WHERE " + " AND ".join(parts)
    order = ("ORDER BY " + ", ".join(quote(c) for c in t.primary_key)) if t.primary_key else ""
    sql = f"SELECT * FROM {qualify(key)} {where} {order} LIMIT {int(limit) + 1}"
    res = arrow_rows(st.arrow(sql, params, portable=True))
    res["truncated"] = len(res["rows"]) > limit
    res["rows"] = res["rows"][:limit]
    return res


# -- table browser ------------------------------------------------------------------------------------
class Filter(BaseModel):
    column: str
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "starts", "null", "notnull"]
    value: str | None = None


def parse_filters(raw: list[str]) -> list[Filter]:
    """`column:op:value` (value may itself contain ':'), as the table page writes them into the URL."""
    out = []
    for item in raw:
        parts = item.split(":", 2)
        if len(parts) < 2:
            raise QueryError(f"filter {item!r}: expected column:op:value (e.g. subject_id:eq:10000032).")
        try:
            out.append(Filter.model_validate({"column": parts[0], "op": parts[1],
                                              "value": parts[2] if len(parts) > 2 else None}))
        except ValueError:
            raise QueryError(f"filter {item!r}: unknown operator {parts[1]!r}; use one of "
                             f"{', '.join(FILTER_OPS)}.") from None
    return out


def _where(filters: list[Filter], types: dict[str, str], q: str = "") -> tuple[str, list]:
    clauses, params = [], []
    for f in filters:
        if f.column not in types:
            raise QueryError(f"no column {f.column!r}; columns: {', '.join(types)}.")
        col, typ = quote(f.column), types[f.column]
        if f.op in ("null", "notnull"):
            clauses.append(f"{col} {FILTER_OPS[f.op]}")
            continue
        if f.value is None or f.value == "":
            raise QueryError(f"filter on {f.column}: a value is needed for {f.op!r}.")
        if f.op in ("contains", "starts"):
            # a DOUBLE as the file writes it: DuckDB's CAST spells 15 as "15.0", so `contains .0` matched
            # every whole number (50,277 labevents rows against the file's 1,336)
            as_text = number_text(col) if is_floating(typ) else f"CAST({col} AS VARCHAR)"
            cond, param = ilike(as_text, f.value, anywhere=f.op == "contains")
            clauses.append(cond)
            params.append(param)
        else:
            clauses.append(f"{col} {FILTER_OPS[f.op]} ?")
            params.append(typed_value(f.value, typ, f.column))
    if q.strip():
        text = [c for c, t in types.items() if t.startswith("VARCHAR")]
        if text:
            conds = [ilike(quote(c), q.strip()) for c in text]
            clauses.append("(" + " OR ".join(cond for cond, _ in conds) + ")")
            params += [param for _, param in conds]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


INT_RANGE = {"TINYINT": 2**7, "SMALLINT": 2**15, "INTEGER": 2**31, "BIGINT": 2**63, "HUGEINT": 2**127}


def typed_value(value: str, typ: str, column: str) -> Any:
    """A filter value as a Python value of the column's type, bound as such on every backend. A value that does
    not fit the type is a message, not an empty result (nor a database error in another dialect)."""
    bad = QueryError(f"{value!r} is not a valid {typ} for column {column}.")
    base = typ.split("(")[0].strip().upper()
    v = value.strip()
    try:
        if base in INT_RANGE:
            n = int(v)
            if not -INT_RANGE[base] <= n < INT_RANGE[base]:
                raise bad
            return n
        if base in ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC"):
            return float(v)
        if base == "DATE":
            return dt.date.fromisoformat(v)
        if base.startswith("TIMESTAMP"):
            return dt.datetime.fromisoformat(v)
        if base == "BOOLEAN":
            if v.lower() in ("true", "t", "1", "yes"):
                return True
            if v.lower() in ("false", "f", "0", "no"):
                return False
            raise bad
    except ValueError:
        raise bad from None
    return value


def _loaded(b, key: str) -> bool:
    """Whether the dataset holds the table's rows: a table not loaded (file not downloaded) may not exist at all
    on a server, so the views answer from the catalog without asking."""
    e = b.manifest.tables.get(key)
    return e is not None and e.status == "loaded"


def _table_ctx(request: Request, slug: str, table: str):
    """The dataset, table, store and column types (from the catalog: the build is typed by it, and every
    backend spells types its own way)."""
    w = wb(request)
    b, t = w.table(slug, table)
    st = w.store(slug)
    key = qualified(catalog.get(b.slug), t)
    types = {c.name: c.type for c in t.columns_for(b.version)}
    return w, b, t, st, key, types


@router.get("/datasets/{slug}/tables", summary="Tables of a built dataset with row counts and status")
def tables(request: Request, slug: str) -> dict:
    b = wb(request).build(slug)
    ds = catalog.get(b.slug)
    out = []
    for t in ds.tables(b.version):
        key = qualified(ds, t)
        e = b.manifest.tables.get(key)
        out.append({"table": key, "module": t.module, "name": t.name, "description": t.description,
                    "rows": e.rows if e else 0, "status": e.status if e else "not_loaded", "kind": t.kind})
    return {"slug": b.slug, "version": b.version, "tables": out}


def _order(sort: str | None, desc: bool, types: dict, default: tuple[str, ...] = ()) -> str:
    """ORDER BY for the table views: the chosen column, else the primary key (stable pages), else none.

    A chosen column's ties are broken by the primary key (else by every column): with the column alone,
    LIMIT/OFFSET pages were cut from orders that differ between queries, so paging admissions by
    admission_type showed 84 rows twice and 84 never. The key costs ~12% on a filtered+sorted page of
    labevents (10% set: 79 against 71 ms); every column, on a table without a key (chartevents), ~2x."""
    key = list(default) if default and all(c in types for c in default) else []
    if sort:
        if sort not in types:
            raise QueryError(f"cannot sort by {sort!r}: no such column.")
        ties = [c for c in (key or types) if c != sort]
        return ", ".join([f"ORDER BY {quote(sort)} {'DESC' if desc else 'ASC'} NULLS LAST", *map(quote, ties)])
    if key:
        return "ORDER BY " + ", ".join(quote(c) for c in key)
    return ""


FILTERS_DOC = "filters column:op:value; op in eq ne lt le gt ge contains starts null notnull (ne keeps empty cells)"


@router.get("/datasets/{slug}/tables/{table}/rows", summary="Rows of a table: filter, sort, paginate")
async def rows(request: Request, slug: str, table: str,
         f: list[str] = Query([], description=FILTERS_DOC),  # noqa: B008 - FastAPI's parameter declaration, read once
         q: str = Query("", max_length=200, description="text search over the text columns"),
         sort: str | None = None, desc: bool = False,
         limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
         count: bool = Query(True, description="count the matching rows; false: `total` is null unless already "
                                               "known, and /count gives it")) -> dict:
    filters = parse_filters(f)
    return await wb(request).heavy(request, lambda: _rows(request, slug, table, filters, q, sort, desc, limit, offset,
                                                          count), what="the table view")


@router.get("/datasets/{slug}/tables/{table}/count", summary="How many rows of a table match the filters")
async def count_rows(request: Request, slug: str, table: str,
                     f: list[str] = Query([], description=FILTERS_DOC),  # noqa: B008 - FastAPI's parameter declaration, read once
                     q: str = Query("", max_length=200, description="text search over the text columns")) -> dict:
    """The table view asks for its rows first and the count after, so the rows show without waiting for a
    second scan of the table (at full scale labevents: 230 ms for the rows, 95 more for the count)."""
    filters = parse_filters(f)

    def run() -> dict:
        w, b, _t, st, key, types = _table_ctx(request, slug, table)
        where, params = _where(filters, types, q)
        return {"table": key, "total": _total(w, b, st, key, where, params, compute=True)}

    return await wb(request).heavy(request, run, what="the row count")


def _total(w, b, st, key: str, where: str, params: list, compute: bool) -> int | None:
    """Rows of `key` matching `where`: from the manifest when unfiltered, else counted once per filter and
    build (Workbench.remembered: paging and sorting ask again). Without `compute`, None unless known."""
    if not _loaded(b, key):
        return 0
    if not where:
        e = b.manifest.tables.get(key)
        return e.rows if e else None
    memo = _count_memo(key, where, params)
    if not compute:
        return w.recall(st, memo)
    return w.remembered(st, memo, lambda: st.scalar(f"SELECT count(*) FROM {qualify(key)} {where}", params, portable=True))


def _count_memo(key: str, where: str, params: list) -> tuple:
    return ("count", key, where, *((type(v).__name__, repr(v)) for v in params))  # repr: nan equals nan


def _rows(request: Request, slug: str, table: str, filters: list[Filter], q: str, sort: str | None, desc: bool,
          limit: int, offset: int, count: bool = True) -> dict:
    w, b, t, st, key, types = _table_ctx(request, slug, table)
    where, params = _where(filters, types, q)
    order = _order(sort, desc, types, t.primary_key)
    e = b.manifest.tables.get(key)
    data: dict[str, Any]
    if not _loaded(b, key):
        data = {"columns": list(types), "types": list(types.values()), "rows": []}
    else:
        data = arrow_rows(st.arrow(f"SELECT * FROM {qualify(key)} {where} {order} LIMIT {int(limit)} "
                                   f"OFFSET {int(offset)}", params, portable=True))
    n = len(data["rows"])
    if where and n < limit and (n or not offset):  # the last page is its own count: no count query
        total = w.remembered(st, _count_memo(key, where, params), lambda: offset + n)
    else:
        total = _total(w, b, st, key, where, params, compute=count)
    cat = {c.name: c.description for c in t.columns_for(b.version)}
    data.update({"table": key, "total": total, "limit": limit, "offset": offset, "status": e.status if e else None,
                 "descriptions": [cat.get(c, "") for c in data["columns"]], "sort": sort, "desc": desc})
    return data


@router.get("/datasets/{slug}/tables/{table}/stats", summary="Per-column statistics of a (filtered) table")
async def stats(request: Request, slug: str, table: str, column: str,
                f: list[str] = Query([]),  # noqa: B008 - FastAPI's parameter declaration, read once
                q: str = Query("", max_length=200)) -> dict:
    filters = parse_filters(f)
    return await wb(request).heavy(request, lambda: _stats(request, slug, table, column, filters, q),
                                   what="the column statistics")


# Above EXACT_MAX_ROWS rows in the (filtered) relation, what needs every value (distinct, mean, std, median,
# most frequent values) is computed on a sample of about SAMPLE_ROWS rows, and the answer says so: exact over
# labevents' 158M rows took 5 s, the sample 0.1 s. Rows, empty values, min and max stay exact (cheap: one
# pass without hashing or sorting, answered from the table's statistics by DuckDB when there is no filter).
EXACT_MAX_ROWS = 5_000_000
SAMPLE_ROWS = 1_000_000
ESTIMATED_FIELDS = ("distinct", "mean", "std", "median", "top")


def _stats(request: Request, slug: str, table: str, column: str, filters: list[Filter], q: str) -> dict:
    _, b, _t, st, key, types = _table_ctx(request, slug, table)
    if column not in types:
        raise QueryError(f"no column {column!r} in {key}.")
    where, params = _where(filters, types, q)
    typ = types[column]
    if not _loaded(b, key):
        return {"column": column, "type": typ, "rows": 0, "nulls": 0, "distinct": 0, "top": [], "estimated": None}
    c = quote(column)
    num, ordered = typ.startswith(NUMERIC), typ.startswith(NUMERIC) or typ.startswith(TEMPORAL)
    src = f"(SELECT {c} AS v FROM {qualify(key)} {where}) AS src"
    base = st.arrow(f"SELECT count(*) AS n, count(v) AS non_null{', min(v) AS min, max(v) AS max' if ordered else ''} "
                    f"FROM {src}", params, portable=True).to_pylist()[0]
    out: dict[str, Any] = {"column": column, "type": typ, "rows": base["n"], "nulls": base["n"] - base["non_null"]}
    if ordered:
        out.update(min=jsonable(base["min"]), max=jsonable(base["max"]))
    if base["n"] > EXACT_MAX_ROWS:
        out.update(_sampled_stats(st, key, c, where, params, num, base["n"], base["non_null"]))
        return out
    # exact here (the sampled path above says it estimates): DuckDB's approx_count_distinct gave 274 for
    # the demo's 275 hadm_ids, and 110,225 labevent_ids for 107,727 rows, under "estimated": null
    out["distinct"] = st.scalar(f"SELECT count(DISTINCT v) FROM {src}", params, portable=True)
    if num:
        out.update({k: jsonable(v) for k, v in st.arrow(
            f"SELECT avg(v) AS mean, stddev(v) AS std, median(v) AS median FROM {src}", params,
            portable=True).to_pylist()[0].items()})
    top = st.arrow(f"SELECT v AS value, count(*) AS n FROM {src} WHERE v IS NOT NULL GROUP BY v "
                   f"ORDER BY n DESC, v LIMIT 10", params, portable=True).to_pylist()
    out["top"] = [{"value": jsonable(r["value"]), "n": r["n"]} for r in top]
    out["estimated"] = None
    return out


def _sampled_stats(st, key: str, c: str, where: str, params: list, num: bool, rows: int, non_null: int) -> dict:
    """Distinct, mean, std, median and top values from a sample of the table, in one query.

    TABLESAMPLE SYSTEM is the one sampling clause DuckDB, PostgreSQL and BigQuery all have, and the cheap
    one: it reads only the chosen blocks of rows (DuckDB: 2,048-row vectors; PostgreSQL: pages; BigQuery:
    storage blocks), where a row-level sample (BERNOULLI, ORDER BY random()) reads every row. The table is
    sampled before the filter, at the share that leaves about SAMPLE_ROWS rows after it.

    Blocks hold rows stored together (one patient's, one hour's): such a value is missed or caught whole,
    and its count scaled up ~100-fold is nonsense. So the sample is drawn as SUBSAMPLES independent parts,
    and a top value is shown only if every part saw it (a value spread over the table is; one patient's
    rows are not), its count scaled from all of them. The distinct count is the values seen (a lower
    bound, never scaled up for the same reason)."""
    pct = min(100.0, 100.0 * SAMPLE_ROWS / max(rows, 1))
    part = f"FROM {qualify(key)} TABLESAMPLE SYSTEM ({pct / SUBSAMPLES:.6g} PERCENT) {where}"
    parts = " UNION ALL ".join(f"SELECT {c} AS v, {i} AS h {part}" for i in range(SUBSAMPLES))
    moments = ", avg(v) AS mean, stddev(v) AS std, median(v) AS median" if num else ""
    res = st.arrow(
        f"WITH s AS MATERIALIZED ({parts}), "
        "g AS (SELECT v, count(*) AS c, count(DISTINCT h) AS parts FROM s WHERE v IS NOT NULL GROUP BY v), "
        f"a AS (SELECT count(*) AS sampled{moments}, (SELECT count(*) FROM g) AS seen, "
        "(SELECT sum(c) FROM g) AS got, (SELECT count(DISTINCT h) FROM s WHERE v IS NOT NULL) AS parts_seen FROM s) "
        f"SELECT a.*, t.value, t.c, t.parts FROM a LEFT JOIN (SELECT v AS value, c, parts FROM g "
        f"ORDER BY c DESC, v LIMIT {TOP_CANDIDATES}) AS t ON true ORDER BY t.c DESC, t.value",
        params * SUBSAMPLES, portable=True).to_pylist()
    first = res[0]
    got, parts_seen = int(first["got"] or 0), int(first["parts_seen"] or 0)
    scale = non_null / got if got else 0.0
    cands = [(r["value"], int(r["c"]), int(r["parts"])) for r in res if r["c"] is not None]
    # too few parts with values to tell a spread value from a clustered one: no top values
    kept = [r for r in cands if r[2] == parts_seen] if parts_seen >= SUBSAMPLES // 2 else []
    floor = kept[9][1] if len(kept) >= 10 else 0  # the last value shown: count those left out above it
    out: dict[str, Any] = {"distinct": first["seen"],
                           "top": [{"value": jsonable(v), "n": round(n * scale)} for v, n, _ in kept[:10]]}
    if num:
        out.update({k: jsonable(first[k]) for k in ("mean", "std", "median")})
    out["estimated"] = {"fields": [f for f in ESTIMATED_FIELDS if num or f in ("distinct", "top")],
                        "from_rows": first["sampled"], "of": rows, "values_in_sample": got, "percent": round(pct, 4),
                        "method": f"TABLESAMPLE SYSTEM: blocks of rows, {SUBSAMPLES} independent parts",
                        "distinct_is_lower_bound": True,
                        "top_left_out": sum(1 for r in cands if r not in kept and r[1] >= floor)}
    return out


SUBSAMPLES = 8
TOP_CANDIDATES = 40


@router.get("/datasets/{slug}/tables/{table}/export.csv", summary="The filtered, sorted table view as CSV")
async def export_csv(request: Request, slug: str, table: str,
                     f: list[str] = Query([]),  # noqa: B008 - FastAPI's parameter declaration, read once
                     q: str = Query("", max_length=200), sort: str | None = None, desc: bool = False):
    filters = parse_filters(f)
    b, t = wb(request).table(slug, table)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", qualified(catalog.get(b.slug), t))

    def query() -> tuple[str, list]:
        _, b, _t, _st, key, types = _table_ctx(request, slug, table)
        where, params = _where(filters, types, q)
        if not _loaded(b, key):  # the header alone
            return "SELECT " + ", ".join(f"NULL AS {quote(c)}" for c in types) + " WHERE 1 = 0", []
        return f"SELECT * FROM {qualify(key)} {where} {_order(sort, desc, types, t.primary_key)}", params

    return await csv_export(request, slug, query, f"{name}.csv", portable=True)


async def csv_export(request: Request, slug: str, query: Any, filename: str, *,
                     portable: bool = False) -> StreamingResponse:
    """A query's result as a CSV download, written in full before the first byte is sent, so that the row,
    size and time caps end in a clear error rather than a silently cut file. `query` is (sql, params) or a
    function returning it (run in the worker, when it needs the database); `portable`: mimiclab's own query
    (DuckDB spelling, rendered for the store), not the user's."""
    w = wb(request)
    lim = w.limits

    def make():
        sql, params = query() if callable(query) else query
        return write_csv(w.store(slug), sql, params, lim, portable=portable)

    spool, rows, more = await w.heavy(request, make, what="the CSV export", seconds=lim.export_seconds)

    def chunks():
        try:
            while True:
                block = spool.read(1 << 20)
                if not block:
                    return
                yield block
        finally:
            spool.close()

    headers = {"content-disposition": f'attachment; filename="{filename}"', "x-mimiclab-rows": str(rows)}
    if more:
        headers["x-mimiclab-truncated"] = f"only the first {lim.csv_rows:,} rows"
    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8", headers=headers)


def write_csv(st, sql: str, params: list | None, lim, *, portable: bool = False) -> tuple[Any, int, bool]:
    """(spooled file at offset 0, rows written, whether rows were left out at the row cap). Refuses, with
    the cap in the message, an export larger than `lim.csv_bytes`; the time limit interrupts the query and
    this loop alike (the current Work)."""
    from mimiclab.store.work import current

    work = current()
    too_big = (f"the export is larger than {lim.csv_bytes // 2**20:,} MB, the workbench's limit: filter the rows or "
               "select fewer columns (or use `mimiclab sql` / Python).")
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 2**20, mode="w+b")  # noqa: SIM115 - handed to the response, closed there
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
    wr = csv.writer(text)
    n, more = 0, False
    try:
        with st.stream(sql, params, batch_rows=256, portable=portable) as reader:
            wr.writerow(reader.schema.names)
            for batch in reader:
                if work is not None:
                    work.check()
                if spool.tell() + batch.nbytes > 2 * lim.csv_bytes:  # refuse before formatting a huge batch
                    raise QueryError(too_big)
                take = min(batch.num_rows, lim.csv_rows - n)
                cols = [c.to_pylist() for c in batch.columns]
                for r in range(take):
                    wr.writerow([cells.text(col[r]) for col in cols])
                n += take
                if spool.tell() > lim.csv_bytes:
                    raise QueryError(too_big)
                if take < batch.num_rows:
                    more = True
                    break
        text.detach()
        spool.seek(0)
        return spool, n, more
    except BaseException:
        spool.close()
        raise


# -- population ---------------------------------------------------------------------------------------
class DistributionQuery(BaseModel):
    table: str = Field(max_length=200)
    column: str = Field(max_length=200)
    by: str | None = Field(None, max_length=200)
    bins: int = Field(30, ge=2, le=200)
    top: int = Field(25, ge=2, le=100)


@router.get("/datasets/{slug}/distribution", summary="Histogram or bar counts of a column, optionally grouped")
async def distribution(request: Request, slug: str, table: str, column: str, by: str | None = None,
                       bins: int = Query(30, ge=2, le=200), top: int = Query(25, ge=2, le=100)) -> dict:
    dq = DistributionQuery(table=table, column=column, by=by or None, bins=bins, top=top)
    return await wb(request).heavy(request, lambda: _distribution(request, slug, dq), what="the distribution")


def _distribution(request: Request, slug: str, dq: DistributionQuery) -> dict:
    _, _b, _t, st, key, types = _table_ctx(request, slug, dq.table)
    for c in (dq.column, dq.by):
        if c is not None and c not in types:
            raise QueryError(f"no column {c!r} in {key}; columns: {', '.join(types)}.")
    return compute_distribution(st, key, types, dq)


MAX_GROUPS = 8


def compute_distribution(st, key: str, types: dict[str, str], dq: DistributionQuery) -> dict:
    """Counts per bin (numbers, times) or per value (the rest), one series per group of `by` (the `MAX_GROUPS`
    largest, then "(other)"): the API's distribution engine (mimiclab.api.describe.counts), as JSON."""
    import datetime as dt

    from mimiclab.api.describe import counts

    res = counts(st, key, dq.column, types[dq.column], by=dq.by, bins=dq.bins, top=dq.top, max_groups=MAX_GROUPS)
    out = {"table": key, "column": dq.column, "type": types[dq.column], "by": dq.by, "rows": res.rows,
           "nulls": res.nulls}
    if res.kind == "empty":
        return {**out, "kind": "empty", "series": []}
    series = [{"name": "(missing)" if g is None else g, "counts": res.counts[g]} for g in res.groups]
    if res.kind == "categorical":
        return {**out, "kind": "categorical", "categories": res.categories, "series": series}
    edges: list = res.edges
    if res.temporal:
        edges = [(dt.datetime(1970, 1, 1) + dt.timedelta(seconds=e)).isoformat(sep=" ") for e in edges]
    return {**out, "kind": "temporal" if res.temporal else "numeric", "integer": res.integer, "edges": edges,
            "series": series}
