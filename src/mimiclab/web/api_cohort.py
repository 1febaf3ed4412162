"""/api/cohort: the criterion library for the form, run a spec (attrition, Table 1, SQL), save/load specs,
download the report and the subset as zip files.

Everything runs on the build's sandboxed store (through the workbench's Dataset) as heavy work: time-limited,
queued, stopped when the client leaves. The report and subset are written by Python (never by the database)
into a private temporary folder that is zipped and removed.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
import weakref
import zipfile
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mimiclab.web.api_data import wb
from mimiclab.web.api_patient import dataset
from mimiclab.web.core import frame_rows

router = APIRouter(prefix="/api", tags=["cohort"])


class SpecIn(BaseModel):
    spec: dict[str, Any] = Field(description="a cohort spec as in spec.yaml: name, unit, include, exclude")


class TextIn(BaseModel):
    text: str = Field(max_length=200_000)


def _cohort_mod():
    import mimiclab.cohort as cohort

    return cohort


def _load(spec: dict):
    c = _cohort_mod()
    data = {k: v for k, v in spec.items() if v not in (None, "")}
    return c.load_spec(data)


@router.get("/cohort/criteria", summary="Criterion types and their parameters (drives the builder form)")
def criteria() -> dict:
    c = _cohort_mod()
    return {"criteria": c.CRITERIA, "units": [{"name": "patient", "label": "patients"},
                                              {"name": "admission", "label": "admissions"},
                                              {"name": "stay", "label": "ICU stays"}]}


@router.get("/datasets/{slug}/cohort/suggest", summary="Values a criterion parameter can take, from the data")
async def suggest(request: Request, slug: str, criterion: str = Query(max_length=40),
                  param: str = Query(max_length=40), q: str = Query("", max_length=100),
                  limit: int = Query(20, ge=1, le=100)) -> dict:
    """Picker entries for the builder form: `value` to insert, `label` to show, `n` rows in the data (or null)."""
    return await wb(request).heavy(request, lambda: _suggest(request, slug, criterion, param, q, limit),
                                   what="the picker")


def _suggest(request: Request, slug: str, criterion: str, param: str, q: str, limit: int) -> dict:
    from mimiclab.cohort.spec import SpecError
    from mimiclab.cohort.suggest import matching, suggest_sql

    ds = dataset(wb(request), slug)
    try:
        vocab = _vocabulary(request, slug, ds.family, criterion, param)
        made = None if vocab is not None else suggest_sql(ds.family, criterion, param, q, limit)
    except SpecError:  # a schema family without cohorts (OMOP)
        vocab = made = None
    if vocab is not None:
        found = matching(vocab, q, limit, criterion)
    elif made is None:
        return {"criterion": criterion, "param": param, "supported": False, "suggestions": []}
    else:
        sql, params = made
        t = wb(request).store(slug).arrow(sql, params, portable=True)  # the cohort layer writes it portable
        found = list(zip(t.column("value").to_pylist(), t.column("label").to_pylist(), t.column("n").to_pylist(),
                         strict=True))
    rows = [{"value": str(v), "label": lab, "n": n} for v, lab, n in found]
    return {"criterion": criterion, "param": param, "supported": True, "suggestions": rows}


VOCABULARY_MAX = 50_000  # values kept per picker; a larger vocabulary is queried at each keystroke instead
_vocabularies: weakref.WeakKeyDictionary[Any, dict[tuple, list | None]] = weakref.WeakKeyDictionary()
_vocab_lock = threading.Lock()


def _vocabulary(request: Request, slug: str, family: str | None, criterion: str, param: str) -> list | None:
    """Every (value, label, n) of a picker, read once per build generation (a build is immutable under its
    `built_at` and `generation`; a rebuild gets new ones, and the old entries are dropped), or None: this
    picker is queried at each keystroke (no vocabulary, or more than VOCABULARY_MAX values)."""
    from mimiclab.cohort.suggest import VOCABULARY, vocabulary_sql

    if (criterion, param) not in VOCABULARY:
        return None
    w = wb(request)
    b = w.build(slug)
    gen = (b.slug, b.version, b.manifest.built_at, b.manifest.generation)
    with _vocab_lock:
        cache = _vocabularies.setdefault(w, {})
        key = (*gen, criterion, param)
        if key in cache:
            return cache[key]
    sql = vocabulary_sql(family, criterion, param, VOCABULARY_MAX)
    if sql is None:
        return None
    t = w.store(slug).arrow(sql, portable=True)
    rows = list(zip(t.column("value").to_pylist(), t.column("label").to_pylist(), t.column("n").to_pylist(),
                    strict=True))
    vocab = rows if len(rows) <= VOCABULARY_MAX else None
    with _vocab_lock:
        for old in [k for k in cache if k[:2] == gen[:2] and k[:4] != gen]:  # an older build of this dataset
            del cache[old]
        cache[key] = vocab
    return vocab


@router.post("/datasets/{slug}/cohort/run", summary="Run a cohort spec: attrition, Table 1, SQL, warnings")
async def run(request: Request, slug: str, body: SpecIn) -> dict:
    spec = _load(body.spec)
    return await wb(request).heavy(request, lambda: _run(request, slug, spec), what="the cohort")


def _run(request: Request, slug: str, spec) -> dict:
    c = _cohort_mod()
    ds = dataset(wb(request), slug)
    empty = None
    try:
        cohort = c.Cohort.run(ds, spec)
    except c.EmptyCohortError as exc:
        cohort, empty = exc.cohort, str(exc)
    att = cohort.attrition
    return {
        "name": spec.name, "unit": spec.unit, "unit_label": spec.unit_label, "n": int(att["n_after"].iloc[-1]),
        "attrition": frame_rows(att), "table1": frame_rows(cohort.table1) if not empty else None,
        "table1_note": cohort.table1_note, "sql": cohort.sql, "warnings": cohort.warnings, "empty": empty,
    }


@router.post("/cohort/spec.yaml", summary="A spec as the YAML file `mimiclab cohort` reads")
def to_yaml(body: SpecIn) -> Response:
    spec = _load(body.spec)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name).strip("-") or "cohort"
    return Response(spec.to_yaml(), media_type="application/yaml",
                    headers={"content-disposition": f'attachment; filename="{name}.yaml"'})


@router.post("/cohort/parse", summary="Validate a spec file's text (YAML or JSON) and return it as JSON")
def parse(body: TextIn) -> dict:
    c = _cohort_mod()
    try:
        data = yaml.safe_load(body.text)
    except yaml.YAMLError as exc:
        raise c.SpecError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise c.SpecError("not valid YAML: nested too deeply.") from None
    except (ValueError, TypeError) as exc:  # a value YAML cannot build (2001-13-45 as a date, huge integers)
        raise c.SpecError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise c.SpecError("a spec file is a mapping with unit, include and exclude.")
    spec = c.load_spec(body.text)  # the text again: line numbers in errors, and YAML aliases bounded
    return {"spec": spec.model_dump(mode="json", exclude_none=True)}


def _zip_folder(folder: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{prefix}/{p.relative_to(folder)}")
    return buf.getvalue()


def _export(request: Request, slug: str, spec, what: str, whole_patients: bool = False) -> bytes:
    c = _cohort_mod()
    ds = dataset(wb(request), slug)  # the sandboxed store: the files below are written by Python
    name = _name(spec)
    cohort = c.Cohort.run(ds, spec)
    with tempfile.TemporaryDirectory(prefix="mimiclab-web-") as tmp:
        out = Path(tmp) / name
        if what == "report":
            cohort.report(out)
        else:
            cohort.subset(out, whole_patients=whole_patients)
        return _zip_folder(out, f"{name}-{what}")


def _name(spec) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name).strip("-") or "cohort"


async def _export_response(request: Request, slug: str, body: SpecIn, what: str, whole_patients: bool = False) -> Response:
    spec = _load(body.spec)
    w = wb(request)
    data = await w.heavy(request, lambda: _export(request, slug, spec, what, whole_patients), what=f"the cohort {what}",
                         seconds=w.limits.export_seconds)
    return Response(data, media_type="application/zip",
                    headers={"content-disposition": f'attachment; filename="{_name(spec)}-{what}.zip"'})


@router.post("/datasets/{slug}/cohort/report", summary="The cohort report (ids, attrition, Table 1, flow, html) as zip")
async def report(request: Request, slug: str, body: SpecIn) -> Response:
    return await _export_response(request, slug, body, "report")


@router.post("/datasets/{slug}/cohort/subset", summary="The cohort's rows in PhysioNet's layout (csv.gz) as zip")
async def subset(request: Request, slug: str, body: SpecIn,
                 whole_patients: bool = Query(False, description="every row of the cohort's patients, not only of "
                                                                 "its units: the same spec selects the same units "
                                                                 "on the subset")) -> Response:
    return await _export_response(request, slug, body, "subset", whole_patients)
