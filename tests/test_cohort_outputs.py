"""Cohort outputs (CLI, report, subset round trip through `mimiclab build`, examples) and properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mimiclab.cli import app
from mimiclab.cohort import Cohort
from mimiclab.cohort.compile import compile_spec, transpile
from mimiclab.cohort.spec import CohortSpec
from mimiclab.load import build
from mimiclab.load import manifest as mf
from mimiclab.sources.registry import Build, find

REPO = Path(__file__).resolve().parents[1]
# the MIMIC-IV demo's examples (the OMOP one runs in test_cohort_backends.py, on its own build)
EXAMPLES = sorted(p for p in (REPO / "examples" / "cohorts").glob("*.yaml") if "omop" not in p.stem)


@pytest.fixture(scope="module")
def home(data_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("cohort-out-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2")
        yield home


@pytest.fixture(scope="module")
def demo(home):
    return find("mimic-iv-demo")


def cli(home, *args):
    return CliRunner().invoke(app, list(map(str, args)), env={"MIMICLAB_HOME": str(home), "COLUMNS": "200"})


def test_cli_run_writes_report_matching_api(home, demo, tmp_path):
    spec = EXAMPLES[0]
    res = cli(home, "cohort", "run", spec, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    for f in ("ids.csv", "ids.parquet", "attrition.csv", "table1.csv", "flow.svg", "flow.png", "report.md",
              "report.html", "spec.yaml", "cohort.sql"):
        assert (out / f).stat().st_size > 0, f
    c = Cohort.run(demo, spec)
    import pandas as pd

    assert pd.read_csv(out / "ids.csv").equals(c.ids)
    assert pd.read_parquet(out / "ids.parquet").equals(c.ids)
    assert pd.read_csv(out / "attrition.csv")["n_after"].tolist() == c.attrition["n_after"].tolist()
    md = (out / "report.md").read_text()
    m = demo.manifest
    for needle in (m.dataset, m.version, m.digest(), "mimiclab version", c.spec.name, f"**{len(c):,}**"):
        assert needle in md
    for r in c.attrition.itertuples():
        assert f"| {r.step} | {r.label} | {r.n_before:,} | {r.n_excluded:,} | {r.n_after:,} |" in md
    assert spec.read_text().strip() in md  # the spec as written, comments included
    html = (out / "report.html").read_text()
    assert m.digest() in html and "<table>" in html
    assert (out / "flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "flow.svg").read_bytes()


def test_cli_validate_and_sql(home, tmp_path):
    res = cli(home, "cohort", "validate", EXAMPLES[0])
    assert res.exit_code == 0 and "ok" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("unit: stay\ninclude:\n  - type: age\n    minimum: 18\n")
    res = cli(home, "cohort", "validate", bad)
    assert res.exit_code == 1 and "line 4" in res.output and "minimum" in res.output
    res = cli(home, "cohort", "sql", EXAMPLES[0], "--dialect", "postgres")
    assert res.exit_code == 0
    sqlglot.parse_one(res.output.strip().rstrip(";"), read="postgres")
    assert "step_3" in res.output


@pytest.mark.parametrize("spec", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_run_on_demo(demo, spec, tmp_path):
    c = Cohort.run(None, spec)  # the dataset is named in the spec
    assert c.manifest.dataset == "mimic-iv-demo"
    assert 0 < len(c) < c.counts[0]
    assert c.attrition["n_excluded"].iloc[1:].gt(0).any()
    c.report(tmp_path)
    assert (tmp_path / "report.md").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("example", ["suspected_infection_lactate", "heart_failure_admissions"])
def test_subset_round_trips_through_build(home, demo, demo_dir, tmp_path, example):
    spec = REPO / "examples" / "cohorts" / f"{example}.yaml"
    a, b = tmp_path / "a", tmp_path / "b"
    res = cli(home, "subset", spec, "--out", a)
    assert res.exit_code == 0, res.output
    # the way to build it does not replace the user's full build of the dataset
    assert "mimiclab.open(" in res.output and f"MIMICLAB_HOME={a}.home mimiclab build" in " ".join(res.output.split())
    c = Cohort.run(demo, spec)
    c.subset(b)
    assert _tree(a) == _tree(b)  # deterministic, and the CLI equals the API
    # SHA256SUMS.txt covers every other file
    sums = dict(line.split("  ")[::-1] for line in (a / "SHA256SUMS.txt").read_text().splitlines())
    files = {k for k in _tree(a) if k != "SHA256SUMS.txt"}
    assert set(sums) == files
    assert all(hashlib.sha256((a / p).read_bytes()).hexdigest() == h for p, h in sums.items())
    # no temp files left behind
    assert not [p for p in a.rglob("*") if ".tmp-" in p.name]
    # every file's header as the source spells it (procedureevents: ORIGINALAMOUNT, ORIGINALRATE)
    import gzip

    for rel in (k for k in files if k.endswith(".csv.gz") and not k.startswith("cohort/")):
        with gzip.open(a / rel, "rt") as f, gzip.open(demo_dir / rel, "rt") as g:
            assert f.readline() == g.readline(), rel

    home2 = tmp_path / "home2"  # a fresh home: the subset is built exactly as a user would build it
    res = cli(home2, "build", "mimic-iv-demo", "--source", a)
    assert res.exit_code == 0, res.output
    rebuilt = Build(home2 / "db" / "mimic-iv-demo" / "2.2", mf.read(home2 / "db" / "mimic-iv-demo" / "2.2"))
    assert Path(rebuilt.manifest.source) == a.resolve()
    con = duckdb.connect(str(rebuilt.database), read_only=True)
    unit_table = {"stay": "mimiciv_icu.icustays", "admission": "mimiciv_hosp.admissions"}[c.spec.unit]
    assert con.execute(f"SELECT count(*) FROM {unit_table}").fetchone()[0] == len(c)
    # the cohort's own rows, against the raw files: labevents of the cohort's admissions
    hadm = ",".join(map(str, sorted(set(c.ids["hadm_id"]))))
    subj = ",".join(map(str, sorted(set(c.ids["subject_id"]))))
    want = duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{demo_dir}/hosp/labevents.csv.gz') "
                          f"WHERE hadm_id IN ({hadm}) OR (hadm_id IS NULL AND subject_id IN ({subj}))").fetchone()[0]
    assert con.execute("SELECT count(*) FROM mimiciv_hosp.labevents").fetchone()[0] == want
    # detail rows follow their parent rows, those of no admission too (emar rows without hadm_id)
    for child, parent, key in (("emar_detail", "emar", "emar_id"), ("poe_detail", "poe", "poe_id")):
        kept = [r[0] for r in con.execute(f"SELECT {key} FROM mimiciv_hosp.{parent}").fetchall()]
        raw_child = f"read_csv('{demo_dir}/hosp/{child}.csv.gz', header=true, sample_size=-1)"
        want = duckdb.execute(f"SELECT count(*) FROM {raw_child} WHERE {key} IN (SELECT unnest($k))", {"k": kept}).fetchone()[0]
        assert con.execute(f"SELECT count(*) FROM mimiciv_hosp.{child}").fetchone()[0] == want > 0, child
    # dictionary tables whole
    assert con.execute("SELECT count(*) FROM mimiciv_hosp.d_labitems").fetchone()[0] == duckdb.execute(
        f"SELECT count(*) FROM read_csv_auto('{demo_dir}/hosp/d_labitems.csv.gz')").fetchone()[0]
    # values survive the round trip: admissions rows equal the source's
    adm_cols = "subject_id, hadm_id, admittime, dischtime, deathtime, admission_type, race, hospital_expire_flag"
    diff = con.execute(f"SELECT {adm_cols} FROM mimiciv_hosp.admissions EXCEPT "
                       f"SELECT {adm_cols} FROM read_csv_auto('{demo_dir}/hosp/admissions.csv.gz') "
                       f"WHERE hadm_id IN ({hadm})").fetchall()
    assert diff == []
    # timestamps keep their fraction (procedureevents storetime has milliseconds; a cast to seconds cut them)
    pe = f"read_csv_auto('{demo_dir}/icu/procedureevents.csv.gz')"
    k = "stay_id" if c.spec.unit == "stay" else "hadm_id"  # the finest key the table shares with the unit
    mine = f"{k} IN ({','.join(map(str, sorted(set(c.ids[k]))))})"
    want = duckdb.execute(f"SELECT count(*), count(DISTINCT storetime) FROM {pe} WHERE {mine}").fetchone()
    assert con.execute("SELECT count(*), count(DISTINCT storetime) FROM mimiciv_icu.procedureevents").fetchone() == want
    diff = con.execute(f"SELECT storetime FROM mimiciv_icu.procedureevents EXCEPT "
                       f"SELECT storetime FROM {pe} WHERE {mine}").fetchall()
    assert diff == []
    con.close()
    # the same spec on the subset selects the same cohort
    again = Cohort.run(rebuilt, spec)
    assert again.ids.equals(c.ids)
    again.close()


@pytest.mark.slow
def test_whole_patient_subset_selects_the_same_units_again(home, demo, demo_dir, tmp_path):
    """A unit selected by a row filed under another admission (a drug given inside admission B's stay but
    filed under A): the default subset keeps B's own rows only, so the same spec finds nothing on it; with
    whole patients it finds B again. The case is found over the raw files."""
    rx, adm = (f"read_csv_auto('{demo_dir}/hosp/{t}.csv.gz')" for t in ("prescriptions", "admissions"))
    b, drug = duckdb.execute(f"""
        SELECT a.hadm_id, lower(r.drug) FROM {rx} r JOIN {adm} a ON a.subject_id = r.subject_id
        WHERE r.hadm_id <> a.hadm_id AND r.starttime BETWEEN a.admittime AND a.dischtime
          AND NOT EXISTS (SELECT 1 FROM {rx} o WHERE o.hadm_id = a.hadm_id AND contains(lower(o.drug), lower(r.drug)))
        ORDER BY 1, 2 LIMIT 1""").fetchone()
    spec = {"unit": "admission", "include": [
        {"type": "sql", "query": f"SELECT hadm_id FROM mimiciv_hosp.admissions WHERE hadm_id = {b}", "returns": "hadm_id"},
        {"type": "medication", "names": [drug]}]}
    c = Cohort.run(demo, spec)
    assert set(c.ids["hadm_id"]) == {b}
    subject = int(c.ids["subject_id"][0])
    found = {}
    for whole in (False, True):
        out, h = tmp_path / f"subset-{whole}", tmp_path / f"home-{whole}"
        if whole:  # the CLI's flag
            (tmp_path / "spec.json").write_text(json.dumps({"dataset": "mimic-iv-demo", **spec}))
            res = cli(home, "subset", tmp_path / "spec.json", "--out", out, "--whole-patients")
            assert res.exit_code == 0, res.output
        else:
            c.subset(out)
        res = cli(h, "build", "mimic-iv-demo", "--source", out)
        assert res.exit_code == 0, res.output
        rebuilt = Build(h / "db" / "mimic-iv-demo" / "2.2", mf.read(h / "db" / "mimic-iv-demo" / "2.2"))
        again = Cohort.run(rebuilt, spec, allow_empty=True)
        found[whole] = set(again.ids["hadm_id"])
        again.close()
        con = duckdb.connect(str(rebuilt.database), read_only=True)
        n = {t: con.execute(f"SELECT count(*) FROM mimiciv_hosp.{t}").fetchone()[0] for t in ("admissions", "labevents")}
        con.close()
        if whole:  # every row of the patient, against the raw files
            for t in ("admissions", "labevents"):
                assert n[t] == duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{demo_dir}/hosp/{t}.csv.gz') "
                                              f"WHERE subject_id = {subject}").fetchone()[0], t
        else:
            assert n["admissions"] == 1
    assert found == {False: set(), True: {b}}


def test_subset_writes_timestamps_with_their_fraction():
    import datetime as dt

    import pyarrow as pa

    from mimiclab.cohort.subset import _as_written

    t = [dt.datetime(2116, 12, 18, 17, 34, 4, 930000), dt.datetime(2116, 12, 18, 17, 34, 10), None,
         dt.datetime(2180, 1, 1, 0, 0, 20, 500000), dt.datetime(2180, 1, 1, 0, 0, 0, 1)]
    out = _as_written(pa.record_batch([pa.array(t, pa.timestamp("us")), pa.array([1, 2, 3, 4, 5])], names=["t", "n"]))
    # as MIMIC writes them: milliseconds in 3 digits (the demo's storetime: 17:34:04.930), whole seconds bare
    assert out.column(0).to_pylist() == ["2116-12-18 17:34:04.930", "2116-12-18 17:34:10", None,
                                         "2180-01-01 00:00:20.500", "2180-01-01 00:00:00.000001"]
    assert out.column(1).to_pylist() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- properties

CRITERION = st.one_of(
    st.builds(lambda lo: {"type": "age", "min": lo}, st.integers(18, 90)),
    st.builds(lambda hi: {"type": "age", "max": hi}, st.integers(20, 95)),
    st.builds(lambda v: {"type": "sex", "value": v}, st.sampled_from(["F", "M"])),
    st.builds(lambda g: {"type": "race", "groups": g},
              st.lists(st.sampled_from(["White", "Black", "Hispanic/Latino", "Asian", "Other", "Unknown"]),
                       min_size=1, max_size=3, unique=True)),
    st.builds(lambda v: {"type": "admission_type", "values": v},
              st.lists(st.sampled_from(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"]), min_size=1,
                       max_size=2, unique=True)),
    st.builds(lambda d: {"type": "hospital_los", "min": d}, st.floats(0, 20, allow_nan=False)),
    st.builds(lambda d: {"type": "icu_los", "max": d, "unit": "hours"}, st.floats(1, 400, allow_nan=False)),
    st.just({"type": "first_icu_stay"}),
    st.just({"type": "in_hospital_death", "value": False}),
    st.builds(lambda p: {"type": "diagnosis", "icd9": [p + "*"], "icd10": ["I" + p[:2] + "*"]},
              st.sampled_from(["4", "42", "428", "25", "58"])),
    st.builds(lambda t, h: {"type": "lab", "labels": ["Lactate"], "above": t,
                            "window": {"anchor": "icu", "start_hours": -6, "end_hours": h}},
              st.floats(0, 6, allow_nan=False), st.integers(1, 72)),
    st.builds(lambda n: {"type": "medication", "names": [n]}, st.sampled_from(["heparin", "insulin", "vancomycin"])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unit=st.sampled_from(["patient", "admission", "stay"]),
       include=st.lists(CRITERION, max_size=3), exclude=st.lists(CRITERION, max_size=2), extra=CRITERION,
       extra_is_exclusion=st.booleans())
def test_properties_monotone_attrition_adds_up_portable_sql(demo, unit, include, exclude, extra, extra_is_exclusion):
    spec = {"unit": unit, "include": include, "exclude": exclude}
    c = Cohort.run(demo, spec, allow_empty=True)
    att = c.attrition
    assert (att["n_before"] - att["n_excluded"] == att["n_after"]).all()
    assert (att["n_after"].iloc[:-1].to_numpy() == att["n_before"].iloc[1:].to_numpy()).all()
    assert (att["n_excluded"] >= 0).all() and att["n_after"].iloc[-1] == len(c.ids)
    assert c.ids[c.compiled.ctx.key].is_unique

    more = {**spec, ("exclude" if extra_is_exclusion else "include"): spec["exclude" if extra_is_exclusion else "include"] + [extra]}
    c2 = Cohort.run(demo, more, allow_empty=True)
    key = c.compiled.ctx.key
    assert set(c2.ids[key]) <= set(c.ids[key])  # adding a criterion never adds a unit

    comp = compile_spec(CohortSpec.model_validate(more), "mimiciv")
    for sql in (comp.ids_sql, comp.attrition_sql):
        for dialect in ("postgres", "bigquery"):
            out = transpile(sql, dialect)
            sqlglot.parse_one(out, read=dialect)
            if dialect == "bigquery":
                assert "MATERIALIZED" not in out


def test_dataset_cohort_equals_build_run(demo):
    """ds.cohort(path) (the Python API's hook) gives the same cohort as Cohort.run on the registry Build."""
    api = pytest.importorskip("mimiclab.api")
    ds = api.open("mimic-iv-demo")
    spec = REPO / "examples" / "cohorts" / "heart_failure_admissions.yaml"
    via_api = ds.cohort(spec)
    direct = Cohort.run(demo, spec)
    assert via_api.ids.equals(direct.ids) and via_api.attrition.equals(direct.attrition)
    assert via_api.table1.equals(direct.table1) and via_api.sql == direct.sql


def test_subset_out_must_be_new_or_empty_and_force_replaces_it_whole(home, demo, tmp_path):
    """A stale file left in --out would be loaded by a later `mimiclab build --source`: refused without
    --force; with --force the folder is replaced as a whole (no stale file survives)."""
    spec = REPO / "examples" / "cohorts" / "heart_failure_admissions.yaml"
    out = tmp_path / "sub"
    (out / "hosp").mkdir(parents=True)
    (out / "hosp" / "omr.csv.gz").write_bytes(b"stale")
    res = cli(home, "subset", spec, "--out", out)
    assert res.exit_code == 1 and "not empty" in res.output and "--force" in res.output, res.output
    assert (out / "hosp" / "omr.csv.gz").read_bytes() == b"stale"  # nothing touched
    res = cli(home, "subset", spec, "--out", out, "--force")
    assert res.exit_code == 0, res.output
    listed = {line.split("  ")[1] for line in (out / "SHA256SUMS.txt").read_text().splitlines()}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"SHA256SUMS.txt"}
    assert on_disk == listed and (out / "hosp" / "omr.csv.gz").read_bytes() != b"stale"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    f = tmp_path / "a-file"
    f.write_text("x")
    res = cli(home, "subset", spec, "--out", f)
    assert res.exit_code == 1 and "is a file" in res.output and "Traceback" not in res.output
    res = cli(home, "cohort", "run", spec, "--out", f)  # was a FileExistsError traceback
    assert res.exit_code == 1 and "is a file" in res.output and "Traceback" not in res.output
    assert f.read_text() == "x"
