"""/api/cohort: the criterion library for the form, run a spec (attrition, Table 1, SQL), save/load specs,
download the report and the subset as zip files.

Running goes through the build's sandboxed store. The report and subset write files, so they run on a
separate read-only (not sandboxed) store of the build, into a temporary folder that is zipped and removed.
"""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mimiclab.errors import MimiclabError
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
def suggest(request: Request, slug: str, criterion: str = Query(max_length=40), param: str = Query(max_length=40),
            q: str = Query("", max_length=100), limit: int = Query(20, ge=1, le=100)) -> dict:
    """Picker entries for the builder form: `value` to insert, `label` to show, `n` rows in the data (or null)."""
    from mimiclab.cohort.spec import SpecError
    from mimiclab.cohort.suggest import suggest_sql

    ds = dataset(wb(request), slug)
    try:
        made = suggest_sql(ds.family, criterion, param, q, limit)
    except SpecError:  # a schema family without cohorts (OMOP)
        made = None
    if made is None:
        return {"criterion": criterion, "param": param, "supported": False, "suggestions": []}
    t = ds.arrow(*made)
    rows = [{"value": str(v), "label": lab, "n": n} for v, lab, n in
            zip(t.column("value").to_pylist(), t.column("label").to_pylist(), t.column("n").to_pylist())]
    return {"criterion": criterion, "param": param, "supported": True, "suggestions": rows}


@router.post("/datasets/{slug}/cohort/run", summary="Run a cohort spec: attrition, Table 1, SQL, warnings")
def run(request: Request, slug: str, body: SpecIn) -> dict:
    c = _cohort_mod()
    spec = _load(body.spec)
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
    if not isinstance(data, dict):
        raise c.SpecError("a spec file is a mapping with unit, include and exclude.")
    spec = c.load_spec(data)
    return {"spec": spec.model_dump(mode="json", exclude_none=True)}


def _zip_folder(folder: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{prefix}/{p.relative_to(folder)}")
    return buf.getvalue()


def _export(request: Request, slug: str, body: SpecIn, what: str) -> Response:
    c = _cohort_mod()
    spec = _load(body.spec)
    build = wb(request).build(slug)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name).strip("-") or "cohort"
    cohort = c.Cohort.run(build, spec)  # opens its own read-only store: writing files needs file access
    try:
        with tempfile.TemporaryDirectory(prefix="mimiclab-web-") as tmp:
            out = Path(tmp) / name
            if what == "report":
                cohort.report(out)
            else:
                try:
                    cohort.subset(out)
                except ModuleNotFoundError:
                    raise MimiclabError("subset export is not available in this mimiclab version.") from None
            data = _zip_folder(out, f"{name}-{what}")
    finally:
        cohort.close()
    return Response(data, media_type="application/zip",
                    headers={"content-disposition": f'attachment; filename="{name}-{what}.zip"'})


@router.post("/datasets/{slug}/cohort/report", summary="The cohort report (ids, attrition, Table 1, flow, html) as zip")
def report(request: Request, slug: str, body: SpecIn) -> Response:
    return _export(request, slug, body, "report")


@router.post("/datasets/{slug}/cohort/subset", summary="The cohort's rows in PhysioNet's layout (csv.gz) as zip")
def subset(request: Request, slug: str, body: SpecIn) -> Response:
    return _export(request, slug, body, "subset")
