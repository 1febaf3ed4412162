"""SQL that builds each synthetic MIMIC-IV table inside DuckDB.

Randomness is hash arithmetic on (key, salt, seed), never random(): results do not depend on thread
scheduling, batch boundaries or evaluation order, so a table can be generated in subject batches and
still be byte-identical. Keys: pidx (patient index), akey = pidx*64 + k (k-th admission), skey =
akey*4 + j (j-th ICU stay). Core tables (pat, adm, icu) are tiny and materialised; event tables are
streamed per subject batch (``{w}`` is the batch filter on pidx).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mimiclab.synth import _vocab as V

P = 9999991  # prime: (i * 7919 + c) % P is a bijection, giving unique, unordered-looking ids


def q(s: str | None) -> str:
    return "NULL" if s is None or s == "" else "'" + str(s).replace("'", "''") + "'"


def wlist(pairs) -> str:
    """A weighted vocabulary as a SQL list literal; "" entries become NULL after nullif()."""
    return "[" + ", ".join(q(v) if v else "''" for v, w in pairs for _ in range(w)) + "]"


def num(x) -> str:
    return "NULL" if x is None else repr(float(x))


@dataclass(frozen=True)
class Rates:
    """How much of everything per patient. The defaults are tuned to the MIMIC-IV demo (ICU-heavy:
    every demo patient had a stay); FULL to MIMIC-IV 3.1's published table sizes. Each knob drives the
    row count of one or a few tables, so a preset can be tuned table by table."""
    adm_scale: float = 2.21  # admissions per patient: 1 + floor(Exp(1) * adm_scale)
    icu0: float = 0.55  # P(admission has no ICU stay)
    icu1: float = 0.94  # P(admission has at most one ICU stay); the rest have two
    chart_fast: float = 0.7  # share of 6-hour ICU blocks with vitals every 15 minutes
    lab_icu_h: float = 12  # hours between lab draws, admissions with an ICU stay
    lab_ward_h: float = 24  # hours between lab draws, other admissions
    poe_per_h: float = 1.0  # provider orders per hospital hour (+3 per admission)
    med_share: float = 0.4  # share of orders that are medications (prescriptions, pharmacy, emar)
    emar_keep: float = 1.0  # share of scheduled doses charted in emar
    poe_fields: int = 1  # poe_detail rows per ADT order
    input_min: float = 120  # minutes between input events of a stay
    ingredient_extra: float = 0.0  # share of input events with a second ingredient row
    output_min: float = 120  # minutes between output events
    dte_h: float = 24  # hours between datetimeevents charting rounds
    proc_h: float = 24  # hours between electrolyte procedureevents
    omr_span: int = 10  # omr visits per patient: 2 + floor(u * omr_span)
    dx_span: int = 20  # diagnoses per admission: 5 + floor(u * dx_span)
    px_ward: float = 2.2  # ICD procedures per non-ICU admission: floor(u * px_ward)
    micro_ward: float = 0.3  # P(microbiology) for a non-ICU admission (ICU admissions always)
    micro_tests: int = 3  # up to this many specimens per admission (at most 4: ids have room for 4)
    micro_pos: float = 0.18  # P(a specimen grows an organism, with susceptibility rows)
    drg_apr: float = 0.65  # P(an APR DRG besides the HCFA one)
    hcpcs: float = 0.12  # P(admission has HCPCS events)
    ward_moves: int = 0  # up to this many extra ward transfers before the first ICU stay or discharge
    providers: float = 10.0  # providers per patient (bounded to 500..40,000 unless per_patient_staff)
    caregivers: float = 8.0  # caregivers per patient (bounded to 300..15,000 unless per_patient_staff)
    per_patient_staff: bool = False
    sized_by_catalog: bool = False  # size batches from MIMIC-IV 3.1's rows per patient (else the demo's)


DEMO = Rates()
# MIMIC-IV 3.1 (catalog: datasets.yaml, mimiciv 3.1 `rows:`): 364,627 patients, 1.50 admissions per
# patient, 17% of admissions with an ICU stay; every other knob tuned so each table lands within 10% of
# its published row count (tests/test_synth_scale.py checks a fraction of the set against the catalog).
FULL = Rates(adm_scale=0.907, icu0=0.841, icu1=0.986, chart_fast=0.62, lab_icu_h=5.6, lab_ward_h=10.3, poe_per_h=0.96,
             med_share=0.3625, emar_keep=0.68, poe_fields=6, input_min=50, ingredient_extra=0.3, output_min=102,
             dte_h=2.2, proc_h=15.5, omr_span=13, dx_span=14, px_ward=3.54, micro_ward=0.9, micro_tests=4,
             micro_pos=0.31, drg_apr=0.40, hcpcs=0.163, ward_moves=3, providers=42244 / 364627,
             caregivers=17984 / 364627, per_patient_staff=True, sized_by_catalog=True)


def macros(seed: int, n_prov: int, n_cg: int) -> list[str]:
    return [
        f"CREATE MACRO u(a, b) AS ((hash(a, b, {seed}::BIGINT) >> 11)::DOUBLE / 9007199254740992.0)",
        f"CREATE MACRO u3(a, b, c) AS ((hash(a, b, c, {seed}::BIGINT) >> 11)::DOUBLE / 9007199254740992.0)",
        "CREATE MACRO nz(x1, x2) AS (sqrt(-2 * ln(greatest(x1, 1e-12))) * cos(2 * pi() * x2))",
        "CREATE MACRO zh(h) AS nz(((h >> 32) + 0.5) / 4294967296.0, (h & 4294967295) / 4294967296.0)",
        f"CREATE MACRO z(a, b) AS zh(hash(a, b, {seed}::BIGINT, 1))",
        f"CREATE MACRO z3(a, b, c) AS zh(hash(a, b, c, {seed}::BIGINT))",
        "CREATE MACRO pick(lst, x) AS nullif(lst[1 + floor(x * len(lst))::INTEGER], '')",
        "CREATE MACRO clamp(x, lo, hi) AS least(greatest(x, lo), hi)",
        "CREATE MACRO secs(x) AS to_seconds(round(x)::BIGINT)",
        "CREATE MACRO mins(x) AS to_minutes(round(x)::BIGINT)",
        "CREATE MACRO fmt(x, d) AS CASE WHEN d = 0 THEN CAST(round(x)::BIGINT AS VARCHAR) ELSE CAST(round(x, d) AS VARCHAR) END",
        f"CREATE MACRO prov(x) AS 'P' || lpad(upper(to_base((floor(x * {n_prov})::BIGINT * 7919 + 104729) % 60466176, 36)), 5, '0')",
        f"CREATE MACRO cg(x) AS (1 + ((floor(x * {n_cg})::BIGINT * 7919 + 17) % 99991))::INTEGER",
        f"CREATE MACRO uid(base, i) AS (base + ((i)::BIGINT * 7919 + {seed % 1000 + 13}) % {P})::INTEGER",
        f"CREATE MACRO uid8(i) AS (10000000 + ((i)::BIGINT * 7919 + {seed % 1000 + 13}) % 89999999)::INTEGER",
        # ids that are keys (orderid, pharmacy_id): a bijection over 2e9 values, so large sets never wrap
        # around into repeats (uid8 repeats once its argument passes 9e7: 10,000 patients got there)
        f"CREATE MACRO uidk(i) AS (100000000 + ((i)::BIGINT * 7919 + {seed % 1000 + 13}) % 1999999999)::INTEGER",
    ]


def core(n: int, seed: int, version: str, r: Rates = DEMO) -> list[str]:
    """pat, adm, icu: the skeleton every other table hangs from."""
    stride = max(1, 9_000_000 // max(n, 1))
    npoe = n_poe(r).replace("hosp_h", "(epoch(dischtime - admittime) / 3600)")
    ndraw = n_draw(r)
    groups = "[" + ", ".join(q(g) for g in V.YEAR_GROUPS.get(version, V.YEAR_GROUPS["3.1"])) + "]"
    ins = wlist(V.INSURANCE.get(version, V.INSURANCE["3.1"]))
    lang = wlist(V.LANGUAGES.get(version, V.LANGUAGES["3.1"]))
    return [
        f"""CREATE TABLE pat AS SELECT i AS pidx,
            (10000000 + i * {stride} + floor(u(i, 1) * {stride}))::INTEGER AS subject_id,
            pick({wlist(V.GENDERS)}, u(i, 2)) AS gender,
            clamp(round(61 + 17 * z(i, 3)), 18, 91)::INTEGER AS anchor_age,
            (2110 + floor(u(i, 4) * 76))::INTEGER AS anchor_year,
            pick({groups}, u(i, 5)) AS anchor_year_group,
            (1 + least(floor(-ln(greatest(u(i, 6), 1e-12)) * {r.adm_scale!r}), 25))::INTEGER AS n_adm,
            pick({ins}, u(i, 7)) AS insurance, pick({lang}, u(i, 8)) AS language,
            pick({wlist(V.MARITAL)}, u(i, 9)) AS marital_status, pick({wlist(V.RACES)}, u(i, 10)) AS race
          FROM range({n}) t(i) ORDER BY i""",
        f"""CREATE TABLE adm0 AS
          WITH a AS (SELECT *, unnest(range(n_adm)) AS k FROM pat),
          b AS (SELECT *, pidx * 64 + k AS akey, k = n_adm - 1 AS is_last FROM a),
          c AS (SELECT *, CASE WHEN u(akey, 10) < {r.icu0!r} THEN 0 WHEN u(akey, 10) < {r.icu1!r} THEN 1 ELSE 2 END AS n_icu,
                  clamp(exp(ln(8) + z(akey, 11)), 0.5, 336) AS pre_h,
                  clamp(exp(ln(68) + 0.85 * z(akey, 12)), 4, 960) AS icu1_h,
                  clamp(exp(ln(58) + 0.85 * z(akey, 13)), 4, 960) AS icu2_h,
                  24 + 72 * u(akey, 14) AS gap_h,
                  clamp(exp(ln(150) + 1.2 * z(akey, 15)), 2, 1500) * 24 AS next_gap_h FROM b),
          d AS (SELECT *, is_last AND u(akey, 16) < CASE WHEN n_icu > 0 THEN 0.16 ELSE 0.02 END AS died FROM c),
          e AS (SELECT *, died AND n_icu > 0 AND u(akey, 17) < 0.7 AS died_in_icu FROM d),
          f AS (SELECT *, CASE WHEN died_in_icu THEN 0 ELSE clamp(exp(ln(40) + 0.8 * z(akey, 18)), 4, 720) END AS post_h,
                  clamp(exp(ln(60) + 0.8 * z(akey, 19)), 5, 1440) AS ward_h FROM e),
          g AS (SELECT *, CASE WHEN n_icu = 0 THEN ward_h
                  ELSE pre_h + icu1_h + CASE WHEN n_icu = 2 THEN gap_h + icu2_h ELSE 0 END + post_h END AS los_h FROM f)
          SELECT *, u(pidx, 20) * 365 * 24 + coalesce(sum(los_h + next_gap_h) OVER (PARTITION BY pidx ORDER BY k
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS off_h,
                (row_number() OVER (ORDER BY pidx, k) - 1) AS aidx
          FROM g ORDER BY pidx, k""",
        f"""CREATE TABLE adm AS
          WITH a AS (SELECT *, date_trunc('minute', make_timestamp(anchor_year, 1, 1, 0, 0, 0) + secs(off_h * 3600)) AS admittime
                     FROM adm0),
          b AS (SELECT *, admittime + secs(pre_h * 3600 + 60 * u(akey, 21)) AS icu1_in FROM a),
          c AS (SELECT *, icu1_in + secs(icu1_h * 3600) AS icu1_out FROM b),
          d AS (SELECT *, icu1_out + secs(gap_h * 3600) AS icu2_in FROM c),
          e AS (SELECT *, icu2_in + secs(icu2_h * 3600) AS icu2_out FROM d),
          f AS (SELECT *, CASE WHEN n_icu = 0 THEN admittime + mins(ward_h * 60)
                  ELSE date_trunc('minute', CASE WHEN n_icu = 2 THEN icu2_out ELSE icu1_out END + secs(post_h * 3600))
                       + INTERVAL 1 MINUTE END AS dischtime,
                  CASE WHEN n_icu > 0 THEN pick({wlist(V.ADMISSION_TYPES_ICU)}, u(akey, 22))
                       ELSE pick({wlist(V.ADMISSION_TYPES_WARD)}, u(akey, 22)) END AS admission_type FROM e),
          g AS (SELECT *, admission_type IN ('EW EMER.', 'EU OBSERVATION') AS via_ed FROM f)
          SELECT *, uid(20000000, aidx) AS hadm_id, epoch(dischtime - admittime) / 3600 AS hosp_h,
            CASE WHEN via_ed THEN admittime - secs(3600 + 9 * 3600 * u(akey, 23)) END AS edregtime,
            CASE WHEN via_ed THEN admittime END AS edouttime,
            sum(n_icu) OVER (ORDER BY aidx) - n_icu AS icu_base,
            sum({npoe}) OVER (ORDER BY aidx) - ({npoe}) AS poe_gbase,
            coalesce(sum({npoe}) OVER (PARTITION BY pidx ORDER BY k
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS poe_base,
            sum({ndraw.replace("hosp_h", "(epoch(dischtime - admittime) / 3600)")}) OVER (ORDER BY aidx) * 40 AS lab_end
          FROM g ORDER BY aidx""",
        f"""CREATE TABLE icu AS
          WITH a AS (SELECT *, unnest(range(n_icu)) AS j FROM adm)
          SELECT pidx, subject_id, hadm_id, akey, aidx, admittime, akey * 4 + j AS skey, j, uid(30000000, icu_base + j) AS stay_id,
            CASE WHEN j = 0 THEN icu1_in ELSE icu2_in END AS intime,
            CASE WHEN j = 0 THEN icu1_out ELSE icu2_out END AS outtime,
            pick({wlist(V.ICU_UNITS)}, u(akey * 4 + j, 30)) AS careunit,
            u(akey * 4 + j, 31) < 0.4 AS vent, u(akey * 4 + j, 32) < 0.45 AS art,
            round(clamp(exp(ln(80) + 0.25 * z(pidx, 33)), 40, 180), 1) AS weight
          FROM a ORDER BY aidx, j""",
        "ALTER TABLE icu ADD COLUMN hours INTEGER",
        "UPDATE icu SET hours = ceil(epoch(outtime - intime) / 3600)::INTEGER",
        # dense bases so that order ids stay unique (and INTEGER) at full scale
        f"""CREATE TABLE icu2 AS SELECT *, sum({n_inputs(r)}) OVER (ORDER BY aidx, j) - {n_inputs(r)} AS inp_base,
            (sum({n_procdays(r)}) OVER (ORDER BY aidx, j) - {n_procdays(r)}) * 6 AS proc_base FROM icu ORDER BY aidx, j""",
        "DROP TABLE icu",
        "ALTER TABLE icu2 RENAME TO icu",
    ]


def n_poe(r: Rates) -> str:
    return "floor(hosp_h)::BIGINT + 3" if r.poe_per_h == 1.0 else f"floor(hosp_h * {r.poe_per_h!r})::BIGINT + 3"


def n_draw(r: Rates) -> str:
    return (f"greatest(1, floor((hosp_h - 3) / CASE WHEN n_icu > 0 THEN {_n(r.lab_icu_h)} ELSE {_n(r.lab_ward_h)} END)::BIGINT + 1)")


def n_inputs(r: Rates) -> str:
    return f"greatest(1, floor(hours * 60 / {_n(r.input_min)})::BIGINT)"


def n_procdays(r: Rates) -> str:
    return f"greatest(1, floor(hours / {_n(r.proc_h)})::BIGINT)"


def _n(x: float) -> str:
    """A number as SQL: integers without a decimal point, so integer arithmetic stays integer."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# ---------------------------------------------------------------- small tables (whole, ORDER BY)
def small_tables(version: str, n_prov: int, n_cg: int, r: Rates = DEMO) -> dict[str, tuple[str, str]]:
    """name -> (SQL, ORDER BY). Written in one piece."""
    dx = V.ICD_DIAGNOSES
    px = V.ICD_PROCEDURES
    t: dict[str, tuple[str, str]] = {}
    t["patients"] = ("""WITH d AS (SELECT pidx, bool_or(died) AS died, max(dischtime) AS last_disch FROM adm GROUP BY pidx)
        SELECT subject_id, gender, anchor_age, anchor_year, anchor_year_group,
          CASE WHEN died THEN last_disch::DATE
               WHEN u(pidx, 40) < 0.08 THEN (last_disch + secs(86400 * (1 + 360 * u(pidx, 41))))::DATE END AS dod
        FROM pat JOIN d USING (pidx)""", "subject_id")
    t["admissions"] = (f"""SELECT subject_id, hadm_id, admittime, dischtime, CASE WHEN died THEN dischtime END AS deathtime,
          admission_type, prov(u(akey, 42)) AS admit_provider_id,
          CASE WHEN via_ed THEN 'EMERGENCY ROOM' ELSE pick({wlist(V.ADMISSION_LOCATIONS)}, u(akey, 43)) END AS admission_location,
          CASE WHEN died THEN 'DIED' ELSE pick({wlist(V.DISCHARGE_LOCATIONS)}, u(akey, 44)) END AS discharge_location,
          insurance, language, marital_status, race, edregtime, edouttime, died::INTEGER AS hospital_expire_flag
        FROM adm""", "subject_id, admittime")
    t["icustays"] = ("""SELECT subject_id, hadm_id, stay_id, careunit AS first_careunit, careunit AS last_careunit,
          intime, outtime, epoch(outtime - intime) / 86400.0 AS los FROM icu""", "subject_id, intime")
    wards = wlist(V.WARDS)
    moves = ("SELECT *, 0 AS pc, 1 AS npc FROM adm" if r.ward_moves == 0 else
             f"SELECT *, unnest(range(npc)) AS pc FROM (SELECT *, 1 + floor(u(akey, 53) * {r.ward_moves + 1})::INTEGER AS npc FROM adm)")
    t["transfers"] = (f"""WITH mv AS ({moves}),
        seg AS (
          SELECT subject_id, hadm_id, akey, aidx, 0 AS o, 'ED' AS eventtype, 'Emergency Department' AS careunit, edregtime AS intime, admittime AS outtime FROM adm WHERE via_ed
          UNION ALL SELECT subject_id, hadm_id, akey, aidx, CASE WHEN pc = 0 THEN 1 ELSE 5 + pc END,
            CASE WHEN pc = 0 THEN 'admit' ELSE 'transfer' END, pick({wards}, CASE WHEN pc = 0 THEN u(akey, 50) ELSE u3(akey, pc, 50) END),
            CASE WHEN pc = 0 THEN admittime ELSE date_trunc('minute', admittime + secs(epoch(ward_end - admittime) * pc / npc)) END,
            CASE WHEN pc = npc - 1 THEN ward_end ELSE date_trunc('minute', admittime + secs(epoch(ward_end - admittime) * (pc + 1) / npc)) END
            FROM (SELECT *, CASE WHEN n_icu = 0 THEN dischtime ELSE icu1_in END AS ward_end FROM mv)
          UNION ALL SELECT subject_id, hadm_id, akey, aidx, 2 + 2 * j, 'transfer', careunit, intime, outtime FROM icu
          UNION ALL SELECT subject_id, hadm_id, akey, aidx, 3, 'transfer', pick({wards}, u(akey, 51)), icu1_out, icu2_in FROM adm WHERE n_icu = 2
          UNION ALL SELECT subject_id, hadm_id, akey, aidx, 5, 'transfer', pick({wards}, u(akey, 52)),
              CASE WHEN n_icu = 2 THEN icu2_out ELSE icu1_out END, dischtime FROM adm WHERE n_icu > 0 AND NOT died_in_icu
          UNION ALL SELECT subject_id, hadm_id, akey, aidx, 9, 'discharge', NULL, dischtime, NULL FROM adm)
        SELECT subject_id, hadm_id, uid(30000000, aidx * 10 + o) AS transfer_id, eventtype, careunit, intime, outtime,
          akey, o FROM seg""", "subject_id, akey, intime, o")
    svc = wlist(V.SERVICES)
    t["services"] = (f"""SELECT subject_id, hadm_id, admittime + secs(60 * u(akey, 60)) AS transfertime, NULL AS prev_service,
          pick({svc}, u(akey, 61)) AS curr_service, 0 AS o, akey FROM adm
        UNION ALL SELECT subject_id, hadm_id, admittime + secs(hosp_h * 3600 * (0.3 + 0.4 * u(akey, 62))), pick({svc}, u(akey, 61)),
          pick({svc}, u(akey, 63)), 1, akey FROM adm WHERE u(akey, 64) < 0.15""", "subject_id, akey, o")
    n9 = sum(1 for c in dx if c[1] == 9)
    n10 = len(dx) - n9
    dx9 = "[" + ", ".join(q(c[0]) for c in dx if c[1] == 9) + "]"
    dx10 = "[" + ", ".join(q(c[0]) for c in dx if c[1] == 10) + "]"
    steps9 = "[" + ", ".join(str(s) for s in range(1, n9) if math.gcd(s, n9) == 1) + "]"
    steps10 = "[" + ", ".join(str(s) for s in range(1, n10) if math.gcd(s, n10) == 1) + "]"
    # ICD-10 replaced ICD-9 in US hospitals in October 2015: later anchor groups mostly code in ICD-10.
    t["_icdver"] = ("", "")
    icdver = ("CASE WHEN u(akey, 70) < CASE WHEN anchor_year_group < '2014' THEN 0.05 WHEN anchor_year_group < '2017' "
              "THEN 0.5 ELSE 0.97 END THEN 10 ELSE 9 END")
    t["diagnoses_icd"] = (f"""WITH a AS (SELECT subject_id, hadm_id, akey, admittime, {icdver} AS v,
            (5 + floor(u(akey, 71) * {r.dx_span}))::INTEGER AS n FROM adm),
          b AS (SELECT *, unnest(range(least(n, CASE WHEN v = 9 THEN {n9} ELSE {n10} END))) AS s FROM a)
        SELECT subject_id, hadm_id, s + 1 AS seq_num,
          CASE WHEN v = 9 THEN {dx9}[1 + ((floor(u(akey, 72) * {n9}) + s * {steps9}[1 + floor(u(akey, 73) * len({steps9}))::INTEGER]) % {n9})::INTEGER]
               ELSE {dx10}[1 + ((floor(u(akey, 72) * {n10}) + s * {steps10}[1 + floor(u(akey, 73) * len({steps10}))::INTEGER]) % {n10})::INTEGER] END AS icd_code,
          v AS icd_version, admittime FROM b""", "subject_id, admittime, seq_num")
    del t["_icdver"]
    p9 = "[" + ", ".join(q(c[0]) for c in px if c[1] == 9) + "]"
    p10 = "[" + ", ".join(q(c[0]) for c in px if c[1] == 10) + "]"
    t["procedures_icd"] = (f"""WITH a AS (SELECT subject_id, hadm_id, akey, admittime, hosp_h, {icdver} AS v,
            (CASE WHEN n_icu > 0 THEN 1 + floor(u(akey, 74) * 5) ELSE floor(u(akey, 74) * {r.px_ward!r}) END)::INTEGER AS n FROM adm),
          b AS (SELECT *, unnest(range(n)) AS s FROM a)
        SELECT subject_id, hadm_id, s + 1 AS seq_num, (admittime + secs(hosp_h * 3600 * (s + u3(akey, s, 75)) / n))::DATE AS chartdate,
          CASE WHEN v = 9 THEN {p9}[1 + ((floor(u(akey, 76) * len({p9})) + s) % len({p9}))::INTEGER]
               ELSE {p10}[1 + ((floor(u(akey, 76) * len({p10})) + s) % len({p10}))::INTEGER] END AS icd_code,
          v AS icd_version FROM b""", "subject_id, chartdate, seq_num")
    hcfa = [d for d in V.DRG if d[0] == "HCFA"]
    apr = [d for d in V.DRG if d[0] != "HCFA"]
    hl = "[" + ", ".join(f"{{'c': {q(d[1])}, 'd': {q(d[2])}}}" for d in hcfa) + "]"
    al = "[" + ", ".join(f"{{'c': {q(d[1])}, 'd': {q(d[2])}}}" for d in apr) + "]"
    t["drgcodes"] = (f"""WITH a AS (SELECT subject_id, hadm_id, akey, admittime, {hl}[1 + floor(u(akey, 80) * {len(hcfa)})::INTEGER] AS h,
            {al}[1 + floor(u(akey, 80) * {len(apr)})::INTEGER] AS p FROM adm)
        SELECT subject_id, hadm_id, 'HCFA' AS drg_type, h.c AS drg_code, h.d AS description, NULL AS drg_severity, NULL AS drg_mortality, admittime, 0 AS o FROM a
        UNION ALL SELECT subject_id, hadm_id, 'APR', p.c, p.d, (1 + floor(u(akey, 81) * 4))::INTEGER, (1 + floor(u(akey, 82) * 4))::INTEGER, admittime, 1
          FROM a WHERE u(akey, 83) < {r.drg_apr!r}""", "subject_id, admittime, o")
    hc = "[" + ", ".join(f"{{'c': {q(h[0])}, 's': {q(h[2])}}}" for h in V.HCPCS) + "]"
    t["hcpcsevents"] = (f"""WITH a AS (SELECT subject_id, hadm_id, akey, admittime, hosp_h, unnest(range(1 + floor(u(akey, 85) * 3)::INTEGER)) AS s
            FROM adm WHERE u(akey, 84) < {r.hcpcs!r}),
          b AS (SELECT *, {hc}[1 + ((floor(u(akey, 86) * {len(V.HCPCS)}) + s) % {len(V.HCPCS)})::INTEGER] AS h FROM a)
        SELECT subject_id, hadm_id, (admittime + secs(hosp_h * 3600 * u3(akey, s, 87)))::DATE AS chartdate, h.c AS hcpcs_cd,
          s + 1 AS seq_num, h.s AS short_description FROM b""", "subject_id, chartdate, seq_num")
    t["omr"] = (f"""WITH a AS (SELECT pidx, subject_id, anchor_year, unnest(range(2 + floor(u(pidx, 90) * {r.omr_span})::INTEGER)) AS v FROM pat),
          b AS (SELECT *, (make_date(anchor_year, 1, 1) + to_days((v * 120 + floor(u3(pidx, v, 91) * 100))::INTEGER))::DATE AS chartdate,
            clamp(170 + 10 * z(pidx, 92), 145, 200) AS h_cm, clamp(80 + 18 * z(pidx, 93), 40, 180) + 3 * z3(pidx, v, 94) AS w_kg FROM a),
          c AS (SELECT *, unnest([
            {{'n': 'Blood Pressure', 'v': CAST(round(clamp(128 + 16 * z3(pidx, v, 95), 85, 200))::INTEGER AS VARCHAR) || '/' ||
                                          CAST(round(clamp(76 + 10 * z3(pidx, v, 95), 45, 120))::INTEGER AS VARCHAR), 'o': 0}},
            {{'n': 'Weight (Lbs)', 'v': CAST(round(w_kg * 2.20462, 1) AS VARCHAR), 'o': 1}},
            {{'n': 'BMI (kg/m2)', 'v': CAST(round(w_kg / (h_cm / 100) ^ 2, 1) AS VARCHAR), 'o': 2}},
            {{'n': 'Height (Inches)', 'v': CAST(round(h_cm / 2.54)::INTEGER AS VARCHAR), 'o': 3}}]) AS r FROM b
            WHERE v = 0 OR u3(pidx, v, 96) < 0.8)
        SELECT subject_id, chartdate, 1 AS seq_num, r.n AS result_name, r.v AS result_value, v, r.o AS o FROM c
          WHERE r.o <> 3 OR v = 0""", "subject_id, chartdate, o")
    t["provider"] = (f"""SELECT DISTINCT prov((i + 0.5) / {n_prov}) AS provider_id FROM range({n_prov}) t(i)""", "provider_id")
    t["caregiver"] = (f"""SELECT DISTINCT cg((i + 0.5) / {n_cg}) AS caregiver_id FROM range({n_cg}) t(i)""", "caregiver_id")
    # dictionaries
    t["d_icd_diagnoses"] = ("SELECT * FROM (VALUES " + ", ".join(f"({q(c)}, {v}, {q(d)})" for c, v, d in dx)
                            + ") t(icd_code, icd_version, long_title)", "icd_version, icd_code")
    t["d_icd_procedures"] = ("SELECT * FROM (VALUES " + ", ".join(f"({q(c)}, {v}, {q(d)})" for c, v, d in px)
                             + ") t(icd_code, icd_version, long_title)", "icd_version, icd_code")
    t["d_hcpcs"] = ("SELECT * FROM (VALUES " + ", ".join(f"({q(c)}, NULL::INTEGER, {q(lng)}, {q(s)})" for c, lng, s, _ in V.HCPCS)
                    + ") t(code, category, long_description, short_description)", "code")
    t["d_labitems"] = ("SELECT * FROM (VALUES " + ", ".join(f"({x[0]}, {q(x[1])}, {q(x[2])}, {q(x[3])})" for x in V.LABS)
                       + ") t(itemid, label, fluid, category)", "itemid")
    items = [(c["itemid"], c["label"], c["abbreviation"], c["linksto"], c["category"], c["unitname"], c["param_type"],
              c["lownormalvalue"], c["highnormalvalue"]) for c in V.CHART_ITEMS + V.ADMIT_ITEMS]
    items += [(*x, None, None) for x in V.OTHER_ITEMS]
    t["d_items"] = ("SELECT * FROM (VALUES " + ", ".join(
        f"({i}, {q(lab)}, {q(ab)}, {q(lk)}, {q(cat)}, {q(un)}, {q(pt)}, {num(lo)}, {num(hi)})"
        for i, lab, ab, lk, cat, un, pt, lo, hi in items)
        + ") t(itemid, label, abbreviation, linksto, category, unitname, param_type, lownormalvalue, highnormalvalue)", "itemid")
    return t


# ---------------------------------------------------------------- event tables (per subject batch)
def _dist(mean: float, sd: float) -> tuple[bool, float, float]:
    """Skewed quantities (creatinine, lactate, ...) are log-normal; others normal."""
    if mean > 0 and sd / mean > 0.3:
        s = math.sqrt(math.log(1 + (sd / mean) ** 2))
        return True, math.log(mean) - s * s / 2, s
    return False, float(mean), float(sd)


def _chart_structs(items: list[dict]) -> tuple[list[str], str, str]:
    """Item structs plus two flat option lists; options are looked up by offset so that unnesting the
    item list per charted hour copies only scalars (this is the hot loop of the whole generator)."""
    structs: list[str] = []
    opt_t: list[str] = []
    opt_n: list[str] = []
    for c in items:
        logn, mu, sig = _dist(c["mean"], c["sd"])
        off = len(opt_t) + 1
        for t, n in c["options"]:
            opt_t.append(q(t))
            opt_n.append(num(n))
        grp = {220180: 220179, 220181: 220179, 220051: 220050, 220052: 220050}.get(c["itemid"], c["itemid"])
        cond = {"": 0, "vent": 1, "novent": 2, "art": 3}[c["cond"]]
        structs.append(f"{{'itemid': {c['itemid']}, 'grp': {grp}, 'period': {c['period']}, 'cond': {cond}, "
                       f"'logn': {str(logn).lower()}, 'mu': {mu!r}, 'sig': {sig!r}, 'dec': {c['dec']}, 'lo': {float(c['lo'])!r}, "
                       f"'hi': {float(c['hi'])!r}, 'uom': {q(c['unitname'])}::VARCHAR, 'off': {off}, 'nopt': {len(c['options'])}}}")
    return structs, "[" + ", ".join(opt_t) + "]", "([" + ", ".join(opt_n) + "]::DOUBLE[])"


def chartevents_rows_per_hour() -> tuple[float, float]:
    """Expected rows per ICU hour (ordinary hour, fast hour) — used to size batches."""
    base = sum((1 / c["period"]) * {"": 1, "vent": 0.4, "novent": 0.6, "art": 0.45}[c["cond"]] for c in V.CHART_ITEMS)
    fast = sum({"": 1, "art": 0.45}.get(c["cond"], 0) for c in V.CHART_ITEMS if c["fast"]) * 3
    return base, fast


FAST_SHARE = 0.7  # share of 6-hour blocks with vitals every 15 minutes (unstable periods)


def chartevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    items = V.ADMIT_ITEMS + V.CHART_ITEMS
    structs, opt_t, opt_n = _chart_structs(items)
    all_l = "[" + ", ".join(structs) + "]"
    fast_l = "[" + ", ".join(st for st, c in zip(structs, items, strict=True) if c["fast"]) + "]"
    sql = f"""WITH s AS (SELECT subject_id, hadm_id, stay_id, skey, intime, outtime, hours,
              CASE WHEN vent THEN 1 ELSE 2 END AS c1, CASE WHEN art THEN 3 ELSE 0 END AS c2, weight FROM icu WHERE {w}),
      hh AS (SELECT *, unnest(range(hours)) AS h FROM s),
      sl AS (SELECT *, unnest(CASE WHEN u3(skey, h // 6, 200) < {r.chart_fast!r} THEN [0, 1, 2, 3] ELSE [0] END) AS qq FROM hh),
      r AS (SELECT *, date_trunc('hour', intime) + to_minutes(60 * (h + 1) + 15 * qq) AS charttime,
              unnest(CASE WHEN qq = 0 THEN {all_l} ELSE {fast_l} END) AS it FROM sl),
      f AS (SELECT * FROM r WHERE charttime < outtime
              AND CASE WHEN it.period = 0 THEN h = 0 ELSE (h + (stay_id + it.itemid) % it.period) % it.period = 0 END
              AND (it.cond = 0 OR it.cond = c1 OR it.cond = c2)),
      v AS (SELECT *, 0.5 * z3(skey, it.grp, 201) + 0.85 * z3(skey * 4 + qq, h * 1000000 + it.grp, 202) AS zz,
              it.off + floor(u3(skey * 4 + qq, h * 1000000 + it.itemid, 203) * it.nopt)::INTEGER AS oi FROM f)
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, h // 12, 204)) AS caregiver_id, charttime,
        charttime + to_seconds(floor(60 + 2400 * u3(skey * 4 + qq, h, 205))::BIGINT) AS storetime, it.itemid AS itemid,
        CASE WHEN it.nopt > 0 THEN {opt_t}[oi]
             WHEN it.itemid = 226512 THEN CAST(weight AS VARCHAR)
             ELSE fmt(clamp(CASE WHEN it.logn THEN exp(it.mu + it.sig * zz) ELSE it.mu + it.sig * zz END, it.lo, it.hi), it.dec) END AS value,
        CASE WHEN it.nopt > 0 THEN fmt({opt_n}[oi], 0) ELSE value END AS valuenum,
        it.uom AS valueuom, 0 AS warning
      FROM v"""
    return sql, None  # already in (subject, time) order


def labevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    labs = []
    for i, x in enumerate(V.LABS):
        itemid, _label, _fluid, _cat, uom, mean, sd, dec, rlo, rhi, lo, hi, panel = x
        logn, mu, sig = _dist(mean, sd)
        labs.append(f"{{'i': {i}, 'itemid': {itemid}, 'uom': {q(uom)}::VARCHAR, 'logn': {str(logn).lower()}, 'mu': {mu!r}, "
                    f"'sig': {sig!r}, 'dec': {dec}, 'rlo': {num(rlo)}, 'rhi': {num(rhi)}, 'lo': {float(lo)!r}, 'hi': {float(hi)!r}, "
                    f"'panel': {V.LAB_PANELS.index(panel)}}}")
    ll = "[" + ", ".join(labs) + "]"
    sql = f"""WITH a AS (SELECT subject_id, hadm_id, akey, aidx, n_icu, admittime, hosp_h, lab_end,
              {n_draw(r)} AS n_draw FROM adm WHERE {w}),
      d AS (SELECT *, unnest(range(n_draw)) AS d FROM a),
      t AS (SELECT *, date_trunc('minute', admittime + secs(3600 * (1 + d * CASE WHEN n_icu > 0 THEN {_n(r.lab_icu_h)} ELSE {_n(r.lab_ward_h)} END
              + 2 * u3(akey, d, 300)))) AS charttime,
              CASE WHEN u3(akey, d, 304) < 0.2 THEN prov(u3(akey, d, 305)) END AS prov_id,
              pick(['STAT', 'STAT', 'ROUTINE', 'ROUTINE', ''], u3(akey, d, 307)) AS prio FROM d),
      r AS (SELECT *, unnest({ll}) AS it FROM t),
      f AS (SELECT * FROM r WHERE it.panel <= 1 OR (it.panel = 2 AND d % 2 = 0) OR (it.panel = 3 AND d % 3 = 0)
              OR (it.panel = 4 AND n_icu > 0 AND d % 2 = 1) OR (it.panel = 5 AND d = 0 AND u(akey, 301) < 0.5)),
      v AS (SELECT *, clamp(CASE WHEN it.logn THEN exp(it.mu + it.sig * (0.6 * z3(akey, it.itemid, 302) + 0.8 * z3(akey * 4096 + d, it.itemid, 303)))
              ELSE it.mu + it.sig * (0.6 * z3(akey, it.itemid, 302) + 0.8 * z3(akey * 4096 + d, it.itemid, 303)) END, it.lo, it.hi) AS x FROM f),
      y AS (SELECT *, round(x, it.dec) AS xr FROM v)
      SELECT (lab_end - n_draw * 40 + d * 40 + it.i + 1)::INTEGER AS labevent_id, subject_id, hadm_id,
        uid8((lab_end // 40 - n_draw + d) * 8 + it.panel) AS specimen_id, it.itemid AS itemid,
        prov_id AS order_provider_id,
        charttime, charttime + to_minutes(floor(20 + 160 * u3(akey, d, 306 + it.panel))::BIGINT) AS storetime,
        fmt(xr, it.dec) AS value, fmt(xr, it.dec) AS valuenum, nullif(it.uom, '') AS valueuom,
        it.rlo AS ref_range_lower, it.rhi AS ref_range_upper,
        CASE WHEN xr < it.rlo OR xr > it.rhi THEN 'abnormal' END AS flag,
        prio AS priority, NULL AS comments
      FROM y"""
    return sql, None


def _drugs_list() -> str:
    out = []
    for d in V.DRUGS:
        drug, cd, strength, form, dose, unit, route, freq, per24, wt = d
        s = (f"{{'drug': {q(drug)}, 'cd': {q(cd)}, 'strength': {q(strength)}, 'form': {q(form)}::VARCHAR, 'dose': {q(dose)}, "
             f"'unit': {q(unit)}, 'route': {q(route)}, 'freq': {q(freq)}, 'per24': {per24}}}")
        out += [s] * wt
    return "[" + ", ".join(out) + "]"


def _poe_base(w: str, r: Rates = DEMO) -> str:
    others = "[" + ", ".join(f"{{'t': {q(t)}, 's': {q(s)}::VARCHAR}}" for t, s, wt in V.POE_OTHER for _ in range(wt)) + "]"
    return f"""a AS (SELECT subject_id, hadm_id, akey, admittime, dischtime, hosp_h, poe_base, poe_gbase,
              {n_poe(r)} AS n_poe FROM adm WHERE {w}),
      p AS (SELECT *, unnest(range(n_poe)) AS j FROM a),
      o AS (SELECT *, poe_base + j + 1 AS poe_seq, admittime + secs(hosp_h * 3600 * (j + u3(akey, j, 400)) / n_poe) AS ordertime,
              u3(akey, j, 401) < {r.med_share!r} AS is_med, {others}[1 + floor(u3(akey, j, 402) * {sum(x[2] for x in V.POE_OTHER)})::INTEGER] AS ot,
              {_drugs_list()}[1 + floor(u3(akey, j, 403) * {sum(x[9] for x in V.DRUGS)})::INTEGER] AS dr,
              uidk(poe_gbase + j) AS pharmacy_id FROM p),
      m0 AS (SELECT *, subject_id || '-' || poe_seq AS poe_id,
              least(date_trunc('hour', ordertime) + INTERVAL 1 HOUR, dischtime) AS starttime FROM o),
      m AS (SELECT *, greatest(starttime, least(date_trunc('hour', ordertime) + to_hours((13 + floor(u3(akey, j, 404) * 96))::BIGINT),
              dischtime)) AS stoptime FROM m0)"""


def poe(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_poe_base(w, r)}
      SELECT poe_id, poe_seq, subject_id, hadm_id, ordertime, CASE WHEN is_med THEN 'Medications' ELSE ot.t END AS order_type,
        CASE WHEN is_med THEN NULL ELSE ot.s END AS order_subtype, 'New' AS transaction_type, NULL AS discontinue_of_poe_id,
        NULL AS discontinued_by_poe_id, prov(u3(akey, j, 405)) AS order_provider_id, 'Inactive' AS order_status FROM m""", None)


def poe_detail(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_poe_base(w, r)}
      SELECT poe_id, poe_seq, subject_id, fv.n AS field_name, fv.v AS field_value
        FROM (SELECT *, unnest({_poe_fields(r)}) AS fv FROM m WHERE NOT is_med AND ot.t = 'ADT orders')""", None)


POE_FIELDS = [("Admit to", "Medicine"), ("Admit category", "Admit to inpatient"), ("Code status", "Full code"),
              ("Level of Urgency", "Urgent"), ("Discharge Planning", "Finalized"), ("Transfer to", "Medicine"),
              ("Tubes & Drains type", "Foley"), ("Consult Status", "Active")]


def _poe_fields(r: Rates) -> str:
    return "[" + ", ".join(f"{{'n': {q(n)}, 'v': {q(v)}}}" for n, v in POE_FIELDS[:max(1, min(r.poe_fields, len(POE_FIELDS)))]) + "]"


def prescriptions(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_poe_base(w, r)}
      SELECT subject_id, hadm_id, pharmacy_id, poe_id, poe_seq, prov(u3(akey, j, 405)) AS order_provider_id, starttime, stoptime,
        'MAIN' AS drug_type, dr.drug AS drug, dr.cd AS formulary_drug_cd, NULL AS gsn,
        lpad(CAST((hash(dr.cd) % 99999999999)::BIGINT AS VARCHAR), 11, '0') AS ndc, dr.strength AS prod_strength,
        dr.form AS form_rx, dr.dose AS dose_val_rx, dr.unit AS dose_unit_rx, dr.dose AS form_val_disp, dr.unit AS form_unit_disp,
        dr.per24 AS doses_per_24_hrs, dr.route AS route FROM m WHERE is_med""", "subject_id, starttime, poe_seq")


def pharmacy(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_poe_base(w, r)}
      SELECT subject_id, hadm_id, pharmacy_id, poe_id, starttime, stoptime, dr.drug AS medication,
        CASE WHEN dr.route LIKE 'IV%' THEN 'IV Piggyback' ELSE 'Unit Dose' END AS proc_type,
        CASE WHEN stoptime = dischtime THEN 'Discontinued via patient discharge' ELSE 'Expired' END AS status,
        ordertime AS entertime, ordertime + secs(60 + 1800 * u3(akey, j, 406)) AS verifiedtime, dr.route AS route,
        dr.freq AS frequency, NULL AS disp_sched, NULL AS infusion_type, NULL AS sliding_scale, NULL AS lockout_interval,
        NULL AS basal_rate, NULL AS one_hr_max, dr.per24 AS doses_per_24_hrs, NULL AS duration, NULL AS duration_interval,
        NULL AS expiration_value, NULL AS expiration_unit, NULL AS expirationdate, 'Omnicell' AS dispensation,
        NULL AS fill_quantity, poe_seq FROM m WHERE is_med""", "subject_id, starttime, poe_seq")


def _emar_base(w: str, r: Rates = DEMO) -> str:
    return f"""{_poe_base(w, r)},
      e AS (SELECT *, unnest(range(least(8, greatest(1, floor(epoch(stoptime - starttime) / 3600 / (24.0 / dr.per24))::BIGINT)))) AS mm
              FROM m WHERE is_med),
      x AS (SELECT *, starttime + to_minutes((mm * 1440 // dr.per24)::BIGINT) AS scheduletime, poe_seq * 32 + mm AS emar_seq FROM e),
      y AS (SELECT *, scheduletime + to_minutes(floor(-20 + 50 * u3(akey * 4096 + j, mm, 410))::BIGINT) AS charttime FROM x
              WHERE scheduletime < stoptime{"" if r.emar_keep >= 1 else f" AND u3(akey * 4096 + j, mm, 413) < {r.emar_keep!r}"})"""


def emar(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_emar_base(w, r)}
      SELECT subject_id, hadm_id, subject_id || '-' || emar_seq AS emar_id, emar_seq, poe_id, pharmacy_id,
        NULL AS enter_provider_id, charttime, dr.drug AS medication,
        CASE WHEN u3(akey * 4096 + j, mm, 411) < 0.9 THEN 'Administered' ELSE 'Not Given' END AS event_txt,
        scheduletime, charttime + to_minutes(floor(1 + 30 * u3(akey * 4096 + j, mm, 412))::BIGINT) AS storetime FROM y""",
            "subject_id, charttime, emar_seq")


def emar_detail(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_emar_base(w, r)},
      z AS (SELECT *, unnest([0, 1]) AS part FROM y)
      SELECT subject_id, subject_id || '-' || emar_seq AS emar_id, emar_seq,
        CASE WHEN part = 1 THEN '1.1' END AS parent_field_ordinal,
        CASE WHEN part = 0 THEN 'Medication Administered' END AS administration_type, pharmacy_id,
        CASE WHEN part = 1 THEN 'Product' END AS barcode_type, NULL AS reason_for_no_barcode, NULL AS complete_dose_not_given,
        CASE WHEN part = 0 THEN dr.dose END AS dose_due, CASE WHEN part = 0 THEN dr.unit END AS dose_due_unit,
        CASE WHEN part = 1 THEN dr.dose END AS dose_given, CASE WHEN part = 1 THEN dr.unit END AS dose_given_unit,
        NULL AS will_remainder_of_dose_be_given, CASE WHEN part = 1 THEN '1' END AS product_amount_given,
        CASE WHEN part = 1 THEN coalesce(dr.form, 'VIAL') END AS product_unit, CASE WHEN part = 1 THEN dr.cd END AS product_code,
        CASE WHEN part = 1 THEN dr.drug || ' ' || dr.strength END AS product_description, NULL AS product_description_other,
        NULL AS prior_infusion_rate, NULL AS infusion_rate, NULL AS infusion_rate_adjustment,
        NULL AS infusion_rate_adjustment_amount, NULL AS infusion_rate_unit, CASE WHEN part = 0 THEN dr.route END AS route,
        NULL AS infusion_complete, NULL AS completion_interval, NULL AS new_iv_bag_hung,
        NULL AS continued_infusion_in_other_location, NULL AS restart_interval, NULL AS side, NULL AS site,
        NULL AS non_formulary_visual_verification, charttime, part FROM z""", "subject_id, charttime, emar_seq, part")


def microbiologyevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    tests = "[" + ", ".join(f"{{'si': {a}, 'sd': {q(b)}, 'ti': {c}, 'tn': {q(d)}}}" for a, b, c, d, wt in V.MICRO_TESTS
                            for _ in range(wt)) + "]"
    orgs = "[" + ", ".join(f"{{'i': {a}, 'n': {q(b)}}}" for a, b in V.ORGANISMS) + "]"
    abx = "[" + ", ".join(f"{{'i': {a}, 'n': {q(b)}}}" for a, b in V.ANTIBIOTICS) + "]"
    nt = sum(x[4] for x in V.MICRO_TESTS)
    return (f"""WITH a AS (SELECT subject_id, hadm_id, akey, aidx, admittime, hosp_h,
              unnest(range((1 + floor(u(akey, 500) * {min(4, r.micro_tests)}))::INTEGER)) AS j FROM adm WHERE ({w}) AND (n_icu > 0 OR u(akey, 501) < {r.micro_ward!r})),
      b AS (SELECT *, {tests}[1 + floor(u3(akey, j, 502) * {nt})::INTEGER] AS t,
              date_trunc('minute', admittime + secs(hosp_h * 3600 * (j + u3(akey, j, 503)) / 3)) AS charttime,
              u3(akey, j, 504) < {r.micro_pos!r} AS pos, {orgs}[1 + floor(u3(akey, j, 505) * {len(V.ORGANISMS)})::INTEGER] AS org FROM a),
      c AS (SELECT *, unnest(CASE WHEN pos THEN range(-1, {len(V.ANTIBIOTICS)}) ELSE [-1] END) AS ab FROM b)
      SELECT (aidx * 32 + j * 8 + ab + 1) * 1 + 1 AS microevent_id, subject_id, hadm_id, uid8(aidx * 4 + j) AS micro_specimen_id,
        NULL AS order_provider_id, date_trunc('day', charttime) AS chartdate, charttime, t.si AS spec_itemid, t.sd AS spec_type_desc,
        1 AS test_seq, date_trunc('day', charttime + INTERVAL 2 DAY) AS storedate,
        charttime + INTERVAL 2 DAY + to_minutes(floor(u3(akey, j, 506) * 600)::BIGINT) AS storetime, t.ti AS test_itemid,
        t.tn AS test_name, CASE WHEN pos THEN org.i END AS org_itemid, CASE WHEN pos THEN org.n END AS org_name,
        CASE WHEN pos THEN 1 END AS isolate_num, NULL AS quantity,
        CASE WHEN ab >= 0 THEN {abx}[ab + 1].i END AS ab_itemid, CASE WHEN ab >= 0 THEN {abx}[ab + 1].n END AS ab_name,
        CASE WHEN ab >= 0 THEN '<=1' END AS dilution_text, CASE WHEN ab >= 0 THEN '<=' END AS dilution_comparison,
        CASE WHEN ab >= 0 THEN 1.0 END AS dilution_value,
        CASE WHEN ab >= 0 THEN CASE WHEN u3(akey * 8 + j, ab, 507) < 0.8 THEN 'S' ELSE 'R' END END AS interpretation,
        CASE WHEN NOT pos THEN 'No growth.' END AS comments, j, ab FROM c""", "subject_id, charttime, j, ab")


def _inputs_list() -> str:
    out = []
    for itemid, amt, auom, rate, ruom, cat, desc, wt in V.INPUTS:
        out += [f"{{'itemid': {itemid}, 'amt': {float(amt)!r}, 'auom': {q(auom)}, 'rate': {num(rate)}, 'ruom': {q(ruom)}::VARCHAR, "
                f"'cat': {q(cat)}, 'desc': {q(desc)}}}"] * wt
    return "[" + ", ".join(out) + "]"


def _input_base(w: str, r: Rates = DEMO) -> str:
    nw = sum(x[7] for x in V.INPUTS)
    return f"""s AS (SELECT * FROM icu WHERE {w}),
      e AS (SELECT *, unnest(range({n_inputs(r)})) AS e FROM s),
      t AS (SELECT *, {_inputs_list()}[1 + floor(u3(skey, e, 600) * {nw})::INTEGER] AS it,
              date_trunc('minute', intime + secs({_n(60 * r.input_min)} * (e + 0.9 * u3(skey, e, 601)))) + INTERVAL 1 MINUTE AS starttime,
              uidk(inp_base + e) AS orderid FROM e),
      v AS (SELECT *, least(CASE WHEN it.rate IS NULL THEN starttime + INTERVAL 1 MINUTE
                ELSE starttime + to_minutes((30 + floor(u3(skey, e, 602) * 210))::BIGINT) END, outtime) AS endtime,
              round(it.amt * (0.5 + u3(skey, e, 603)), 2) AS amount FROM t WHERE starttime + INTERVAL 1 MINUTE < outtime)"""


def inputevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH {_input_base(w, r)}
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, e // 6, 604)) AS caregiver_id, starttime, endtime,
        endtime + to_minutes(floor(u3(skey, e, 605) * 30)::BIGINT) AS storetime, it.itemid AS itemid, amount, it.auom AS amountuom,
        CASE WHEN it.rate IS NOT NULL THEN round(it.rate * (0.5 + u3(skey, e, 606)), 3) END AS rate, it.ruom AS rateuom,
        orderid, orderid AS linkorderid, it.cat AS ordercategoryname, NULL AS secondaryordercategoryname,
        'Main order parameter' AS ordercomponenttypedescription, it.desc AS ordercategorydescription, weight AS patientweight,
        CASE WHEN it.auom = 'ml' THEN amount ELSE 100 END AS totalamount, 'ml' AS totalamountuom, 0 AS isopenbag,
        0 AS continueinnextdept, 'FinishedRunning' AS statusdescription, amount AS originalamount,
        coalesce(it.rate, 1) AS originalrate FROM v""", None)


def ingredientevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    # a share of infusions also carries an IVF ingredient row (primary key: orderid, itemid)
    ing, src = ("220490", "v") if r.ingredient_extra <= 0 else (
        "ing", f"(SELECT *, unnest(CASE WHEN u3(skey, e, 607) < {r.ingredient_extra!r} THEN [220490, 227074] ELSE [220490] END) AS ing FROM v)")
    return (f"""WITH {_input_base(w, r)}
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, e // 6, 604)) AS caregiver_id, starttime, endtime,
        endtime + to_minutes(floor(u3(skey, e, 605) * 30)::BIGINT) AS storetime, {ing} AS itemid,
        CASE WHEN it.auom = 'ml' THEN amount ELSE 100 END AS amount, 'ml' AS amountuom,
        CASE WHEN it.rate IS NOT NULL THEN round(it.rate * (0.5 + u3(skey, e, 606)), 3) END AS rate, it.ruom AS rateuom,
        orderid, orderid AS linkorderid, 'FinishedRunning' AS statusdescription,
        CASE WHEN it.auom = 'ml' THEN amount ELSE 100 END AS originalamount, coalesce(it.rate, 0) AS originalrate FROM {src}""", None)


def outputevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    outs = "[" + ", ".join(f"{{'itemid': {i}, 'm': {float(m)!r}}}" for i, m, wt in V.OUTPUTS for _ in range(wt)) + "]"
    nw = sum(x[2] for x in V.OUTPUTS)
    return (f"""WITH s AS (SELECT * FROM icu WHERE {w}),
      e AS (SELECT *, unnest(range(greatest(1, floor(hours * 60 / {_n(r.output_min)})::BIGINT))) AS e FROM s),
      t AS (SELECT *, date_trunc('hour', intime) + to_minutes(floor({_n(r.output_min)} * (e + 1))::BIGINT) AS charttime,
              {outs}[1 + floor(u3(skey, e, 700) * {nw})::INTEGER] AS it FROM e)
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, e // 6, 701)) AS caregiver_id, charttime,
        charttime + to_minutes(floor(u3(skey, e, 702) * 40)::BIGINT) AS storetime, it.itemid AS itemid,
        round(it.m * exp(0.6 * z3(skey, e, 703))) AS value, 'ml' AS valueuom FROM t WHERE charttime < outtime""", None)


def procedureevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH s AS (SELECT * FROM icu WHERE {w}),
      p AS (SELECT *, unnest([
          {{'itemid': 224275, 'cat': 'Peripheral Lines', 'desc': 'Task', 'cont': true, 'on': true, 'o': 0}},
          {{'itemid': 229351, 'cat': 'Procedures', 'desc': 'ContinuousProcess', 'cont': true, 'on': u(skey, 800) < 0.7, 'o': 1}},
          {{'itemid': 225752, 'cat': 'Invasive Lines', 'desc': 'ContinuousProcess', 'cont': true, 'on': art, 'o': 2}},
          {{'itemid': 224263, 'cat': 'Invasive Lines', 'desc': 'ContinuousProcess', 'cont': true, 'on': art AND u(skey, 801) < 0.6, 'o': 3}},
          {{'itemid': 225792, 'cat': 'Ventilation', 'desc': 'ContinuousProcess', 'cont': true, 'on': vent, 'o': 4}},
          {{'itemid': 225402, 'cat': 'Procedures', 'desc': 'Electrolytes', 'cont': false, 'on': true, 'o': 5}}]) AS it FROM s),
      d AS (SELECT *, unnest(range(CASE WHEN it.cont THEN 1 ELSE {n_procdays(r)} END)) AS dd FROM p WHERE it.on),
      t AS (SELECT *, date_trunc('minute', intime + secs(60 * (5 + 55 * u3(skey, it.itemid, 802)) + dd * {_n(3600 * r.proc_h)})) AS starttime FROM d),
      v AS (SELECT *, CASE WHEN it.cont THEN greatest(starttime + INTERVAL 1 MINUTE,
                 date_trunc('minute', outtime - secs(60 * (5 + 55 * u3(skey, it.itemid, 803)))))
               ELSE starttime + INTERVAL 1 MINUTE END AS endtime FROM t WHERE starttime + INTERVAL 1 MINUTE < outtime)
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, it.itemid, 804)) AS caregiver_id, starttime, least(endtime, outtime) AS endtime,
        least(endtime, outtime) + to_minutes(floor(u3(skey, it.itemid * 64 + dd, 805) * 20)::BIGINT) AS storetime,
        it.itemid AS itemid,
        CASE WHEN it.cont THEN round(epoch(least(endtime, outtime) - starttime) / 60) ELSE 1 END AS value,
        CASE WHEN it.cont THEN 'min' ELSE 'None' END AS valueuom, NULL AS location, NULL AS locationcategory,
        uidk(1000000000 + proc_base + it.o * {n_procdays(r)} + dd) AS orderid,
        uidk(1000000000 + proc_base + it.o * {n_procdays(r)} + dd) AS linkorderid,
        it.cat AS ordercategoryname, it.desc AS ordercategorydescription, weight AS patientweight, 1 AS isopenbag,
        0 AS continueinnextdept, 'FinishedRunning' AS statusdescription,
        CASE WHEN it.cont THEN round(epoch(least(endtime, outtime) - starttime) / 60) ELSE 1 END AS originalamount,
        1 AS originalrate, it.o AS o, dd FROM v""", "subject_id, starttime, o, dd")


def datetimeevents(w: str, r: Rates = DEMO) -> tuple[str, str | None]:
    return (f"""WITH s AS (SELECT * FROM icu WHERE {w}),
      d AS (SELECT *, unnest(range(greatest(1, floor(hours / {_n(r.dte_h)})::BIGINT))) AS dd FROM s),
      p AS (SELECT *, unnest([
          {{'itemid': 225343, 'on': dd = 0, 'o': 0}}, {{'itemid': 225754, 'on': true, 'o': 1}},
          {{'itemid': 229352, 'on': u(skey, 800) < 0.7, 'o': 2}}, {{'itemid': 224288, 'on': art, 'o': 3}},
          {{'itemid': 224280, 'on': art AND u(skey, 801) < 0.6, 'o': 4}}]) AS it FROM d),
      t AS (SELECT *, date_trunc('minute', intime + secs(3600 * (1 + {_n(r.dte_h)} * dd + {_n(r.dte_h / 8)} * u3(skey, dd, 900)))) AS charttime FROM p WHERE it.on)
      SELECT subject_id, hadm_id, stay_id, cg(u3(skey, dd, 901)) AS caregiver_id, charttime,
        charttime + to_minutes(floor(u3(skey, dd * 8 + it.o, 902) * 20)::BIGINT) AS storetime, it.itemid AS itemid,
        CASE WHEN it.itemid = 225343 THEN date_trunc('day', admittime)
             ELSE date_trunc('minute', intime + secs(60 * (5 + 55 * u3(skey, it.itemid, 802)))) END AS value,
        CASE WHEN it.itemid = 225343 THEN 'Date' ELSE 'Date and Time' END AS valueuom, 0 AS warning FROM t
        WHERE charttime < outtime""", None)


# rows per patient of the patient-level "small" tables at the demo rates (only sizes their batches)
SMALL_PER_PATIENT = {"patients": 1, "admissions": 3, "icustays": 1.5, "transfers": 10, "services": 3.2, "diagnoses_icd": 40,
                     "procedures_icd": 5, "drgcodes": 4.5, "hcpcsevents": 0.7, "omr": 18}
_CORE = re.compile(r"\bFROM (adm|pat|icu)\b")


def restrict(sql: str, w: str) -> str:
    """A small table's SQL limited to one patient range: every read of a core table gets the filter."""
    return _CORE.sub(lambda m: f"FROM (SELECT * FROM {m[1]} WHERE {w}) {m[1]}", sql)


EVENT_TABLES = {
    # name: (builder, rough rows per patient, used to size batches)
    "chartevents": (chartevents, 7000), "labevents": (labevents, 700), "emar": (emar, 300), "emar_detail": (emar_detail, 600),
    "poe": (poe, 450), "poe_detail": (poe_detail, 10), "prescriptions": (prescriptions, 180), "pharmacy": (pharmacy, 180),
    "microbiologyevents": (microbiologyevents, 20), "inputevents": (inputevents, 80), "ingredientevents": (ingredientevents, 80),
    "outputevents": (outputevents, 80), "procedureevents": (procedureevents, 15), "datetimeevents": (datetimeevents, 30),
}
