"""/api/.../sql: read-only SQL with a row cap and a time limit, plus example queries per schema family.

Two walls: the statement check (store.sqlguard) refuses anything but one reading statement, and the
statement runs on the build's sandboxed store (read-only database, no file or network access, settings
locked, one statement per call). Results stream out of the store and stop at the row cap, so
`SELECT * FROM chartevents` costs only the rows shown; the run counts as heavy work (queued, time-limited,
stopped when the client leaves).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from mimiclab import catalog
from mimiclab.store import sqlguard
from mimiclab.web.api_data import csv_export, wb
from mimiclab.web.core import arrow_rows

router = APIRouter(prefix="/api", tags=["sql"])


class SqlIn(BaseModel):
    sql: str = Field(max_length=sqlguard.MAX_SQL_CHARS)
    max_rows: int | None = Field(None, ge=1, le=100_000)


@router.post("/datasets/{slug}/sql", summary="Run one read-only statement; rows capped, time limited")
async def run_sql(request: Request, slug: str, body: SqlIn) -> dict:
    w = wb(request)
    cap = min(body.max_rows or w.limits.sql_rows, w.limits.sql_rows)
    checked = sqlguard.check(body.sql)

    def run() -> dict:  # rows to JSON in the worker too: a large result must not hold up the event loop
        table, truncated, secs = w.store(slug).capped(checked, cap, max_bytes=w.limits.sql_bytes)
        out = arrow_rows(table)
        out.update({"row_count": table.num_rows, "truncated": truncated, "max_rows": cap,
                    "seconds": round(secs, 4), "time_limit": w.limits.sql_seconds})
        return out

    return await w.heavy(request, run, what="the query")


@router.get("/datasets/{slug}/sql.csv", summary="The same statement's result as CSV (row, size and time caps)")
async def sql_csv(request: Request, slug: str, sql: str = Query(..., max_length=sqlguard.MAX_SQL_CHARS)):
    checked = sqlguard.check(sql)
    return await csv_export(request, slug, (checked, None), f"{slug}-query.csv")


EXAMPLES: dict[str, list[dict]] = {
    "mimiciv": [
        {"title": "Admissions per year group and type",
         "sql": "SELECT p.anchor_year_group, a.admission_type, count(*) AS admissions\n"
                "FROM mimiciv_hosp.admissions a\nJOIN mimiciv_hosp.patients p USING (subject_id)\n"
                "GROUP BY ALL\nORDER BY 1, 3 DESC;"},
        {"title": "ICU length of stay by first care unit",
         "sql": "SELECT first_careunit, count(*) AS stays,\n       round(median(los), 2) AS median_los_days,\n"
                "       round(avg(los), 2) AS mean_los_days\nFROM mimiciv_icu.icustays\nGROUP BY first_careunit\n"
                "ORDER BY stays DESC;"},
        {"title": "Most frequent diagnoses (ICD titles)",
         "sql": "SELECT d.icd_version, d.icd_code, dd.long_title, count(*) AS n\n"
                "FROM mimiciv_hosp.diagnoses_icd d\nLEFT JOIN mimiciv_hosp.d_icd_diagnoses dd\n"
                "  USING (icd_code, icd_version)\nGROUP BY ALL\nORDER BY n DESC\nLIMIT 20;"},
        {"title": "In-hospital mortality by age band",
         "sql": "SELECT (p.anchor_age + year(a.admittime) - p.anchor_year) // 10 * 10 AS age_band,\n"
                "       count(*) AS admissions,\n       round(avg(a.hospital_expire_flag) * 100, 1) AS mortality_pct\n"
                "FROM mimiciv_hosp.admissions a\nJOIN mimiciv_hosp.patients p USING (subject_id)\n"
                "GROUP BY age_band\nORDER BY age_band;"},
        {"title": "First creatinine of each admission",
         "sql": "SELECT hadm_id, charttime, valuenum AS creatinine, valueuom\nFROM mimiciv_hosp.labevents\n"
                "WHERE itemid = 50912 AND hadm_id IS NOT NULL\n"
                "QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY charttime) = 1\nORDER BY hadm_id\nLIMIT 100;"},
        {"title": "Most used lab tests",
         "sql": "SELECT l.itemid, d.label, d.fluid, count(*) AS n\nFROM mimiciv_hosp.labevents l\n"
                "JOIN mimiciv_hosp.d_labitems d USING (itemid)\nGROUP BY ALL\nORDER BY n DESC\nLIMIT 25;"},
    ],
    "mimiciii": [
        {"title": "Admissions by type and insurance",
         "sql": "SELECT admission_type, insurance, count(*) AS n\nFROM mimiciii.admissions\nGROUP BY ALL\nORDER BY n DESC;"},
        {"title": "ICU stays by first care unit",
         "sql": "SELECT first_careunit, count(*) AS stays, round(median(los), 2) AS median_los\n"
                "FROM mimiciii.icustays\nGROUP BY 1\nORDER BY stays DESC;"},
        {"title": "Most frequent diagnoses",
         "sql": "SELECT d.icd9_code, dd.short_title, count(*) AS n\nFROM mimiciii.diagnoses_icd d\n"
                "LEFT JOIN mimiciii.d_icd_diagnoses dd USING (icd9_code)\nGROUP BY ALL\nORDER BY n DESC\nLIMIT 20;"},
    ],
    "mimiciv_ed": [
        {"title": "ED stays by disposition",
         "sql": "SELECT disposition, count(*) AS stays\nFROM mimiciv_ed.edstays\nGROUP BY 1\nORDER BY stays DESC;"},
        {"title": "Triage vital signs by acuity",
         "sql": "SELECT acuity, count(*) AS n, round(avg(heartrate), 1) AS mean_hr,\n"
                "       round(avg(sbp), 1) AS mean_sbp\nFROM mimiciv_ed.triage\nGROUP BY acuity\nORDER BY acuity;"},
        {"title": "Most frequent ED diagnoses",
         "sql": "SELECT icd_title, count(*) AS n\nFROM mimiciv_ed.diagnosis\nGROUP BY 1\nORDER BY n DESC\nLIMIT 20;"},
    ],
    "omop": [
        {"title": "Persons by gender concept",
         "sql": "SELECT c.concept_name AS gender, count(*) AS persons\nFROM cdm.person p\n"
                "LEFT JOIN cdm.concept c ON c.concept_id = p.gender_concept_id\nGROUP BY 1\nORDER BY persons DESC;"},
        {"title": "Most frequent conditions",
         "sql": "SELECT c.concept_name, count(*) AS n\nFROM cdm.condition_occurrence co\n"
                "LEFT JOIN cdm.concept c ON c.concept_id = co.condition_concept_id\nGROUP BY 1\nORDER BY n DESC\nLIMIT 20;"},
        {"title": "Visits by type",
         "sql": "SELECT c.concept_name AS visit_type, count(*) AS n\nFROM cdm.visit_occurrence v\n"
                "LEFT JOIN cdm.concept c ON c.concept_id = v.visit_concept_id\nGROUP BY 1\nORDER BY n DESC;"},
    ],
}


@router.get("/datasets/{slug}/sql/examples", summary="Example queries for this dataset's schema family")
def examples(request: Request, slug: str) -> dict:
    b = wb(request).build(slug)
    fam = catalog.get(b.slug).family or ""
    lim = wb(request).limits
    return {"family": fam, "examples": EXAMPLES.get(fam, []),
            "limits": {"rows": lim.sql_rows, "seconds": lim.sql_seconds, "csv_rows": lim.csv_rows,
                       "csv_mb": lim.csv_bytes // 2**20, "export_seconds": lim.export_seconds}}
