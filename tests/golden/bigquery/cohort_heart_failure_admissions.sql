WITH units AS (
  SELECT
    x.subject_id,
    x.hadm_id
  FROM `physionet-data`.mimiciv_2_2_hosp.admissions AS x
), step_0 AS (
  SELECT
    *
  FROM units
), step_1 /* 1. include: Age 18 years or older */ AS (
  SELECT
    *
  FROM step_0
  WHERE
    hadm_id IN (
      SELECT DISTINCT
        u.hadm_id
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
), step_2 /* 2. include: Heart-failure diagnosis code */ AS (
  SELECT
    *
  FROM step_1
  WHERE
    hadm_id IN (
      SELECT DISTINCT
        u.hadm_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_hosp.diagnoses_icd AS d
        ON d.hadm_id = u.hadm_id
      WHERE
        (
          (
            d.icd_version = 9
            AND (
              d.icd_code LIKE '428%'
              OR d.icd_code = '40201'
              OR d.icd_code = '40211'
              OR d.icd_code = '40291'
            )
          )
          OR (
            d.icd_version = 10 AND (
              d.icd_code LIKE 'I50%' OR d.icd_code = 'I110'
            )
          )
        )
    )
), step_3 /* 3. exclude: Elective admission */ AS (
  SELECT
    *
  FROM step_2
  WHERE
    NOT hadm_id IN (
      SELECT DISTINCT
        u.hadm_id
      FROM units AS u
      JOIN `physionet-data`.mimiciv_2_2_hosp.admissions AS a
        ON a.hadm_id = u.hadm_id
      WHERE
        UPPER(a.admission_type) IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')
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
