WITH units AS (
  SELECT
    x.subject_id,
    x.hadm_id,
    x.stay_id
  FROM `physionet-data`.mimiciv_2_2_icu.icustays AS x
), step_0 AS (
  SELECT
    *
  FROM units
), step_1 /* 1. include: Age 18 years or older */ AS (
  SELECT
    *
  FROM step_0
  WHERE
    stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_hosp.admissions AS a
        ON a.hadm_id = u.hadm_id
      JOIN `physionet-data`.mimiciv_2_2_hosp.patients AS p
        ON p.subject_id = u.subject_id
      WHERE
        (
          p.anchor_age + (
            EXTRACT(YEAR FROM a.admittime) - p.anchor_year
          )
        ) >= 18.0
    )
), step_2 /* 2. include: Antibiotic started within 24 h of ICU admission */ AS (
  SELECT
    *
  FROM step_1
  WHERE
    stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_icu.icustays AS w
        ON w.stay_id = u.stay_id
      JOIN `physionet-data`.mimiciv_2_2_hosp.prescriptions AS m
        ON m.subject_id = u.subject_id
      WHERE
        (
          INSTR(LOWER(m.drug), 'vancomycin') > 0
          OR INSTR(LOWER(m.drug), 'cefepime') > 0
          OR INSTR(LOWER(m.drug), 'ceftriaxone') > 0
          OR INSTR(LOWER(m.drug), 'piperacillin') > 0
          OR INSTR(LOWER(m.drug), 'meropenem') > 0
          OR INSTR(LOWER(m.drug), 'levofloxacin') > 0
          OR INSTR(LOWER(m.drug), 'ciprofloxacin') > 0
          OR INSTR(LOWER(m.drug), 'metronidazole') > 0
          OR INSTR(LOWER(m.drug), 'cefazolin') > 0
          OR INSTR(LOWER(m.drug), 'ampicillin') > 0
        )
        AND m.starttime >= w.intime - INTERVAL '86400' SECOND
        AND m.starttime <= w.intime + INTERVAL '86400' SECOND
    )
), step_3 /* 3. include: Lactate > 2 mmol/L within 24 h of ICU admission */ AS (
  SELECT
    *
  FROM step_2
  WHERE
    stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_icu.icustays AS w
        ON w.stay_id = u.stay_id
      JOIN `physionet-data`.mimiciv_2_2_hosp.labevents AS m
        ON m.subject_id = u.subject_id
      WHERE
        (
          m.itemid IN (
            SELECT
              itemid
            FROM `physionet-data`.mimiciv_2_2_hosp.d_labitems
            WHERE
              LOWER(label) IN ('lactate')
          )
        )
        AND m.charttime >= w.intime - INTERVAL '21600' SECOND
        AND m.charttime <= w.intime + INTERVAL '86400' SECOND
        AND m.valuenum > 2.0
    )
), step_4 /* 4. exclude: ICU stay of 24 hours or less */ AS (
  SELECT
    *
  FROM step_3
  WHERE
    NOT stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_icu.icustays AS i
        ON i.stay_id = u.stay_id
      WHERE
        i.los <= 1.0
    )
)
SELECT
  0 AS step,
  COUNT(*) AS n
FROM step_0
UNION ALL
SELECT
  1 AS step,
  COUNT(*) AS n
FROM step_1
UNION ALL
SELECT
  2 AS step,
  COUNT(*) AS n
FROM step_2
UNION ALL
SELECT
  3 AS step,
  COUNT(*) AS n
FROM step_3
UNION ALL
SELECT
  4 AS step,
  COUNT(*) AS n
FROM step_4
ORDER BY
  step NULLS LAST
