"""`--scale full`: a synthetic MIMIC-IV whose table sizes match MIMIC-IV 3.1's published row counts.

Expected sizes come from the catalog (datasets.yaml, mimiciv 3.1 ``rows:``), never from the generator;
written files are counted by DuckDB reading them back; keys are checked against the catalog's schema.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mimiclab import catalog, synth
from mimiclab.errors import MimiclabError

FRACTION = 0.02  # 7,293 patients: ~1,900 ICU stays, enough that per-stay volume noise stays well under 10%
SMALL = 0.0005  # 182 patients, written to disk


def published() -> dict[str, int]:
    v = catalog.get("mimiciv").version("3.1")
    return {path.removesuffix(".csv.gz"): f.rows for path, f in v.files.items() if f.rows and path.endswith(".csv.gz")}


@pytest.fixture(scope="module")
def counted() -> dict[str, int]:
    return synth.count_rows(scale="full", fraction=FRACTION, seed=11, version="3.1")


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> tuple[Path, synth.SynthResult]:
    d = tmp_path_factory.mktemp("full") / "s"
    return d, synth.generate(d, scale="full", fraction=SMALL, seed=5, version="3.1")


def test_full_scale_patients_are_mimic_iv_3_1s():
    assert synth.full_patients() == 364_627  # hosp/patients rows of 3.1, as published
    assert synth.resolve(None, "full", None)[0] == 364_627
    assert synth.resolve(None, "full", 0.01)[0] == 3_646
    assert synth.resolve(None, "demo", None)[0] == 100


# Dictionaries (d_*) are the generator's vocabulary (the items and codes it uses), not scaled with patients.
DICTIONARIES = {"hosp/d_hcpcs", "hosp/d_icd_diagnoses", "hosp/d_icd_procedures", "hosp/d_labitems", "icu/d_items"}


def test_every_table_within_10_percent_of_mimic_iv_3_1(counted: dict[str, int]):
    pub = published()
    k = counted["hosp/patients"] / pub["hosp/patients"]
    assert counted["hosp/patients"] == round(364_627 * FRACTION)
    checked, off = [], {}
    for key, n in counted.items():
        if key in DICTIONARIES:
            continue
        expected = pub[key] * k
        checked.append(key)
        if not 0.9 <= n / expected <= 1.1:
            off[key] = (n, round(expected), round(n / expected, 3))
    assert not off, off
    assert len(checked) == 26  # every non-dictionary hosp + icu table of 3.1


def test_demo_scale_is_not_full_scale(counted: dict[str, int]):
    """The check above can fail: the demo rates, at the same patients, miss most 3.1 sizes."""
    demo = synth.count_rows(patients=counted["hosp/patients"], seed=11, version="3.1",
                            tables=["admissions", "icustays"])
    pub = published()
    k = counted["hosp/patients"] / pub["hosp/patients"]
    for key in demo:
        assert abs(demo[key] / (pub[key] * k) - 1) > 0.5, key


def test_counts_equal_rows_written(small_dir):
    d, res = small_dir
    counts = synth.count_rows(scale="full", fraction=SMALL, seed=5, version="3.1")
    con = duckdb.connect()
    for key, n in counts.items():
        on_disk = con.execute(f"SELECT count(*) FROM read_csv('{d / key}.csv.gz', header=true, all_varchar=true)").fetchone()[0]
        assert on_disk == n == res.rows[key], key
    assert res.patients == 182


def test_full_scale_keys_unique_and_linked(small_dir):
    """Knobs the demo rates leave off (extra ward transfers, several poe_detail fields per order, a second
    ingredient row, datetimeevents every 2 hours, dense order ids) keep the catalog's primary keys."""
    d, _ = small_dir
    con = duckdb.connect()
    tables = catalog.get("mimiciv").tables("3.1", modules=["hosp", "icu"])
    for t in tables:
        con.execute(f"CREATE TABLE {t.name} AS SELECT * FROM read_csv('{d / t.file}.csv.gz', header=true, sample_size=-1)")
    keyed = 0
    for t in tables:
        pk = getattr(t, "primary_key", None)
        if not pk:
            continue
        cols = ", ".join(pk)
        dup = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {t.name} GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        assert dup == 0, (t.name, pk)
        keyed += 1
    assert keyed >= 20
    orphans = {
        "transfers.hadm": "SELECT count(*) FROM transfers x WHERE hadm_id IS NOT NULL AND NOT EXISTS "
                          "(SELECT 1 FROM admissions a WHERE a.hadm_id = x.hadm_id)",
        "transfers in admission": "SELECT count(*) FROM transfers t JOIN admissions a USING (hadm_id) WHERE t.eventtype <> 'ED' "
                                  "AND (t.intime < a.admittime OR t.intime > a.dischtime OR t.outtime < t.intime)",
        "ingredient.orderid": "SELECT count(*) FROM ingredientevents x WHERE NOT EXISTS "
                              "(SELECT 1 FROM inputevents i WHERE i.orderid = x.orderid AND i.stay_id = x.stay_id)",
        "ingredient.itemid": "SELECT count(*) FROM ingredientevents x WHERE NOT EXISTS "
                             "(SELECT 1 FROM d_items d WHERE d.itemid = x.itemid AND d.linksto = 'ingredientevents')",
        "poe_detail.poe": "SELECT count(*) FROM poe_detail x WHERE NOT EXISTS (SELECT 1 FROM poe p WHERE p.poe_id = x.poe_id)",
        "emar_detail.emar": "SELECT count(*) FROM emar_detail x WHERE NOT EXISTS (SELECT 1 FROM emar e WHERE e.emar_id = x.emar_id)",
        "emar.pharmacy": "SELECT count(*) FROM emar x WHERE NOT EXISTS (SELECT 1 FROM pharmacy p WHERE p.pharmacy_id = x.pharmacy_id)",
        "datetimeevents in stay": "SELECT count(*) FROM datetimeevents x JOIN icustays s USING (stay_id) "
                                  "WHERE x.charttime < s.intime OR x.charttime > s.outtime",
        "inputs in stay": "SELECT count(*) FROM inputevents i JOIN icustays s USING (stay_id) "
                          "WHERE i.starttime < s.intime OR i.endtime > s.outtime",
        "outputs in stay": "SELECT count(*) FROM outputevents o JOIN icustays s USING (stay_id) "
                           "WHERE o.charttime < s.intime OR o.charttime > s.outtime",
        "procedures in stay": "SELECT count(*) FROM procedureevents p JOIN icustays s USING (stay_id) "
                              "WHERE p.starttime < s.intime OR p.endtime > s.outtime",
        "caregiver": "SELECT count(*) FROM chartevents x WHERE NOT EXISTS "
                     "(SELECT 1 FROM caregiver c WHERE c.caregiver_id = x.caregiver_id)",
        "provider": "SELECT count(*) FROM admissions x WHERE NOT EXISTS "
                    "(SELECT 1 FROM provider p WHERE p.provider_id = x.admit_provider_id)",
    }
    bad = {k: n for k, q in orphans.items() if (n := con.execute(q).fetchone()[0])}
    assert not bad, bad
    # transfers stay in time order within each patient, as PhysioNet's file is
    assert con.execute("SELECT count(*) FROM (SELECT subject_id s, intime t, lag(subject_id) OVER () ps, lag(intime) OVER () pt "
                       "FROM transfers) WHERE s < ps OR (s = ps AND t < pt)").fetchone()[0] == 0
    # the extra knobs did act: several poe_detail fields per order, some second ingredient rows
    assert con.execute("SELECT max(c) FROM (SELECT count(*) c FROM poe_detail GROUP BY poe_id)").fetchone()[0] == 6
    assert con.execute("SELECT count(*) FROM ingredientevents WHERE itemid = 227074").fetchone()[0] > 0


def test_order_ids_dense_and_in_range_at_full_scale():
    """At 364,627 patients a key built as stay_key * 512 + n would pass 2e9 and wrap into repeats; the dense
    bases keep every order id below the wrap point (checked on the SQL of the whole full-scale core)."""
    from mimiclab.synth import _sql

    con = duckdb.connect()
    for m in _sql.macros(0, 10, 10):
        con.execute(m)
    for stmt in _sql.core(364_627, 0, "3.1", _sql.FULL):
        con.execute(stmt)
    n_in, n_proc = _sql.n_inputs(_sql.FULL), _sql.n_procdays(_sql.FULL)
    top_in, top_proc, stays = con.execute(
        f"SELECT max(inp_base + {n_in}), max(proc_base + 6 * {n_proc}), count(*) FROM icu").fetchone()
    assert 80_000 < stays < 110_000  # ~94,458 in 3.1
    assert top_in < 1_000_000_000 and 1_000_000_000 + top_proc < 1_999_999_999
    # labevent_id (40 per draw) stays INTEGER; lab specimen ids (8 per draw) stay below uid8's wrap point
    lab_end = con.execute("SELECT max(lab_end) FROM adm").fetchone()[0]
    assert lab_end < 2**31 - 1 and lab_end // 40 * 8 < 89_999_999
    # the order-id map is one-to-one below that point
    assert con.execute("SELECT count(DISTINCT uidk(i)) FROM range(0, 2000000) t(i)").fetchone()[0] == 2_000_000


def test_bad_scale_arguments_are_clear_errors(tmp_path: Path):
    with pytest.raises(MimiclabError, match="unknown scale 'huge'"):
        synth.generate(tmp_path / "a", scale="huge")
    with pytest.raises(MimiclabError, match="fraction must be in"):
        synth.generate(tmp_path / "b", scale="full", fraction=1.5)
    with pytest.raises(MimiclabError, match="not both"):
        synth.generate(tmp_path / "c", patients=10, scale="full", fraction=0.01)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_scale_full_fraction(tmp_path: Path, mimiclab_home: Path):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    out = tmp_path / "full"
    res = CliRunner().invoke(app, ["synth", "--scale", "full", "--fraction", "0.0002", "--dest", str(out)])
    assert res.exit_code == 0, res.output
    assert "73 synthetic patients (full scale" in res.output
    import json

    marker = json.loads((out / "SYNTHETIC.json").read_text())
    assert marker["scale"] == "full" and marker["patients"] == 73
    bad = CliRunner().invoke(app, ["synth", "--fraction", "0.01", "--dest", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "--scale full" in bad.output
