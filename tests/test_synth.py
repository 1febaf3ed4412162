"""The synthetic MIMIC-IV generator: layout, determinism, referential integrity, plausibility.

Oracles are plain DuckDB SQL over the csv.gz files written here, independent of the generator's SQL.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from mimiclab import catalog, synth

N = 100


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth") / "a"
    synth.generate(d, patients=N, seed=7)
    return d


@pytest.fixture(scope="module")
def db(synth_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for t in catalog.get("mimiciv").tables("2.2", modules=["hosp", "icu"]):
        con.execute(f"CREATE TABLE {t.name} AS SELECT * FROM read_csv('{synth_dir / t.file}.csv.gz', header=true, "
                    f"all_varchar=false, sample_size=-1)")
    return con


def one(con, sql):
    return con.execute(sql).fetchone()[0]


def test_every_catalog_table_with_exact_header(synth_dir: Path):
    tables = catalog.get("mimiciv").tables("2.2", modules=["hosp", "icu"])
    assert len(tables) >= 31
    for t in tables:
        path = synth_dir / f"{t.file}.csv.gz"
        with gzip.open(path, "rt") as f:
            header = f.readline().rstrip("\n").split(",")
            first = f.readline()
        assert header == [c.name for c in t.columns_for("2.2")], t.name
        assert first, f"{t.name} has no rows"


def test_marker_license_and_sums(synth_dir: Path):
    marker = json.loads((synth_dir / "SYNTHETIC.json").read_text())
    assert marker["synthetic"] is True and marker["generator"] == "mimiclab.synth"
    assert marker["patients"] == N and marker["seed"] == 7 and "mimiclab_version" in marker
    assert "synthetic" in (synth_dir / "LICENSE.txt").read_text().lower()
    lines = (synth_dir / "SHA256SUMS.txt").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, path = line.split("  ", 1)
        listed[path] = digest
    assert "hosp/admissions.csv.gz" in listed and "icu/chartevents.csv.gz" in listed and "SYNTHETIC.json" in listed
    for path, digest in listed.items():
        assert hashlib.sha256((synth_dir / path).read_bytes()).hexdigest() == digest
    assert not list(synth_dir.rglob("*.part")) and not (synth_dir / ".synth-tmp").exists()


def test_deterministic_byte_identical(tmp_path: Path, synth_dir: Path):
    again = tmp_path / "b"
    synth.generate(again, patients=N, seed=7)
    assert (again / "SHA256SUMS.txt").read_bytes() == (synth_dir / "SHA256SUMS.txt").read_bytes()
    with open(again / "icu/chartevents.csv.gz", "rb") as f:
        assert f.read(10)[4:8] == b"\0\0\0\0"  # gzip mtime 0
    other = tmp_path / "c"
    synth.generate(other, patients=N, seed=8, tables=["patients"])
    assert (other / "hosp/patients.csv.gz").read_bytes() != (synth_dir / "hosp/patients.csv.gz").read_bytes()


def test_gzip_is_single_standard_member(synth_dir: Path):
    data = (synth_dir / "hosp/labevents.csv.gz").read_bytes()
    import zlib

    d = zlib.decompressobj(31)
    d.decompress(data)
    assert d.eof and d.unused_data == b""



def test_output_does_not_depend_on_threads_and_content_not_on_batches(tmp_path: Path, synth_dir: Path, monkeypatch):
    """One worker, one batch ahead: the same bytes as the default pipeline. Many small batches: the same
    CSV content (the gzip pieces follow batch boundaries, so only the compressed bytes may differ)."""
    tables = ["chartevents", "labevents", "emar"]
    monkeypatch.setattr(synth, "WORKERS", 1)
    monkeypatch.setattr(synth, "AHEAD", 1)
    res = synth.generate(tmp_path / "one", patients=N, seed=7, tables=tables)
    for key in res.rows:
        assert (tmp_path / "one" / f"{key}.csv.gz").read_bytes() == (synth_dir / f"{key}.csv.gz").read_bytes(), key
    for batch_rows, names in [(20_000, tables), (150, ["patients", "admissions", "icustays", "transfers", "services",
                                                       "diagnoses_icd", "procedures_icd", "drgcodes", "omr"])]:
        monkeypatch.setattr(synth, "BATCH_ROWS", batch_rows)
        res = synth.generate(tmp_path / f"many{batch_rows}", patients=N, seed=7, tables=names)
        for key in res.rows:
            assert gzip.decompress((tmp_path / f"many{batch_rows}" / f"{key}.csv.gz").read_bytes()) == \
                gzip.decompress((synth_dir / f"{key}.csv.gz").read_bytes()), key


def test_crc32_combine_and_chunked_member():
    import gzip as _gz
    import io
    import os
    import zlib

    from mimiclab.synth import _gzip

    a, b = os.urandom(100_003), b"x" * 70_001
    assert _gzip.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert _gzip.crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)
    parts = [os.urandom(3000), b"row,1\n" * 500_000, b"", b"tail\n"]  # the middle one is bigger than CHUNK
    out = io.BytesIO()
    member = _gzip.GzipMember(out)
    for p in parts:
        member.append(_gzip.compress_stream(io.BytesIO(p)))
    member.close()
    assert _gz.decompress(out.getvalue()) == b"".join(parts)  # the CRC and length in the trailer are checked


def test_level_rule_depends_only_on_bytes():
    import io
    import zlib

    from mimiclab.synth import _gzip

    small = b"1,2,3\n" * 100_000  # 0.6 MB: level 6
    big = b"1,2,3\n" * 3_000_000  # 18 MB: level 1
    s, b = _gzip.compress_stream(io.BytesIO(small)), _gzip.compress_stream(io.BytesIO(big))
    assert s.pieces == [_gzip._deflate(small, 6)]
    assert b.pieces[0] == _gzip._deflate(big[:_gzip.CHUNK], 1) and len(b.pieces) == 3
    assert (s.crc, b.size) == (zlib.crc32(small), len(big))


def test_failed_batch_leaves_no_file(tmp_path: Path, monkeypatch):
    from mimiclab.errors import MimiclabError
    from mimiclab.synth import _sql

    good = _sql.EVENT_TABLES["labevents"]
    monkeypatch.setitem(_sql.EVENT_TABLES, "labevents",
                        (lambda w, r=_sql.DEMO: (good[0](w, r)[0].replace(
                            " AS specimen_id", " + error('synthetic failure')::INTEGER AS specimen_id"), None), good[1]))
    with pytest.raises(MimiclabError, match=r"hosp/labevents, batch 1 of 1: .*synthetic failure"):  # at run time
        synth.generate(tmp_path / "x", patients=5, tables=["admissions", "labevents", "poe"])
    assert (tmp_path / "x/hosp/admissions.csv.gz").exists()  # finished before the failure
    assert not (tmp_path / "x/hosp/labevents.csv.gz").exists() and not list((tmp_path / "x").rglob("*.part"))

ORPHANS = {
    # every hadm_id exists in admissions for the same subject
    **{f"{t}.hadm_id": f"SELECT count(*) FROM {t} x WHERE x.hadm_id IS NOT NULL AND NOT EXISTS "
                        f"(SELECT 1 FROM admissions a WHERE a.hadm_id = x.hadm_id AND a.subject_id = x.subject_id)"
       for t in ["diagnoses_icd", "procedures_icd", "drgcodes", "emar", "hcpcsevents", "labevents",
                 "microbiologyevents", "pharmacy", "poe", "prescriptions", "services", "transfers", "icustays",
                 "chartevents", "datetimeevents", "inputevents", "ingredientevents", "outputevents", "procedureevents"]},
    # every stay_id exists in icustays with the same hadm_id
    **{f"{t}.stay_id": f"SELECT count(*) FROM {t} x WHERE NOT EXISTS "
                        f"(SELECT 1 FROM icustays s WHERE s.stay_id = x.stay_id AND s.hadm_id = x.hadm_id)"
       for t in ["chartevents", "datetimeevents", "inputevents", "ingredientevents", "outputevents", "procedureevents"]},
    **{f"{t}.itemid": f"SELECT count(*) FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM d_items d WHERE d.itemid = x.itemid "
                       f"AND d.linksto = '{t}')"
       for t in ["chartevents", "datetimeevents", "inputevents", "ingredientevents", "outputevents", "procedureevents"]},
    **{f"{t}.caregiver_id": f"SELECT count(*) FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM caregiver c WHERE c.caregiver_id = x.caregiver_id)"
       for t in ["chartevents", "inputevents", "outputevents"]},
    "labevents.itemid": "SELECT count(*) FROM labevents x WHERE NOT EXISTS (SELECT 1 FROM d_labitems d WHERE d.itemid = x.itemid)",
    "diagnoses_icd.code": "SELECT count(*) FROM diagnoses_icd x WHERE NOT EXISTS (SELECT 1 FROM d_icd_diagnoses d "
                          "WHERE d.icd_code = x.icd_code AND d.icd_version = x.icd_version)",
    "procedures_icd.code": "SELECT count(*) FROM procedures_icd x WHERE NOT EXISTS (SELECT 1 FROM d_icd_procedures d "
                           "WHERE d.icd_code = x.icd_code AND d.icd_version = x.icd_version)",
    "hcpcsevents.code": "SELECT count(*) FROM hcpcsevents x WHERE NOT EXISTS (SELECT 1 FROM d_hcpcs d WHERE d.code = x.hcpcs_cd)",
    "admissions.subject": "SELECT count(*) FROM admissions x "
                          "WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.subject_id = x.subject_id)",
    "admissions.provider": "SELECT count(*) FROM admissions x "
                           "WHERE NOT EXISTS (SELECT 1 FROM provider p WHERE p.provider_id = x.admit_provider_id)",
    "emar.poe": "SELECT count(*) FROM emar x "
                "WHERE NOT EXISTS (SELECT 1 FROM poe p WHERE p.poe_id = x.poe_id AND p.subject_id = x.subject_id)",
    "prescriptions.pharmacy": "SELECT count(*) FROM prescriptions x "
                              "WHERE NOT EXISTS (SELECT 1 FROM pharmacy p WHERE p.pharmacy_id = x.pharmacy_id)",
    "emar_detail.emar": "SELECT count(*) FROM emar_detail x WHERE NOT EXISTS (SELECT 1 FROM emar e WHERE e.emar_id = x.emar_id)",
    "poe_detail.poe": "SELECT count(*) FROM poe_detail x WHERE NOT EXISTS (SELECT 1 FROM poe p WHERE p.poe_id = x.poe_id)",
}


@pytest.mark.parametrize("name", sorted(ORPHANS))
def test_referential_integrity(db, name):
    assert one(db, ORPHANS[name]) == 0


UNIQUE = {"patients": "subject_id", "admissions": "hadm_id", "icustays": "stay_id", "transfers": "transfer_id",
          "labevents": "labevent_id", "poe": "poe_id", "emar": "emar_id", "pharmacy": "pharmacy_id", "provider": "provider_id",
          "caregiver": "caregiver_id", "d_items": "itemid", "d_labitems": "itemid", "microbiologyevents": "microevent_id"}


@pytest.mark.parametrize("table", sorted(UNIQUE))
def test_primary_keys_unique(db, table):
    col = UNIQUE[table]
    assert one(db, f"SELECT count(*) - count(DISTINCT {col}) FROM {table}") == 0


TIME_RULES = {
    "dischtime > admittime": "SELECT count(*) FROM admissions WHERE NOT dischtime > admittime",
    "outtime > intime": "SELECT count(*) FROM icustays WHERE NOT outtime > intime",
    "los in days": "SELECT count(*) FROM icustays WHERE abs(los - epoch(outtime - intime) / 86400) > 1e-6",
    "stay within admission": "SELECT count(*) FROM icustays s JOIN admissions a USING (hadm_id) "
                             "WHERE s.intime < a.admittime OR s.outtime > a.dischtime",
    "stays do not overlap": "SELECT count(*) FROM icustays a JOIN icustays b ON a.subject_id = b.subject_id "
                            "AND a.stay_id < b.stay_id AND a.intime < b.outtime AND b.intime < a.outtime",
    "admissions do not overlap": "SELECT count(*) FROM admissions a JOIN admissions b ON a.subject_id = b.subject_id "
                                 "AND a.hadm_id < b.hadm_id AND a.admittime < b.dischtime AND b.admittime < a.dischtime",
    "chartevents within stay": "SELECT count(*) FROM chartevents c JOIN icustays s USING (stay_id) "
                               "WHERE c.charttime < s.intime OR c.charttime > s.outtime",
    "storetime after charttime": "SELECT count(*) FROM chartevents WHERE storetime < charttime",
    "labs within admission": "SELECT count(*) FROM labevents l JOIN admissions a USING (hadm_id) "
                             "WHERE l.charttime < a.admittime OR l.charttime > a.dischtime",
    "emar within admission": "SELECT count(*) FROM emar e JOIN admissions a USING (hadm_id) "
                             "WHERE e.scheduletime < a.admittime OR e.scheduletime > a.dischtime",
    "inputs within stay": "SELECT count(*) FROM inputevents i JOIN icustays s USING (stay_id) "
                          "WHERE i.starttime < s.intime OR i.endtime > s.outtime OR i.endtime < i.starttime",
    "outputs within stay": "SELECT count(*) FROM outputevents o JOIN icustays s USING (stay_id) "
                           "WHERE o.charttime < s.intime OR o.charttime > s.outtime",
    "procedures within stay": "SELECT count(*) FROM procedureevents p JOIN icustays s USING (stay_id) "
                              "WHERE p.starttime < s.intime OR p.endtime > s.outtime OR p.endtime < p.starttime",
    "transfers within admission": "SELECT count(*) FROM transfers t JOIN admissions a USING (hadm_id) "
                                  "WHERE t.eventtype <> 'ED' AND (t.intime < a.admittime OR t.intime > a.dischtime)",
    "prescriptions within admission": "SELECT count(*) FROM prescriptions p JOIN admissions a USING (hadm_id) "
                                      "WHERE p.starttime < a.admittime OR p.stoptime > a.dischtime OR p.stoptime < p.starttime",
    "ed before admission": "SELECT count(*) FROM admissions WHERE edregtime IS NOT NULL AND NOT edregtime < edouttime",
    "deathtime iff expire flag": "SELECT count(*) FROM admissions WHERE (deathtime IS NOT NULL) <> (hospital_expire_flag = 1)",
    "death in last admission only": "SELECT count(*) FROM admissions a JOIN admissions b ON a.subject_id = b.subject_id "
                                    "AND a.hospital_expire_flag = 1 AND b.admittime > a.admittime",
    "dod equals in-hospital death date": "SELECT count(*) FROM admissions a JOIN patients p USING (subject_id) "
                                         "WHERE a.deathtime IS NOT NULL AND p.dod <> a.deathtime::DATE",
    "dod not before last discharge": "SELECT count(*) FROM patients p JOIN (SELECT subject_id, max(dischtime) d FROM admissions "
                                     "GROUP BY 1) USING (subject_id) WHERE p.dod < d::DATE",
}


@pytest.mark.parametrize("rule", sorted(TIME_RULES))
def test_time_consistency(db, rule):
    assert one(db, TIME_RULES[rule]) == 0


def test_ordered_by_subject_then_time(db):
    for table, t in [("chartevents", "charttime"), ("labevents", "charttime"), ("admissions", "admittime"),
                     ("emar", "charttime"), ("inputevents", "starttime")]:
        bad = one(db, f"""SELECT count(*) FROM (SELECT subject_id s, {t} t, lag(subject_id) OVER () ps, lag({t}) OVER () pt
                          FROM {table}) WHERE s < ps OR (s = ps AND t < pt)""")
        assert bad == 0, table


def test_patients_and_admissions_plausible(db):
    assert one(db, "SELECT count(*) FROM patients") == N
    assert one(db, "SELECT count(*) FROM patients WHERE anchor_age NOT BETWEEN 18 AND 91 "
                   "OR anchor_year NOT BETWEEN 2100 AND 2200") == 0
    groups = {r[0] for r in db.execute("SELECT DISTINCT anchor_year_group FROM patients").fetchall()}
    assert groups <= {"2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"}
    adm_per_patient = one(db, "SELECT count(*) FROM admissions") / N
    stays_per_patient = one(db, "SELECT count(*) FROM icustays") / N
    assert 2.0 < adm_per_patient < 3.6  # real demo: 2.75
    assert 1.0 < stays_per_patient < 1.9  # real demo: 1.40
    types = {r[0] for r in db.execute("SELECT DISTINCT admission_type FROM admissions").fetchall()}
    assert "EW EMER." in types and types <= {"EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "EU OBSERVATION",
                                             "SURGICAL SAME DAY ADMISSION", "DIRECT EMER.", "DIRECT OBSERVATION",
                                             "AMBULATORY OBSERVATION"}
    units = {r[0] for r in db.execute("SELECT DISTINCT first_careunit FROM icustays").fetchall()}
    assert "Medical Intensive Care Unit (MICU)" in units
    assert 0 < one(db, "SELECT avg(hospital_expire_flag) FROM admissions") < 0.2


def test_vitals_and_labs_plausible(db):
    stats = dict(db.execute("""SELECT itemid, struct_pack(n := count(*), lo := min(valuenum), med := median(valuenum),
                                 hi := max(valuenum)) FROM chartevents WHERE itemid IN (220045, 220179, 220180, 220210,
                                 220277, 223761) GROUP BY 1""").fetchall())
    assert set(stats) == {220045, 220179, 220180, 220210, 220277, 223761}
    assert 60 < stats[220045]["med"] < 110 and stats[220045]["lo"] >= 20 and stats[220045]["hi"] <= 250
    assert 100 < stats[220179]["med"] < 140
    assert 94 <= stats[220277]["med"] <= 99 and stats[220277]["hi"] <= 100
    assert 97 < stats[223761]["med"] < 100
    assert one(db, "SELECT count(*) FROM chartevents a JOIN chartevents b USING (stay_id, charttime) "
                   "WHERE a.itemid = 220179 AND b.itemid = 220180 AND b.valuenum >= a.valuenum") == 0
    # HR roughly hourly across each stay
    per_hour = one(db, "SELECT count(*) / (SELECT sum(los) * 24 FROM icustays) FROM chartevents WHERE itemid = 220045")
    assert 0.9 < per_hour < 4.5
    labels = dict(db.execute("SELECT itemid, label FROM d_items").fetchall())
    assert labels[220045] == "Heart Rate" and labels[223762] == "Temperature Celsius" if 223762 in labels else True
    assert labels[220277] == "O2 saturation pulseoxymetry" and labels[226512] == "Admission Weight (Kg)"
    lab = dict(db.execute("SELECT itemid, label FROM d_labitems").fetchall())
    assert lab[50912] == "Creatinine" and lab[50813] == "Lactate" and lab[51301] == "White Blood Cells"
    cr = db.execute("SELECT min(valuenum), median(valuenum), max(valuenum) FROM labevents WHERE itemid = 50912").fetchone()
    assert cr[0] >= 0.1 and 0.6 < cr[1] < 2.0 and cr[2] <= 15
    assert one(db, "SELECT count(*) FROM labevents WHERE flag = 'abnormal'") > 0
    assert one(db, "SELECT count(*) FROM labevents WHERE (flag = 'abnormal') <> "
                   "(valuenum < ref_range_lower OR valuenum > ref_range_upper)") == 0
    codes = {r[0] for r in db.execute("SELECT DISTINCT icd_code FROM diagnoses_icd").fetchall()}
    assert codes & {"A419", "0389", "I10", "4019", "N179", "5849"}
    drugs = {r[0] for r in db.execute("SELECT DISTINCT drug FROM prescriptions").fetchall()}
    assert {"Vancomycin", "Heparin", "Furosemide"} <= drugs


def test_chartevents_volume_close_to_real_demo(db):
    per_patient = one(db, "SELECT count(*) FROM chartevents") / N
    assert 3500 < per_patient < 11000  # real demo: 6,689 per patient


def test_timestamps_and_nulls_formatted_like_mimic(synth_dir: Path):
    with gzip.open(synth_dir / "hosp/admissions.csv.gz", "rt") as f:
        f.readline()
        rows = [f.readline().rstrip("\n").split(",") for _ in range(20)]
    import re

    for r in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[2])
        assert r[4] == "" or re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[4])
    assert any(r[4] == "" for r in rows)  # deathtime NULL written as an empty, unquoted field


def test_rows_scale_with_patients(tmp_path: Path):
    small = synth.generate(tmp_path / "s", patients=40, seed=3, tables=["admissions", "icustays", "labevents"])
    big = synth.generate(tmp_path / "b", patients=160, seed=3, tables=["admissions", "icustays", "labevents"])
    for key in ["hosp/admissions", "icu/icustays", "hosp/labevents"]:
        assert 2.5 < big.rows[key] / small.rows[key] < 6, key


def test_chartevents_file(tmp_path: Path):
    path = tmp_path / "ce.csv.gz"
    n = synth.chartevents_file(path, rows=12_345, seed=1)
    assert n == 12_345
    cols = [c.name for c in catalog.get("mimiciv").tables("2.2", names=["chartevents"])[0].columns_for("2.2")]
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()[0] == 12_345
    assert [d[0] for d in con.execute(f"DESCRIBE SELECT * FROM read_csv('{path}')").fetchall()] == cols


def test_unknown_table_is_a_clear_error(tmp_path: Path):
    from mimiclab.errors import MimiclabError

    with pytest.raises(MimiclabError, match="chartevent"):
        synth.generate(tmp_path / "x", patients=5, tables=["chartevent"])


def test_cli(tmp_path: Path, mimiclab_home: Path):
    from typer.testing import CliRunner

    from mimiclab.cli import app

    res = CliRunner().invoke(app, ["synth", "--patients", "12", "--seed", "2"])
    assert res.exit_code == 0, res.output
    out = mimiclab_home / "raw" / "mimic-iv-synthetic" / "2.2"
    assert (out / "SYNTHETIC.json").exists() and (out / "icu" / "chartevents.csv.gz").exists()
    assert "chartevents" in res.output


def test_key_ids_never_repeat_where_a_large_set_reaches(tmp_path):
    """orderid/pharmacy_id come from uidk(n): n passes 9e7 near 10,000 patients (skey * 512 + e), where the
    8-digit uid8 wraps around into repeats that the build's primary-key check refuses."""
    import duckdb as _duckdb

    from mimiclab.synth._sql import macros

    con = _duckdb.connect()
    for m in macros(42, 100, 100):
        con.execute(m)
    # ids of the whole set span 0..max(skey) * 512; uid8 gives i and i + 89,999,999 the same value
    same8, samek, top = con.execute(
        "SELECT count(*) FILTER (uid8(i) = uid8(i + 89999999)), count(*) FILTER (uidk(i) = uidk(i + 89999999)), "
        "max(uidk(i)) FROM range(0, 2000000) t(i)").fetchone()
    assert same8 == 2_000_000  # every such pair repeats with the old ids
    assert samek == 0 and top <= 2**31 - 1  # none with the key ids, which stay INTEGER
    n, distinct = con.execute("SELECT count(*), count(DISTINCT uidk(i)) FROM range(0, 3000000) t(i)").fetchone()
    assert distinct == n


def test_failing_compressor_does_not_hang_the_copy(tmp_path: Path, monkeypatch):
    """If the reader side of the pipe fails, it drains the pipe so DuckDB's COPY ends and the error surfaces."""
    def broken(src, level=None):
        src.read(1000)
        raise RuntimeError("compressor broke")

    monkeypatch.setattr(synth, "compress_stream", broken)
    with pytest.raises(RuntimeError, match="compressor broke"):
        synth.generate(tmp_path / "x", patients=20, tables=["chartevents"])
    assert not list((tmp_path / "x").rglob("*.csv.gz*"))


def test_physionet_order_scatters_runs_and_keeps_every_row(tmp_path: Path, mimiclab_home: Path):
    """`order="physionet"`: every table with patients out of patient order, as every such table of the real
    demo is, in runs of its PHYSIONET_RUNS columns (one charting time / one specimen / one admission ...)
    kept together; the same rows (as text, `""` included) as patient order; the same bytes each time; sums
    that match; and a build over it holds every row."""
    from typer.testing import CliRunner

    from mimiclab.cli import app
    from mimiclab.load import build

    n = 30  # a third of the module's set: every table still scatters into many runs
    synth_dir, out = tmp_path / "ordered", tmp_path / "scattered"
    synth.generate(synth_dir, patients=n, seed=7)
    res = CliRunner().invoke(app, ["synth", "--patients", str(n), "--seed", "7", "--order", "physionet", "--dest", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "SYNTHETIC.json").read_text())["order"] == "physionet"
    con = duckdb.connect(config={"threads": 1})  # one thread: rows are read, numbered and lagged in file order

    def text(d: Path, t: str) -> str:
        return f"read_csv('{d / t}.csv.gz', header=true, all_varchar=true, allow_quoted_nulls=false)"

    def load(d: Path, t: str) -> str:  # each file read once, its rows numbered in file order
        name = f"{'a' if d == out else 'b'}_{t.replace('/', '_')}"
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT row_number() OVER () AS n_, * FROM {text(d, t)}")
        return name

    def changes(tab: str, cols: str) -> int:  # runs of equal `cols`: the first row starts one
        return one(con, f"SELECT count(*) FILTER (WHERE n_ = 1 OR k IS DISTINCT FROM p) FROM (SELECT n_, ({cols}) AS k, "
                        f"lag(({cols})) OVER (ORDER BY n_) AS p FROM {tab})")

    def descents(tab: str) -> int:  # rows whose patient is lower than the row before's
        return one(con, f"SELECT count(*) FILTER (WHERE s < p) FROM (SELECT subject_id::BIGINT AS s, "
                        f"lag(subject_id::BIGINT) OVER (ORDER BY n_) AS p FROM {tab})")

    scattered = sorted(str(p.relative_to(out))[:-len(".csv.gz")] for p in out.glob("*/*.csv.gz")
                       if p.name[:-len(".csv.gz")] in synth.PHYSIONET_RUNS)
    with_patients = {t.name for t in catalog.get("mimic-iv-synthetic").tables(synth.DEFAULT_VERSION, modules=["hosp", "icu"])
                     if "subject_id" in {c.name for c in t.columns_for(synth.DEFAULT_VERSION)}}
    assert set(synth.PHYSIONET_RUNS) == with_patients and len(scattered) == len(with_patients) == 24
    for t in scattered:
        a, b = load(out, t), load(synth_dir, t)
        cols = ", ".join(f'"{c}"' for c in con.execute(f"SELECT * FROM {a} LIMIT 0").fetchdf().columns[1:])
        for x, y in [(a, b), (b, a)]:
            assert one(con, f"SELECT count(*) FROM (SELECT {cols} FROM {x} EXCEPT ALL SELECT {cols} FROM {y})") == 0, t
        assert descents(b) == 0 and descents(a) > 0, t
        run = ", ".join(synth.PHYSIONET_RUNS[t.split("/")[1]])
        # each run is together: as many runs as distinct keys (NULLs one key, as hash() and DISTINCT take them)
        assert changes(a, run) == one(con, f"SELECT count(*) FROM (SELECT DISTINCT {run} FROM {a})"), t
        if t in ("icu/chartevents", "hosp/labevents"):  # interleaved, as PhysioNet's are
            patients = one(con, f"SELECT count(DISTINCT subject_id) FROM {a}")
            assert changes(b, "subject_id") == patients and changes(a, "subject_id") > 10 * patients, t
        con.execute(f"DROP TABLE {a}; DROP TABLE {b}")
    for t in ("hosp/d_labitems", "icu/d_items"):  # tables without patients as generated
        assert (out / f"{t}.csv.gz").read_bytes() == (synth_dir / f"{t}.csv.gz").read_bytes()
    for line in (out / "SHA256SUMS.txt").read_text().splitlines():
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == digest, path
    again = tmp_path / "again"
    synth.generate(again, patients=n, seed=7, order="physionet", tables=["labevents"])
    assert (again / "hosp/labevents.csv.gz").read_bytes() == (out / "hosp/labevents.csv.gz").read_bytes()
    r = build("mimic-iv-synthetic", source=out)
    assert r.manifest.tables["mimiciv_hosp.labevents"].rows == one(con, f"SELECT count(*) FROM {text(out, 'hosp/labevents')}")
    with pytest.raises(synth.MimiclabError, match="order must be one of"):
        synth.generate(tmp_path / "bad", patients=2, order="time")


@pytest.mark.parametrize("bucket_bytes", [1 << 40, 20_000, 1])
def test_the_scatter_is_a_stable_sort_of_the_whole_file_by_run_hash(tmp_path: Path, synth_dir: Path,
                                                                    monkeypatch, bucket_bytes: int):
    """The scatter's file is the source's lines sorted by DuckDB's hash of the run's columns, ties in file
    order (the oracle, computed here in Python over the raw lines): with one bucket, a few dozen, and one
    per few hundred bytes of input; also into a folder whose name has a glob character."""
    monkeypatch.setattr(synth, "SCATTER_BUCKET_BYTES", bucket_bytes)
    monkeypatch.setattr(synth, "SCATTER_BATCH", 1000)  # many batches, each cut into many buckets
    src = synth_dir / "icu" / "chartevents.csv.gz"
    out = tmp_path / "b[1]" / "chartevents.csv.gz"  # a glob character in the path: read and written as named
    synth.physionet_order(src, out, "chartevents")
    head, *lines = gzip.decompress(src.read_bytes()).decode().splitlines(keepends=True)
    con = duckdb.connect(config={"threads": 1})  # one thread: rows come back in file order
    hashes = [r[0] for r in con.execute(f"SELECT hash(stay_id, charttime) FROM read_csv('{src}', header=true, "
                                        "all_varchar=true, allow_quoted_nulls=false)").fetchall()]
    assert len(hashes) == len(lines) > 1000
    want = head + "".join(lines[i] for i in sorted(range(len(lines)), key=lambda i: (hashes[i], i)))
    got = gzip.decompress(out.read_bytes()).decode()
    assert got == want
    assert got != head + "".join(lines)  # it did move rows
    assert [p.name for p in out.parent.iterdir()] == ["chartevents.csv.gz"]  # no part or temporary folder left
