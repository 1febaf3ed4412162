"""Cohorts on every backend (DuckDB build, the same data on the real PostgreSQL server) and on OMOP.

Oracles are plain DuckDB SQL over PhysioNet's raw files, written here in their own words; they never use
mimiclab's SQL or its concept mappings. Cross-backend checks compare the PostgreSQL run with the DuckDB run of
the same spec, after both were checked against the oracle.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlglot

from mimiclab.catalog import concepts
from mimiclab.cohort import Cohort, EmptyCohortError, SpecError
from mimiclab.cohort import spec as S
from mimiclab.cohort.compile import compile_spec, transpile
from mimiclab.cohort.criteria import families
from mimiclab.cohort.suggest import SUGGESTED, suggest_sql
from mimiclab.cohort.table1 import rows_and_counts_sql, rows_sql
from mimiclab.store import render

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "cohorts"
MIMIC_EXAMPLES = ["adult_first_icu_stays", "heart_failure_admissions", "suspected_infection_lactate"]
DIALECTS = ("postgres", "bigquery")


def run(target, spec, **kw) -> Cohort:
    c = Cohort.run(target, spec, **kw)
    c.close()  # results are in memory; the store (a server connection on PostgreSQL) is not needed
    return c


def raw(demo_dir: Path, name: str) -> str:
    return f"read_csv_auto('{demo_dir / name}.csv.gz', sample_size=-1)"


def q(demo_dir: Path, sql: str) -> set[int]:
    names = {"adm": "hosp/admissions", "pat": "hosp/patients", "icu": "icu/icustays", "dx": "hosp/diagnoses_icd",
             "lab": "hosp/labevents", "dlab": "hosp/d_labitems", "rx": "hosp/prescriptions"}
    return {r[0] for r in duckdb.execute(sql.format(**{k: raw(demo_dir, v) for k, v in names.items()})).fetchall()}


AGE = "p.anchor_age + (year(a.admittime) - p.anchor_year)"
ANTIBIOTICS = ["vancomycin", "cefepime", "ceftriaxone", "piperacillin", "meropenem", "levofloxacin", "ciprofloxacin",
               "metronidazole", "cefazolin", "ampicillin"]


def example_oracle(demo_dir: Path, name: str) -> tuple[list[int], set[int]]:
    """(attrition counts, final ids) of an example, by set arithmetic over the raw files."""
    icu_age = (f"SELECT i.stay_id FROM {{icu}} i JOIN {{adm}} a ON a.hadm_id = i.hadm_id "
               f"JOIN {{pat}} p ON p.subject_id = a.subject_id WHERE {AGE} >= 18")
    if name == "adult_first_icu_stays":
        units = q(demo_dir, "SELECT stay_id FROM {icu}")
        steps = [("+", q(demo_dir, icu_age)),
                 ("+", q(demo_dir, "SELECT stay_id FROM {icu} i WHERE NOT EXISTS (SELECT 1 FROM {icu} j WHERE "
                                   "j.subject_id = i.subject_id AND j.intime < i.intime)")),
                 ("+", q(demo_dir, "SELECT stay_id FROM {icu} WHERE epoch(outtime) - epoch(intime) >= 24 * 3600"))]
    elif name == "heart_failure_admissions":
        units = q(demo_dir, "SELECT hadm_id FROM {adm}")
        steps = [("+", q(demo_dir, f"SELECT a.hadm_id FROM {{adm}} a JOIN {{pat}} p USING (subject_id) WHERE {AGE} >= 18")),
                 ("+", q(demo_dir, "SELECT hadm_id FROM {dx} WHERE (icd_version = 9 AND (icd_code[1:3] = '428' OR "
                                   "icd_code IN ('40201', '40211', '40291'))) OR (icd_version = 10 AND "
                                   "(icd_code[1:3] = 'I50' OR icd_code = 'I110'))")),
                 ("-", q(demo_dir, "SELECT hadm_id FROM {adm} WHERE admission_type IN "
                                   "('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')"))]
    else:
        units = q(demo_dir, "SELECT stay_id FROM {icu}")
        drugs = " OR ".join(f"lower(r.drug) LIKE '%{d}%'" for d in ANTIBIOTICS)
        steps = [("+", q(demo_dir, icu_age)),
                 ("+", q(demo_dir, f"SELECT i.stay_id FROM {{icu}} i JOIN {{rx}} r ON r.subject_id = i.subject_id "
                                   f"WHERE ({drugs}) AND epoch(r.starttime) - epoch(i.intime) BETWEEN -86400 AND 86400")),
                 ("+", q(demo_dir, "SELECT i.stay_id FROM {icu} i JOIN {lab} l ON l.subject_id = i.subject_id "
                                   "JOIN {dlab} d ON d.itemid = l.itemid WHERE d.label = 'Lactate' AND l.valuenum > 2 "
                                   "AND epoch(l.charttime) - epoch(i.intime) BETWEEN -6 * 3600 AND 24 * 3600")),
                 ("-", q(demo_dir, "SELECT stay_id FROM {icu} WHERE epoch(outtime) - epoch(intime) <= 24 * 3600"))]
    counts, left = [len(units)], set(units)
    for op, ids in steps:
        left = left & ids if op == "+" else left - ids
        counts.append(len(left))
    return counts, left


@pytest.fixture(scope="module")
def on_duckdb(demo_build):
    """The examples run on the DuckDB build: the reference the PostgreSQL runs must equal."""
    return {name: run(demo_build, EXAMPLES / f"{name}.yaml") for name in MIMIC_EXAMPLES}


@pytest.mark.parametrize("name", MIMIC_EXAMPLES)
def test_examples_equal_oracle_and_duckdb_on_each_backend(backend_source, demo_dir, on_duckdb, name):
    c = run(backend_source, EXAMPLES / f"{name}.yaml")
    counts, ids = example_oracle(demo_dir, name)
    assert c.counts == counts and 0 < counts[-1] < counts[0]
    assert set(c.ids[c.compiled.ctx.key]) == ids
    ref = on_duckdb[name]
    assert c.ids.equals(ref.ids)
    assert c.attrition.equals(ref.attrition)
    pd.testing.assert_frame_equal(c.rows.reset_index(drop=True), ref.rows.reset_index(drop=True),
                                  check_dtype=False, check_exact=False, rtol=1e-9)
    assert c.table1.equals(ref.table1)


def test_table1_against_raw_files(backend_source, demo_dir):
    """Table 1 of the heart-failure admissions: N, age, sex, mortality and hospital LOS restated over the raw files."""
    c = run(backend_source, EXAMPLES / "heart_failure_admissions.yaml")
    hadm = ", ".join(map(str, c.ids["hadm_id"]))
    n, age, female, died, los = _hf_table1(demo_dir, hadm)
    t = dict(zip(c.table1["variable"] + "|" + c.table1["level"], c.table1["value"], strict=True))
    assert t["N (admissions)|"] == str(n)
    assert t["Age, years, median [IQR]|"] == age
    assert t["Female, n (%)|"] == f"{female} ({100 * female / n:.1f})"
    assert t["In-hospital mortality, n (%)|"] == f"{died} ({100 * died / n:.1f})"
    assert t["Hospital LOS, days, median [IQR]|"] == los


def _hf_table1(demo_dir: Path, hadm: str) -> tuple[int, str, int, int, str]:
    a, p = raw(demo_dir, "hosp/admissions"), raw(demo_dir, "hosp/patients")
    row = duckdb.execute(
        f"SELECT count(*), quantile_cont({AGE}, [0.25, 0.5, 0.75]), count(*) FILTER (WHERE p.gender = 'F'), "
        f"count(*) FILTER (WHERE a.hospital_expire_flag = 1), "
        f"quantile_cont((epoch(a.dischtime) - epoch(a.admittime)) / 86400, [0.25, 0.5, 0.75]) "
        f"FROM {a} a JOIN {p} p USING (subject_id) WHERE a.hadm_id IN ({hadm})").fetchone()

    def fmt(qs, digits):
        return f"{qs[1]:.{digits}f} [{qs[0]:.{digits}f}–{qs[2]:.{digits}f}]"

    return row[0], fmt(row[1], 0), row[2], row[3], fmt(row[4], 1)


# ------------------------------------------------------------------ every query cohort/ sends is portable


class Recording:
    """A Dataset-like wrapper whose store records every query cohort/ sends (and whether it was portable)."""

    def __init__(self, build, register_frames: bool = True):
        self.manifest = build.manifest
        self.build = build
        self.inner = build.open(sandbox=True)
        self.sent: list[tuple[str, bool]] = []
        outer = self

        class Store:
            dialect = "duckdb"
            capabilities = self.inner.capabilities.__class__(register_frames=register_frames)

            def arrow(self, query, params=None, *, portable=False):
                outer.sent.append((query, portable))
                return outer.inner.arrow(query, params, portable=portable)

            def df(self, query, params=None, *, portable=False):
                return self.arrow(query, params, portable=portable).to_pandas()

            @contextlib.contextmanager
            def stream(self, query, params=None, batch_rows=8192, *, portable=False):
                outer.sent.append((query, portable))
                with outer.inner.stream(query, params, batch_rows, portable=portable) as r:
                    yield r

            def register(self, name, table):
                outer.inner.register(name, table)

            def unregister(self, name):
                outer.inner.unregister(name)

            def close(self):
                pass

        self.store = Store()


def _portable(sql: str) -> None:
    for dialect in DIALECTS:
        out = render(sql, dialect)  # raises on anything sqlglot cannot write for the dialect
        for stmt in sqlglot.parse(out, read=dialect):
            assert stmt is not None
    for construct in ("GROUP BY ALL", "TRY_CAST", "epoch(", "list_contains", "QUALIFY", "//"):
        assert construct.lower() not in sql.lower(), construct


def test_every_query_a_cohort_sends_is_portable(demo_build, tmp_path):
    """Attrition with Table 1 rows (one statement), the checks in _check (labels, itemids, exact values), the failure locator and
    the subset export (both id sources): all sent with portable=True, all written for PostgreSQL and BigQuery."""
    spec = {"unit": "stay",
            "include": [{"type": "age", "min": 18}, {"type": "lab", "labels": ["Lactate"], "itemids": [50813], "above": 2},
                        {"type": "admission_type", "values": ["EW EMER.", "URGENT"]},
                        {"type": "care_unit", "values": ["Medical Intensive Care Unit (MICU)"], "which": "any"}],
            "exclude": [{"type": "medication", "names": ["meropenem"], "itemids": [221906],
                         "window": {"anchor": "icu", "end_hours": 1}}]}
    for register_frames in (True, False):
        rec = Recording(demo_build, register_frames)
        c = Cohort.run(rec, spec)
        # the step chain runs once: attrition and Table 1 rows in one statement
        assert sum("step_1 AS MATERIALIZED" in s for s, _ in rec.sent) == 1, [s[:80] for s, _ in rec.sent]
        c.subset(tmp_path / f"sub-{register_frames}")
        with pytest.raises(SpecError, match=r"include\[1\].*fails"):  # the failure locator's queries too
            Cohort.run(rec, {"unit": "admission", "include": [
                {"type": "age", "min": 18}, {"type": "sql", "query": "SELECT hadm_id FROM mimiciv_hosp.no_such_table"}]})
        assert rec.sent and all(portable for _, portable in rec.sent), [s for s, p in rec.sent if not p]
        kinds = {"attrition": "AS attrition_0", "table1": "race_group", "check": "UPPER(x.admission_type)",
                 "label": "LOWER(label)", "subset": "mimiciv_hosp.labevents"}
        for what, marker in kinds.items():
            assert any(marker in s for s, _ in rec.sent), what
        for sql, _ in rec.sent:
            _portable(sql)
    # the two id sources write the same files
    a, b = tmp_path / "sub-True", tmp_path / "sub-False"
    assert {p.relative_to(a): p.read_bytes() for p in a.rglob("*.csv.gz")} == \
        {p.relative_to(b): p.read_bytes() for p in b.rglob("*.csv.gz")}


@pytest.mark.parametrize("family", ["mimiciv", "mimiciii", "omop"])
def test_compiled_examples_and_pickers_render_for_postgres_and_bigquery(family):
    """Every example compiled for every family that can express it (ids, attrition, Table 1) and every picker
    query renders for PostgreSQL and BigQuery and parses back in that dialect."""
    assert family in families()
    compiled = 0
    for path in sorted(EXAMPLES.glob("*.yaml")):
        spec = S.load(path)
        try:
            comp = compile_spec(spec, family)
        except SpecError:
            continue
        compiled += 1
        for sql in (comp.ids_sql, comp.attrition_sql, rows_sql(comp), rows_and_counts_sql(comp)):
            _portable(sql)
        for dialect in DIALECTS:
            assert "MATERIALIZED" not in render(comp.attrition_sql, "bigquery")
            sqlglot.parse_one(transpile(comp.ids_sql, dialect), read=dialect)  # what Cohort.sql_for prints
    assert compiled == (2 if family == "mimiciii" else 4)  # MIMIC-III refuses the ICD-10 codes of the HF examples
    pickers = 0
    for criterion, param in sorted(SUGGESTED):
        for text in ("", "a", "50"):
            made = suggest_sql(family, criterion, param, text)
            if made is not None:
                pickers += 1
                _portable(made[0])
    assert pickers > 20


def test_pickers_on_each_backend_equal_duckdb(backend_source, demo_build):
    """The builder's pickers give the same suggestions on PostgreSQL as on DuckDB (portable SQL, `?` params)."""
    store, ref = backend_source.open(sandbox=True), demo_build.open(sandbox=True)
    try:
        for criterion, param, text in [("admission_type", "values", "em"), ("diagnosis", "icd10", "I5"),
                                       ("diagnosis", "icd9", "heart"), ("lab", "labels", "lact"),
                                       ("lab", "itemids", "50813"), ("care_unit", "values", ""),
                                       ("medication", "names", "vanco"), ("year_group", "values", "")]:
            sql, params = suggest_sql("mimiciv", criterion, param, text)
            got, want = store.arrow(sql, params, portable=True), ref.arrow(sql, params, portable=True)
            assert got.num_rows > 0, (criterion, param)
            assert [tuple(map(str, r.values())) for r in got.to_pylist()] == \
                [tuple(map(str, r.values())) for r in want.to_pylist()], (criterion, param)
    finally:
        store.close()
        ref.close()


def test_subset_on_postgres_equals_duckdb(backend_source, demo_build, tmp_path):
    """A subset exported from PostgreSQL (ids as the portable CTE chain) has the rows of the DuckDB export
    (ids registered as a frame)."""
    spec = EXAMPLES / "heart_failure_admissions.yaml"
    c, ref = Cohort.run(backend_source, spec), Cohort.run(demo_build, spec)
    try:
        c.subset(tmp_path / "got")
        ref.subset(tmp_path / "want")
    finally:
        c.close()
        ref.close()
    for path in sorted((tmp_path / "want").rglob("*.csv.gz")):
        rel = path.relative_to(tmp_path / "want")
        if rel.name.startswith("d_"):
            continue  # dictionaries are copied whole
        got = duckdb.execute(f"SELECT count(*) FROM read_csv('{tmp_path / 'got' / rel}', all_varchar=true)").fetchone()
        want = duckdb.execute(f"SELECT count(*) FROM read_csv('{path}', all_varchar=true)").fetchone()
        assert got == want, rel


# ------------------------------------------------------------------ OMOP

OMOP_DIR = "mimic-iv-demo-omop/0.9"


@pytest.fixture(scope="module")
def omop(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("omop-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        import mimiclab
        from mimiclab.sources.registry import find

        mimiclab.build("mimic-iv-demo-omop", source=data_root / OMOP_DIR)
        yield find("mimic-iv-demo-omop")


def oq(data_root: Path, sql: str) -> set[int]:
    d = data_root / OMOP_DIR / "1_omop_data_csv"
    names = {t: f"read_csv_auto('{d / t}.csv', sample_size=-1)" for t in
             ("person", "visit_occurrence", "visit_detail", "condition_occurrence", "care_site", "drug_exposure")}
    names["concept"] = f"read_csv_auto('{d / '2b_concept.csv'}', sample_size=-1)"
    return {r[0] for r in duckdb.execute(sql.format(**names)).fetchall()}


# hospital admissions: the ETL writes MIMIC's hadm_id into visit_source_value ("subject|hadm"); lab-only visits
# carry a date there instead
OMOP_ADMISSIONS = "SELECT * FROM {visit_occurrence} WHERE regexp_matches(visit_source_value, '^[0-9]+[|][0-9]+$')"


def test_omop_heart_failure_example_against_raw_files(omop, data_root, demo_build):
    c = run(omop, EXAMPLES / "omop_heart_failure_admissions.yaml")
    units = oq(data_root, f"SELECT visit_occurrence_id FROM ({OMOP_ADMISSIONS})")
    adults = oq(data_root, f"SELECT v.visit_occurrence_id FROM ({OMOP_ADMISSIONS}) v JOIN {{person}} p USING (person_id) "
                           "WHERE year(v.visit_start_datetime) - p.year_of_birth >= 18")
    hf = oq(data_root, "SELECT visit_occurrence_id FROM {condition_occurrence} WHERE condition_type_concept_id = 32821 "
                       "AND (trim(condition_source_value) LIKE '428%' OR trim(condition_source_value) LIKE 'I50%' OR "
                       "trim(condition_source_value) IN ('40201', '40211', '40291', 'I110'))")
    elective = oq(data_root, "SELECT v.visit_occurrence_id FROM {visit_occurrence} v JOIN {concept} c "
                             "ON c.concept_id = v.visit_source_concept_id "
                             "WHERE c.concept_name IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')")
    want = [len(units), len(units & adults), len(units & adults & hf), len((units & adults & hf) - elective)]
    assert c.counts == want and 0 < want[-1] < want[2]
    assert set(c.ids["visit_occurrence_id"]) == (units & adults & hf) - elective
    assert list(c.ids.columns) == ["person_id", "visit_occurrence_id"]
    # the same admissions as the MIMIC-IV example on the MIMIC-IV demo (the ETL keeps hadm_id in visit_source_value)
    mimic = run(demo_build, EXAMPLES / "heart_failure_admissions.yaml")
    assert c.counts == mimic.counts
    vo = data_root / OMOP_DIR / "1_omop_data_csv" / "visit_occurrence.csv"
    hadm = dict(duckdb.execute(f"SELECT visit_occurrence_id, TRY_CAST(split_part(visit_source_value, '|', 2) AS BIGINT) "
                               f"FROM read_csv_auto('{vo}')").fetchall())
    assert sorted(hadm[v] for v in c.ids["visit_occurrence_id"]) == sorted(mimic.ids["hadm_id"])
    t = dict(zip(c.table1["variable"] + "|" + c.table1["level"], c.table1["value"], strict=True))
    assert t["N (admissions)|"] == str(want[-1])
    assert "EW EMER." in c.table1["level"].tolist()  # admission types read from the source concepts


@pytest.mark.parametrize("criterion", [
    {"type": "diagnosis", "icd10": ["E87*"]},  # ICD-9 E870-E879 (misadventures) look the same
    {"type": "diagnosis", "icd9": ["E87*", "V45*"]},
    {"type": "diagnosis", "icd10": ["Z95*", "I50*"]},
    {"type": "diagnosis", "icd9": ["428*", "5849"]},
    # ICD-10-PCS 3E0... and CPT 38500 start with 3 too; this copy's billing procedures hold no ICD-9 code
    {"type": "procedure", "icd9": ["3*"]},
    {"type": "procedure", "icd10": ["02H*", "3E0*"]},
])
def test_omop_icd_codes_match_their_own_version(omop, data_root, criterion):
    """The OMOP demo holds no ICD vocabulary: the version is told from the codes. Oracle: MIMIC-IV's raw
    diagnoses_icd/procedures_icd with their icd_version (the OMOP demo is the MIMIC-IV demo's 100 patients;
    visit_source_value keeps hadm_id), for the codes the OMOP demo's billing tables hold (its V, Z and E
    codes are partly in observation, which this copy lacks)."""
    table = "diagnoses_icd" if criterion["type"] == "diagnosis" else "procedures_icd"
    omop_t, src = (("condition_occurrence", "condition") if criterion["type"] == "diagnosis"
                   else ("procedure_occurrence", "procedure"))
    version, codes = next((v, criterion[k]) for v, k in ((9, "icd9"), (10, "icd10")) if k in criterion)
    like = " OR ".join(f"m.icd_code LIKE '{c.rstrip('*')}%'" if c.endswith("*") else f"m.icd_code = '{c}'" for c in codes)
    raw = data_root / "mimic-iv-demo" / "2.2" / "hosp" / f"{table}.csv.gz"
    d = data_root / OMOP_DIR / "1_omop_data_csv"
    want = {r[0] for r in duckdb.execute(
        f"SELECT DISTINCT m.hadm_id FROM read_csv('{raw}', types={{'icd_code': 'VARCHAR'}}) m "
        f"JOIN (SELECT TRY_CAST(split_part(v.visit_source_value, '|', 2) AS BIGINT) AS hadm_id, "
        f"replace(trim(o.{src}_source_value), '.', '') AS icd_code FROM read_csv_auto('{d}/{omop_t}.csv') o "
        f"JOIN read_csv_auto('{d}/visit_occurrence.csv') v USING (visit_occurrence_id) "
        f"WHERE o.{src}_type_concept_id = 32821) o USING (hadm_id, icd_code) "
        f"WHERE m.icd_version = {version} AND ({like})").fetchall()}
    c = run(omop, {"unit": "admission", "include": [criterion]}, allow_empty=True)
    hadm = dict(duckdb.execute(f"SELECT visit_occurrence_id, TRY_CAST(split_part(visit_source_value, '|', 2) AS BIGINT) "
                               f"FROM read_csv_auto('{d}/visit_occurrence.csv')").fetchall())
    assert {hadm[v] for v in c.ids["visit_occurrence_id"]} == want, criterion
    assert want or criterion == {"type": "procedure", "icd9": ["3*"]}


def test_omop_subset_and_report(omop, data_root, tmp_path):
    """The subset of an OMOP cohort: the cohort's visits, their conditions (and those of no visit of its persons),
    and a report counting persons."""
    c = Cohort.run(omop, EXAMPLES / "omop_heart_failure_admissions.yaml")
    try:
        c.subset(tmp_path / "sub")
    finally:
        c.close()
    out = tmp_path / "sub" / "1_omop_data_csv"
    visits = set(c.ids["visit_occurrence_id"])
    got = {r[0] for r in duckdb.execute(f"SELECT visit_occurrence_id FROM read_csv_auto('{out}/visit_occurrence.csv.gz')").fetchall()}
    assert got == visits
    ids, persons = ", ".join(map(str, visits)), ", ".join(map(str, set(c.ids["person_id"])))
    want = duckdb.execute(
        f"SELECT count(*) FROM read_csv_auto('{data_root / OMOP_DIR / '1_omop_data_csv' / 'condition_occurrence.csv'}') "
        f"WHERE visit_occurrence_id IN ({ids}) OR (visit_occurrence_id IS NULL AND person_id IN ({persons}))").fetchone()
    assert duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{out}/condition_occurrence.csv.gz')").fetchone() == want
    n_persons = duckdb.execute(f"SELECT count(DISTINCT person_id) FROM read_csv_auto('{out}/visit_occurrence.csv.gz')").fetchone()[0]
    assert f"**{len(visits)}** admissions ({n_persons} patients)" in (tmp_path / "sub" / "cohort" / "report.md").read_text()


def omop_icu_stays(data_root: Path) -> list[dict]:
    """ICU stays of the OMOP demo, merged here in Python: visit_detail rows in the wards MIMIC-IV's icustays
    name (the OMOP demo is the MIMIC-IV demo's patients), a row starting when the visit's previous ICU row
    ended continuing its stay (as MIMIC-IV's stays are made of transfers)."""
    stays = f"read_csv_auto('{data_root}/mimic-iv-demo/2.2/icu/icustays.csv.gz')"
    d = data_root / OMOP_DIR / "1_omop_data_csv"
    rows = duckdb.execute(
        f"SELECT v.person_id, v.visit_occurrence_id, v.visit_detail_id, v.visit_detail_start_datetime, "
        f"v.visit_detail_end_datetime, s.care_site_name FROM read_csv_auto('{d}/visit_detail.csv', sample_size=-1) v "
        f"JOIN read_csv_auto('{d}/care_site.csv') s USING (care_site_id) WHERE s.care_site_name IN "
        f"(SELECT first_careunit FROM {stays} UNION SELECT last_careunit FROM {stays})").fetchall()
    out: list[dict] = []
    for person, visit, vid, st, en, unit in sorted(rows, key=lambda r: (r[0], r[1], r[3], r[2])):
        last = out[-1] if out else None
        if last and (last["person"], last["visit"]) == (person, visit) and st == last["seg_end"]:
            last["seg_end"], last["last_unit"] = en, unit
            last["end"] = max(last["end"], en)
            last["members"].append(vid)
        else:
            out.append({"person": person, "visit": visit, "id": vid, "start": st, "end": en, "seg_end": en,
                        "first_unit": unit, "last_unit": unit, "members": [vid]})
    return out


def test_omop_icu_stays_and_medication(omop, data_root):
    """Stay unit on OMOP (back-to-back ICU ward rows of a visit merged into one stay), first stay, ICU LOS,
    care units, and a drug by name."""
    c = run(omop, {"unit": "stay", "include": [{"type": "first_icu_stay"}, {"type": "icu_los", "min": 24, "unit": "hours"}]})
    stays = omop_icu_stays(data_root)
    firsts: dict = {}
    for s_ in stays:
        k = (s_["start"], s_["id"])
        if s_["person"] not in firsts or k < (firsts[s_["person"]]["start"], firsts[s_["person"]]["id"]):
            firsts[s_["person"]] = s_
    first = {s_["id"] for s_ in firsts.values()}
    long = {s_["id"] for s_ in stays if (s_["end"] - s_["start"]).total_seconds() >= 86400}
    assert c.counts == [len(stays), len(first), len(first & long)] and len(first & long) > 0
    assert set(c.ids["visit_detail_id"]) == first & long
    # the same stays as MIMIC-IV's own icustays of the same admissions (one 53-minute ICU row is not there)
    iv = {r[0] for r in duckdb.execute(f"SELECT intime FROM read_csv_auto('{data_root}/mimic-iv-demo/2.2/icu/icustays.csv.gz')").fetchall()}
    assert len(stays) - 1 <= len({s_["start"] for s_ in stays} & iv) == len(iv) == 140
    # a stay moved between two ICUs keeps its first and last ward
    moved = [s_ for s_ in stays if s_["first_unit"] != s_["last_unit"]]
    cu = run(omop, {"unit": "stay", "include": [{"type": "care_unit", "values": [moved[0]["last_unit"]], "which": "last"}]})
    assert moved and moved[0]["id"] in set(cu.ids["visit_detail_id"])
    assert set(cu.ids["visit_detail_id"]) == {s_["id"] for s_ in stays if s_["last_unit"] == moved[0]["last_unit"]}
    m = run(omop, {"unit": "patient", "include": [{"type": "medication", "codes": ["00338355248"]}]}, allow_empty=True)
    want = oq(data_root, "SELECT DISTINCT v.person_id FROM {visit_occurrence} v JOIN {drug_exposure} e USING (person_id) "
                         "WHERE e.drug_source_value = '00338355248' AND e.drug_exposure_start_datetime "
                         "BETWEEN v.visit_start_datetime AND v.visit_end_datetime "
                         "AND regexp_matches(v.visit_source_value, '^[0-9]+[|][0-9]+$')")
    assert set(m.ids["person_id"]) == want and want


def test_omop_patient_view_counts_hospital_admissions_and_icu_stays_as_the_cohort_does(omop, data_root):
    """The explorer's patient list and patient view on OMOP: hospital admissions (not the lab-only pseudo
    visits, 852 'admissions' for 275) and ICU stays merged as the cohort's (the picker had counted every
    visit_detail row as an ICU stay, the patient view every ICU ward row)."""
    import mimiclab

    d = data_root / OMOP_DIR / "1_omop_data_csv"
    visits = OMOP_ADMISSIONS.format(visit_occurrence=f"read_csv_auto('{d}/visit_occurrence.csv')")
    adm = dict(duckdb.execute(visits.replace("SELECT *", "SELECT person_id, count(*)") + " GROUP BY 1").fetchall())
    stays = omop_icu_stays(data_root)
    icu: dict = {}
    for s_ in stays:
        icu[s_["person"]] = icu.get(s_["person"], 0) + 1
    ds = mimiclab.open(omop.build_dir)
    try:
        got = {r[0]: (r[1], r[2]) for r in ds.patient_list(limit=500).itertuples(index=False, name=None)}
        assert got == {p: (n, icu.get(p, 0)) for p, n in adm.items()} and len(got) == 100
        moved = next(s_ for s_ in stays if s_["first_unit"] != s_["last_unit"])
        p = ds.patient(moved["person"])
        assert p.demographics["n_icustays"] == icu[moved["person"]]
        mine = sorted((s_["start"], s_["id"], s_["end"], s_["first_unit"], s_["last_unit"]) for s_ in stays
                      if s_["person"] == moved["person"])
        frame = p.icustays
        assert list(zip(frame["visit_detail_start_datetime"].dt.to_pydatetime(), frame["visit_detail_id"],
                        frame["visit_detail_end_datetime"].dt.to_pydatetime(), frame["first_careunit"],
                        frame["last_careunit"], strict=True)) == mine
        st = p.stays()
        assert sorted(st[st["kind"] == "icustay"]["id"]) == sorted(x[1] for x in mine)
        assert ds.find_patient(stay_id=moved["id"]) == moved["person"]
    finally:
        ds.close()


def test_omop_stay_subset_keeps_every_ward_row_of_its_stays(omop, data_root, tmp_path):
    """A stay merged from several ICU ward rows keeps them all in a stay subset (only the first, whose id the
    stay carries, had been kept: 141 of 176 rows); the visit_detail rows of no ICU stay (wards, services) go
    with their admission; the subset rebuilt gives the same stays and Table 1."""
    import mimiclab

    spec = {"unit": "stay", "include": [{"type": "age", "min": 18}]}
    c = Cohort.run(omop, spec)
    try:
        c.subset(tmp_path / "sub")
    finally:
        c.close()
    stays = {s_["id"]: s_ for s_ in omop_icu_stays(data_root)}
    members = {m for s_ in stays.values() for m in s_["members"]}
    d = data_root / OMOP_DIR / "1_omop_data_csv"
    of_admissions = duckdb.execute(f"SELECT visit_detail_id FROM read_csv_auto('{d}/visit_detail.csv', sample_size=-1) "
                                   "WHERE visit_occurrence_id IN (SELECT unnest($v))",
                                   {"v": list({stays[x]["visit"] for x in c.ids["visit_detail_id"]})}).fetchall()
    want = sorted({m for sid in c.ids["visit_detail_id"] for m in stays[sid]["members"]}
                  | {r[0] for r in of_admissions if r[0] not in members})
    got = sorted(r[0] for r in duckdb.execute(
        f"SELECT visit_detail_id FROM read_csv_auto('{tmp_path}/sub/1_omop_data_csv/visit_detail.csv.gz')").fetchall())
    assert got == want and len(want) > len(c)
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        mimiclab.build("mimic-iv-demo-omop", source=tmp_path / "sub")
        again = Cohort.run("mimic-iv-demo-omop", spec)
        try:
            assert sorted(again.ids["visit_detail_id"]) == sorted(c.ids["visit_detail_id"])
            assert again.table1.equals(c.table1)
        finally:
            again.close()


def test_omop_drug_names_say_how_many_rows_have_none(omop, demo_build, data_root):
    """The OMOP demo's vocabulary names few of its drugs: a spec matching by name is told how many rows it
    cannot see by name (counted here over the raw files); MIMIC-IV's prescriptions all have one."""
    d = data_root / OMOP_DIR / "1_omop_data_csv"
    n, unnamed = duckdb.execute(f"SELECT count(*), count(*) - count(c.concept_name) FROM read_csv_auto('{d}/drug_exposure.csv') e "
                                f"LEFT JOIN read_csv_auto('{d}/2b_concept.csv') c ON c.concept_id = e.drug_source_concept_id"
                                ).fetchone()
    spec = {"unit": "admission", "include": [{"type": "medication", "names": ["vancomycin"]}]}
    c = run(omop, spec)
    assert unnamed / n > 0.5 and any(f"{unnamed:,} of {n:,} drug rows" in w and "codes:" in w for w in c.warnings), c.warnings
    assert not [w for w in run(omop, {"unit": "admission", "include": [{"type": "medication", "codes": ["00338355248"]}]},
                               allow_empty=True).warnings if "drug rows" in w]
    assert not [w for w in run(demo_build, spec).warnings if "drug rows" in w]


def test_omop_missing_measurements_warn_and_unexpressible_criteria_are_refused(omop):
    c = run(omop, {"unit": "admission", "include": [{"type": "lab", "labels": ["Lactate"], "above": 2}]}, allow_empty=True)
    assert any("cdm.measurement is not loaded" in w for w in c.warnings)
    assert c.counts[-1] == 0
    # the empty cohort's error says why (the table is not loaded), not "loosen the criterion"
    with pytest.raises(EmptyCohortError, match=r"cdm\.measurement is not loaded") as err:
        Cohort.run(omop, {"unit": "admission", "include": [{"type": "lab", "labels": ["Lactate"], "above": 2}]})
    assert "Loosen" not in str(err.value)
    for criterion, what in [({"type": "year_group", "values": ["2014 - 2016"]}, "year_group criterion.*omop family"),
                            ({"type": "diagnosis", "icd9": ["428*"], "primary": True}, "diagnosis criterion.*omop family"),
                            ({"type": "medication", "itemids": [221906]}, "medication.*omop family.*inputevents")]:
        with pytest.raises(SpecError, match=what):
            Cohort.run(omop, {"unit": "admission", "include": [criterion]})


def test_cohort_names_are_typed_models():
    """The catalog's cohort names are pydantic models, and a typo in a family's YAML is refused by name."""
    for family in families():
        names = concepts.load(family).cohort
        assert isinstance(names, concepts.CohortNames)
        assert isinstance(names.admissions, concepts.CohortAdmissions)
    assert set(families()) >= {"mimiciv", "mimiciii", "omop"}
    with pytest.raises(Exception, match="admission_tabel"):
        concepts.CohortNames.model_validate({**concepts.load("mimiciv").cohort.model_dump(), "admission_tabel": "x"})


@pytest.fixture(scope="module")
def pg_source(pg_demo_url):
    from mimiclab.sources import open_postgres

    return open_postgres(pg_demo_url, "mimic-iv-demo", "2.2")


def test_every_criterion_case_on_postgres(pg_source, demo_dir):
    """test_cohort.py's catalogue (every criterion type against its own oracle over the raw files), run on
    PostgreSQL, as an inclusion and as an exclusion."""
    from test_cohort import CASES, KEY, oracle

    everyone = {u: oracle(demo_dir, sql) for u, sql in (("patient", "SELECT subject_id FROM {pat}"),
                                                         ("admission", "SELECT hadm_id FROM {adm}"),
                                                         ("stay", "SELECT stay_id FROM {icu}"))}
    for unit, criterion, sql in CASES:
        want = oracle(demo_dir, sql)
        got = run(pg_source, {"unit": unit, "include": [criterion]}, allow_empty=True)
        assert set(got.ids[KEY[unit]]) == want, (unit, criterion)
        out = run(pg_source, {"unit": unit, "exclude": [criterion]}, allow_empty=True)
        assert set(out.ids[KEY[unit]]) == everyone[unit] - want, (unit, criterion)


def test_cohort_and_subset_cli_take_a_postgresql_url(pg_demo_url, on_duckdb, tmp_path):
    """`mimiclab cohort run spec --dataset postgresql://...` (and Cohort.run on the URL) gives the DuckDB cohort."""
    from typer.testing import CliRunner

    from mimiclab.cli import app

    spec = EXAMPLES / "heart_failure_admissions.yaml"
    c = run(pg_demo_url, spec)
    assert c.ids.equals(on_duckdb["heart_failure_admissions"].ids) and c.manifest.dataset == "mimic-iv-demo"
    res = CliRunner().invoke(app, ["cohort", "run", str(spec), "--dataset", pg_demo_url, "--out", str(tmp_path / "out")],
                             env={"MIMICLAB_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    ids = pd.read_csv(tmp_path / "out" / "ids.csv")
    assert ids["hadm_id"].tolist() == on_duckdb["heart_failure_admissions"].ids["hadm_id"].tolist()


def test_omop_cohorts_on_postgresql_equal_duckdb(omop, tmp_path):
    """The OMOP build published to PostgreSQL (cdm schema, unqualified names on the search_path) runs the same
    OMOP cohorts: ids, attrition and Table 1 equal to DuckDB's."""
    import uuid

    from conftest import PG_ADMIN, _pg_admin

    from mimiclab.load.postgres import to_postgres

    admin = _pg_admin()
    name = f"mimiclab_omop_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        to_postgres(omop, url)
        stays = {"dataset": "mimic-iv-demo-omop", "unit": "stay",
                 "include": [{"type": "first_icu_stay"}, {"type": "icu_los", "min": 24, "unit": "hours"},
                             {"type": "medication", "names": ["sodium chloride"], "window": {"anchor": "icu"}}]}
        for spec in (EXAMPLES / "omop_heart_failure_admissions.yaml", stays):
            got, want = run(url, spec), run(omop, spec)
            assert got.counts == want.counts and 0 < want.counts[-1] < want.counts[0]
            assert got.ids.equals(want.ids) and got.table1.equals(want.table1)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
