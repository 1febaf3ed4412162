"""/api/.../patients: find a patient, their record, their stays and measured items, one item over time.

Built on the Python API (mimiclab.api Patient) over the build's sandboxed store, so the explorer and a
notebook show the same numbers. The page asks for the summary first (demographics, stays, items) and the
longer record afterwards, so the first chart is drawn before the tables arrive.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, model_validator

from mimiclab.catalog import workbench as wbcat
from mimiclab.errors import MimiclabError
from mimiclab.web.api_data import wb
from mimiclab.web.core import Workbench, frame_rows, jsonable, qualify, quote

router = APIRouter(prefix="/api", tags=["patients"])

MAX_ROWS = 2000
RECORD = ("admissions", "icustays", "transfers", "diagnoses", "procedures", "prescriptions", "microbiology", "ed_stays")


class FindQuery(BaseModel):
    # no lower bound: OMOP's 64-bit person and visit ids are negative as often as not
    subject_id: int | None = Field(None)
    hadm_id: int | None = Field(None)
    stay_id: int | None = Field(None)

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.subject_id, self.hadm_id, self.stay_id)) != 1:
            raise ValueError("give exactly one of subject_id, hadm_id, stay_id")
        return self


def dataset(w: Workbench, slug: str):
    return w.api(slug)


def _frame(df, name: str, family: str | None = None) -> dict:
    """A record table, its family's columns worth showing first (catalog/workbench/<family>.yaml) and only
    those; every column stays in the table browser."""
    if df is None or not len(df.columns):
        return {"columns": [], "types": [], "rows": [], "total": 0}
    show = wbcat.load(family).record_columns.get(name, ())
    cols = [c for c in show if c in df.columns] or list(df.columns)
    out = frame_rows(df[cols].head(MAX_ROWS))
    out["total"] = len(df)
    return out


@router.get("/datasets/{slug}/patients", summary="Patients to start from: most admissions and ICU stays first")
def patient_list(request: Request, slug: str, limit: int = Query(50, ge=1, le=500)) -> dict:
    ds = dataset(wb(request), slug)
    rows = frame_rows(ds.patient_list(limit))  # the API's own list: one computation for a notebook and the page
    return {"patients": [dict(zip(rows["columns"], r, strict=True)) for r in rows["rows"]],
            "id_name": ds.concepts.patient_id}


@router.get("/datasets/{slug}/patients/find", summary="subject_id of a patient given subject_id, hadm_id or stay_id")
def find(request: Request, slug: str, subject_id: int | None = Query(None), hadm_id: int | None = Query(None),
         stay_id: int | None = Query(None)) -> dict:
    fq = FindQuery(subject_id=subject_id, hadm_id=hadm_id, stay_id=stay_id)
    sid = dataset(wb(request), slug).find_patient(subject_id=fq.subject_id, hadm_id=fq.hadm_id, stay_id=fq.stay_id)
    return {"subject_id": jsonable(int(sid))}


@router.get("/datasets/{slug}/patients/{subject_id}", summary="Demographics, stays (timeline) and measured items")
def summary(request: Request, slug: str, subject_id: int) -> dict:
    p = wb(request).patient(slug, subject_id)
    stays = p.stays()
    items = p.items()
    ds = dataset(wb(request), slug)
    first = _first_item(items, ds.concepts.default_items)
    absent = [src.table for src in ds.concepts.timeline if src.items
              and getattr(ds.manifest.tables.get(src.table), "status", "not_loaded") != "loaded"]
    return {
        "first_item": first,
        "first_series": series_payload(p, first) if first is not None else None,
        "items_not_loaded": absent,  # measured-item tables that are empty in this build (file not downloaded)
        "subject_id": jsonable(p.subject_id),
        "demographics": {k: jsonable(v) for k, v in p.demographics.items()},
        "stays": frame_rows(stays),
        "items": frame_rows(items),
        "has_icu": bool(p.demographics.get("n_icustays")),
    }


@router.get("/datasets/{slug}/patients/{subject_id}/record",
            summary="Admissions, ICU stays, transfers, diagnoses, procedures, medications, microbiology, ED stays, notes")
def record(request: Request, slug: str, subject_id: int) -> dict:
    w = wb(request)
    p = w.patient(slug, subject_id)
    family = w.build(slug).manifest.family

    def one(name: str):
        try:
            return name, _frame(getattr(p, name), name, family)  # cached on the Patient
        except MimiclabError:  # this family maps no such table
            return name, _frame(None, name, family)

    # Independent point lookups: run them side by side (the store gives each thread its own cursor).
    with ThreadPoolExecutor(max_workers=4) as ex:
        out = dict(ex.map(one, RECORD))
    out["notes"] = notes(w, slug, p.subject_id)
    return out


@router.get("/datasets/{slug}/patients/{subject_id}/series", summary="One item (itemid or label) over time")
def series(request: Request, slug: str, subject_id: int, item: str = Query(..., min_length=1, max_length=200)) -> dict:
    return series_payload(wb(request).patient(slug, subject_id), item)


def _item_key(it) -> str:
    """The key the page and /series use for an item row: its itemid, else its label."""
    key = it["itemid"] if it["itemid"] is not None and str(it["itemid"]) not in ("<NA>", "nan") else it["label"]
    return str(int(key)) if isinstance(key, (int, float)) or str(key).isdigit() else str(key)


def _first_item(items, preferred: tuple[str, ...] = ()) -> str | None:
    """The item the page charts first: the first of the family's `default_items` (heart rate, creatinine, ...)
    the patient has numeric values of, else the one with most numeric values."""
    if items is None or not len(items) or "numeric" not in items.columns:
        return None
    rows = [it for _, it in items.sort_values(["numeric", "label"], ascending=[False, True], kind="stable").iterrows()
            if it["numeric"] > 0] or [items.iloc[0]]
    keys = [_item_key(it) for it in rows]
    labels = [str(it["label"]).lower() for it in rows]
    for want in preferred:
        if want in keys:
            return want
        if want.lower() in labels:
            return keys[labels.index(want.lower())]
    return keys[0]


def series_payload(p, item: str) -> dict:
    df = p.item_series(item)
    return {"item": item, "label": jsonable(df["label"].dropna().iloc[0]) if df["label"].notna().any() else item,
            "unit": jsonable(df["unit"].dropna().iloc[0]) if df["unit"].notna().any() else None,
            "series": frame_rows(df[["time", "value", "value_text", "unit", "source", "hadm_id", "stay_id"]])}


def notes(w: Workbench, slug: str, subject_id: int) -> dict:
    """Notes when a note table is loaded: in the dataset itself (MIMIC-III noteevents, OMOP note) or in another
    dataset the family names (a mimic-iv-note build for MIMIC-IV); see catalog/workbench/<family>.yaml."""
    spec = wbcat.load(w.build(slug).manifest.family)
    sources = [(slug, n) for n in spec.notes]  # (slug of the dataset holding the table, note source)
    for other, tables in spec.notes_from.items():
        for nb in w.builds():
            if nb.manifest.family == other:
                sources += [(nb.slug, n) for n in tables]
    items, available = [], False
    for src_slug, n in sources:
        e = w.build(src_slug).manifest.tables.get(n.table)
        if e is None or e.status != "loaded":
            continue
        available = True
        sub = f"CAST({quote(n.subtitle)} AS VARCHAR)" if n.subtitle else "CAST(NULL AS VARCHAR)"
        rows = w.store(src_slug).arrow(
            f"SELECT {quote(n.time)} AS time, CAST({quote(n.title)} AS VARCHAR) AS title, {sub} AS subtitle, "
            f"{quote(n.text)} AS text FROM {qualify(n.table)} WHERE {quote(n.patient_id)} = ? "
            f"ORDER BY time LIMIT 200", [subject_id], portable=True).to_pylist()
        items += [{k: jsonable(v) for k, v in r.items()} for r in rows]
    items.sort(key=lambda n: (n["time"] is None, str(n["time"])))  # discharge and radiology notes interleaved
    return {"available": available, "notes": items, "hint": None if available else spec.notes_hint}

