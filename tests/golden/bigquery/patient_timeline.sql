SELECT
  *
FROM (
  SELECT
    *
  FROM (
    SELECT
      CAST(t.charttime AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'labevents' AS source,
      CAST(d.label AS STRING) AS label,
      CAST(t.value AS STRING) AS value,
      CAST(t.valuenum AS FLOAT64) AS valuenum,
      CAST(t.valueuom AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(t.itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`labevents` AS t
    LEFT JOIN `physionet-data`.mimiciv_2_2_hosp.`d_labitems` AS d
      ON d.itemid = t.itemid
    WHERE
      t.`subject_id` = @sid
  ) AS s0
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.starttime AS DATETIME) AS time,
      CAST(t.endtime AS DATETIME) AS endtime,
      'inputevents' AS source,
      CAST(d.label AS STRING) AS label,
      CASE
        WHEN CAST(t.amount AS FLOAT64) = FLOOR(CAST(t.amount AS FLOAT64))
        AND ABS(CAST(t.amount AS FLOAT64)) < 1e15
        THEN CAST(CAST(CAST(t.amount AS FLOAT64) AS INT64) AS STRING)
        ELSE CAST(CAST(t.amount AS FLOAT64) AS STRING)
      END AS value,
      CAST(t.amount AS FLOAT64) AS valuenum,
      CAST(t.amountuom AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(t.stay_id AS INT64) AS stay_id,
      CAST(t.itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_icu.`inputevents` AS t
    LEFT JOIN `physionet-data`.mimiciv_2_2_icu.`d_items` AS d
      ON d.itemid = t.itemid
    WHERE
      t.`subject_id` = @sid
  ) AS s1
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.charttime AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'outputevents' AS source,
      CAST(d.label AS STRING) AS label,
      CASE
        WHEN CAST(t.value AS FLOAT64) = FLOOR(CAST(t.value AS FLOAT64))
        AND ABS(CAST(t.value AS FLOAT64)) < 1e15
        THEN CAST(CAST(CAST(t.value AS FLOAT64) AS INT64) AS STRING)
        ELSE CAST(CAST(t.value AS FLOAT64) AS STRING)
      END AS value,
      CAST(t.value AS FLOAT64) AS valuenum,
      CAST(t.valueuom AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(t.stay_id AS INT64) AS stay_id,
      CAST(t.itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_icu.`outputevents` AS t
    LEFT JOIN `physionet-data`.mimiciv_2_2_icu.`d_items` AS d
      ON d.itemid = t.itemid
    WHERE
      t.`subject_id` = @sid
  ) AS s2
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.starttime AS DATETIME) AS time,
      CAST(t.endtime AS DATETIME) AS endtime,
      'procedureevents' AS source,
      CAST(d.label AS STRING) AS label,
      CASE
        WHEN CAST(t.value AS FLOAT64) = FLOOR(CAST(t.value AS FLOAT64))
        AND ABS(CAST(t.value AS FLOAT64)) < 1e15
        THEN CAST(CAST(CAST(t.value AS FLOAT64) AS INT64) AS STRING)
        ELSE CAST(CAST(t.value AS FLOAT64) AS STRING)
      END AS value,
      CAST(t.value AS FLOAT64) AS valuenum,
      CAST(t.valueuom AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(t.stay_id AS INT64) AS stay_id,
      CAST(t.itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_icu.`procedureevents` AS t
    LEFT JOIN `physionet-data`.mimiciv_2_2_icu.`d_items` AS d
      ON d.itemid = t.itemid
    WHERE
      t.`subject_id` = @sid
  ) AS s3
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.charttime AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'datetimeevents' AS source,
      CAST(d.label AS STRING) AS label,
      CAST(t.value AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(t.valueuom AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(t.stay_id AS INT64) AS stay_id,
      CAST(t.itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_icu.`datetimeevents` AS t
    LEFT JOIN `physionet-data`.mimiciv_2_2_icu.`d_items` AS d
      ON d.itemid = t.itemid
    WHERE
      t.`subject_id` = @sid
  ) AS s4
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.starttime AS DATETIME) AS time,
      CAST(t.stoptime AS DATETIME) AS endtime,
      'prescriptions' AS source,
      CAST(t.drug AS STRING) AS label,
      CAST(t.dose_val_rx AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(t.dose_unit_rx AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(NULL AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`prescriptions` AS t
    WHERE
      t.`subject_id` = @sid
  ) AS s5
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.charttime AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'emar' AS source,
      CAST(t.medication AS STRING) AS label,
      CAST(t.event_txt AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(NULL AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(NULL AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`emar` AS t
    WHERE
      t.`subject_id` = @sid
  ) AS s6
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.intime AS DATETIME) AS time,
      CAST(t.outtime AS DATETIME) AS endtime,
      'transfers' AS source,
      CAST(COALESCE(t.careunit, 'UNKNOWN') AS STRING) AS label,
      CAST(t.eventtype AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(NULL AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(NULL AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`transfers` AS t
    WHERE
      t.`subject_id` = @sid
  ) AS s7
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(t.transfertime AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'services' AS source,
      CAST(t.curr_service AS STRING) AS label,
      CAST(COALESCE(t.prev_service || ' -> ', '') || t.curr_service AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(NULL AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(NULL AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`services` AS t
    WHERE
      t.`subject_id` = @sid
  ) AS s8
  WHERE
    TRUE
  UNION ALL
  SELECT
    *
  FROM (
    SELECT
      CAST(COALESCE(t.charttime, t.chartdate) AS DATETIME) AS time,
      CAST(NULL AS DATETIME) AS endtime,
      'microbiologyevents' AS source,
      CAST(COALESCE(t.test_name, t.spec_type_desc) AS STRING) AS label,
      CAST(NULLIF(ARRAY_TO_STRING([t.org_name, t.ab_name, t.interpretation], ' '), '') AS STRING) AS value,
      CAST(NULL AS FLOAT64) AS valuenum,
      CAST(NULL AS STRING) AS unit,
      CAST(t.`subject_id` AS INT64) AS subject_id,
      CAST(t.hadm_id AS INT64) AS hadm_id,
      CAST(NULL AS INT64) AS stay_id,
      CAST(t.test_itemid AS INT64) AS itemid
    FROM `physionet-data`.mimiciv_2_2_hosp.`microbiologyevents` AS t
    WHERE
      t.`subject_id` = @sid
  ) AS s9
  WHERE
    TRUE
) AS e
ORDER BY
  time NULLS LAST,
  source NULLS LAST,
  itemid NULLS LAST,
  label NULLS LAST,
  value NULLS LAST,
  endtime NULLS LAST,
  valuenum NULLS LAST,
  unit NULLS LAST,
  hadm_id NULLS LAST,
  stay_id NULLS LAST
