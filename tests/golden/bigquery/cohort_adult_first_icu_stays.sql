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
), step_1 /* 1. include: Age 18 years or older at admission */ AS (
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
), step_2 /* 2. include: First ICU stay of the patient */ AS (
  SELECT
    *
  FROM step_1
  WHERE
    stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN (
        SELECT
          z.subject_id,
          z.hadm_id,
          z.stay_id,
          ROW_NUMBER() OVER (PARTITION BY z.subject_id ORDER BY z.intime NULLS LAST, z.stay_id NULLS LAST) AS rn
        FROM `physionet-data`.mimiciv_2_2_icu.icustays AS z
      ) AS f
        ON f.stay_id = u.stay_id
      WHERE
        f.rn = 1
    )
), step_3 /* 3. include: ICU length of stay at least 24 hours */ AS (
  SELECT
    *
  FROM step_2
  WHERE
    stay_id IN (
      SELECT DISTINCT
        u.stay_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_icu.icustays AS i
        ON i.stay_id = u.stay_id
      WHERE
        i.los >= 1.0
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
ORDER BY
  step NULLS LAST
