"""Vocabulary of the synthetic data: real MIMIC-IV item ids, labels, codes and category spellings.

These are dictionary facts (ids, labels, units) so that queries and concept code written for real
MIMIC-IV (e.g. ``itemid = 220045`` for heart rate) run unchanged on the synthetic data. The values
generated for them are invented. Weights are small integers: an entry with weight 3 is picked three
times as often as one with weight 1.
"""

from __future__ import annotations

# ---------------------------------------------------------------- patients / admissions
GENDERS = [("F", 1), ("M", 1)]
YEAR_GROUPS = {
    "2.2": ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019"],
    "3.1": ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"],
}
ADMISSION_TYPES_ICU = [("EW EMER.", 10), ("URGENT", 4), ("DIRECT EMER.", 2), ("SURGICAL SAME DAY ADMISSION", 2),
                       ("ELECTIVE", 2)]
ADMISSION_TYPES_WARD = [("EW EMER.", 8), ("OBSERVATION ADMIT", 5), ("URGENT", 3), ("EU OBSERVATION", 4),
                        ("SURGICAL SAME DAY ADMISSION", 2), ("DIRECT EMER.", 1), ("ELECTIVE", 2),
                        ("DIRECT OBSERVATION", 1), ("AMBULATORY OBSERVATION", 1)]
ADMISSION_LOCATIONS = [("PHYSICIAN REFERRAL", 6), ("TRANSFER FROM HOSPITAL", 4), ("CLINIC REFERRAL", 1),
                       ("PROCEDURE SITE", 1), ("WALK-IN/SELF REFERRAL", 1), ("PACU", 1),
                       ("TRANSFER FROM SKILLED NURSING FACILITY", 1), ("INFORMATION NOT AVAILABLE", 1)]
DISCHARGE_LOCATIONS = [("HOME", 8), ("HOME HEALTH CARE", 8), ("SKILLED NURSING FACILITY", 4), ("REHAB", 2),
                       ("CHRONIC/LONG TERM ACUTE CARE", 1), ("AGAINST ADVICE", 1), ("HOSPICE", 1),
                       ("PSYCH FACILITY", 1), ("ACUTE HOSPITAL", 1), ("", 4)]  # "" = NULL, common in MIMIC
INSURANCE = {"2.2": [("Medicare", 5), ("Medicaid", 2), ("Other", 6)],
             "3.1": [("Medicare", 5), ("Medicaid", 2), ("Private", 4), ("Other", 1), ("No charge", 1)]}
LANGUAGES = {"2.2": [("ENGLISH", 12), ("?", 1)],
             "3.1": [("English", 20), ("Spanish", 1), ("Chinese", 1), ("Russian", 1), ("Other", 1)]}
MARITAL = [("MARRIED", 5), ("SINGLE", 5), ("WIDOWED", 2), ("DIVORCED", 1), ("", 1)]
RACES = [("WHITE", 30), ("BLACK/AFRICAN AMERICAN", 8), ("UNKNOWN", 3), ("HISPANIC/LATINO - PUERTO RICAN", 2),
         ("HISPANIC/LATINO - DOMINICAN", 1), ("HISPANIC/LATINO - CUBAN", 1), ("ASIAN", 1), ("ASIAN - CHINESE", 1),
         ("WHITE - OTHER EUROPEAN", 1), ("WHITE - RUSSIAN", 1), ("BLACK/CAPE VERDEAN", 1), ("PORTUGUESE", 1),
         ("OTHER", 2), ("UNABLE TO OBTAIN", 1), ("PATIENT DECLINED TO ANSWER", 1), ("HISPANIC OR LATINO", 1)]

ICU_UNITS = [("Medical Intensive Care Unit (MICU)", 6), ("Surgical Intensive Care Unit (SICU)", 5),
             ("Cardiac Vascular Intensive Care Unit (CVICU)", 5), ("Medical/Surgical Intensive Care Unit (MICU/SICU)", 5),
             ("Trauma SICU (TSICU)", 3), ("Coronary Care Unit (CCU)", 3),
             ("Neuro Surgical Intensive Care Unit (Neuro SICU)", 1)]
WARDS = [("Medicine", 6), ("Med/Surg", 3), ("Medicine/Cardiology", 3), ("Neurology", 2), ("Cardiac Surgery", 2),
         ("Hematology/Oncology", 2), ("Transplant", 1), ("Vascular", 1), ("Med/Surg/Trauma", 1),
         ("Surgery/Trauma", 1), ("Hematology/Oncology Intermediate", 1)]
SERVICES = [("MED", 12), ("CMED", 4), ("SURG", 4), ("OMED", 3), ("CSURG", 2), ("NSURG", 2), ("VSURG", 1),
            ("NMED", 1), ("TRAUM", 1), ("ORTHO", 1)]

# ---------------------------------------------------------------- ICD (code, version, title)
ICD_DIAGNOSES = [
    ("0389", 9, "Unspecified septicemia"), ("99591", 9, "Sepsis"), ("99592", 9, "Severe sepsis"),
    ("78552", 9, "Septic shock"), ("4280", 9, "Congestive heart failure, unspecified"),
    ("42833", 9, "Acute on chronic diastolic heart failure"), ("486", 9, "Pneumonia, organism unspecified"),
    ("5849", 9, "Acute kidney failure, unspecified"), ("4019", 9, "Unspecified essential hypertension"),
    ("25000", 9, "Diabetes mellitus without mention of complication, type II or unspecified type, not stated as uncontrolled"),
    ("42731", 9, "Atrial fibrillation"), ("41401", 9, "Coronary atherosclerosis of native coronary artery"),
    ("2724", 9, "Other and unspecified hyperlipidemia"), ("5990", 9, "Urinary tract infection, site not specified"),
    ("51881", 9, "Acute respiratory failure"), ("496", 9, "Chronic airway obstruction, not elsewhere classified"),
    ("2762", 9, "Acidosis"), ("2851", 9, "Acute posthemorrhagic anemia"), ("5859", 9, "Chronic kidney disease, unspecified"),
    ("53081", 9, "Esophageal reflux"), ("3051", 9, "Tobacco use disorder"), ("V5861", 9, "Long-term (current) use of anticoagulants"),
    ("2449", 9, "Unspecified acquired hypothyroidism"), ("311", 9, "Depressive disorder, not elsewhere classified"),
    ("2761", 9, "Hyposmolality and/or hyponatremia"), ("41071", 9, "Subendocardial infarction, initial episode of care"),
    ("43491", 9, "Cerebral artery occlusion, unspecified with cerebral infarction"), ("5715", 9, "Cirrhosis of liver without mention of alcohol"),
    ("2875", 9, "Thrombocytopenia, unspecified"), ("V4581", 9, "Aortocoronary bypass status"),
    ("A419", 10, "Sepsis, unspecified organism"), ("R6520", 10, "Severe sepsis without septic shock"),
    ("R6521", 10, "Severe sepsis with septic shock"), ("I5033", 10, "Acute on chronic diastolic (congestive) heart failure"),
    ("I509", 10, "Heart failure, unspecified"), ("J189", 10, "Pneumonia, unspecified organism"),
    ("N179", 10, "Acute kidney failure, unspecified"), ("I10", 10, "Essential (primary) hypertension"),
    ("E119", 10, "Type 2 diabetes mellitus without complications"), ("I4891", 10, "Unspecified atrial fibrillation"),
    ("I2510", 10, "Atherosclerotic heart disease of native coronary artery without angina pectoris"),
    ("E785", 10, "Hyperlipidemia, unspecified"), ("N390", 10, "Urinary tract infection, site not specified"),
    ("J9601", 10, "Acute respiratory failure with hypoxia"), ("J449", 10, "Chronic obstructive pulmonary disease, unspecified"),
    ("E872", 10, "Acidosis"), ("D62", 10, "Acute posthemorrhagic anemia"), ("N189", 10, "Chronic kidney disease, unspecified"),
    ("K219", 10, "Gastro-esophageal reflux disease without esophagitis"), ("F17210", 10, "Nicotine dependence, cigarettes, uncomplicated"),
    ("Z7901", 10, "Long term (current) use of anticoagulants"), ("E039", 10, "Hypothyroidism, unspecified"),
    ("F329", 10, "Major depressive disorder, single episode, unspecified"), ("E871", 10, "Hypo-osmolality and hyponatremia"),
    ("I214", 10, "Non-ST elevation (NSTEMI) myocardial infarction"), ("I639", 10, "Cerebral infarction, unspecified"),
    ("K7460", 10, "Unspecified cirrhosis of liver"), ("D696", 10, "Thrombocytopenia, unspecified"),
    ("Z951", 10, "Presence of aortocoronary bypass graft"), ("E1122", 10, "Type 2 diabetes mellitus with diabetic chronic kidney disease"),
]
ICD_PROCEDURES = [
    ("9671", 9, "Continuous invasive mechanical ventilation for less than 96 consecutive hours"),
    ("9672", 9, "Continuous invasive mechanical ventilation for 96 consecutive hours or more"),
    ("3893", 9, "Venous catheterization, not elsewhere classified"), ("9604", 9, "Insertion of endotracheal tube"),
    ("3995", 9, "Hemodialysis"), ("3615", 9, "Single internal mammary-coronary artery bypass"),
    ("3961", 9, "Extracorporeal circulation auxiliary to open heart surgery"), ("8856", 9, "Coronary arteriography using two catheters"),
    ("4513", 9, "Other endoscopy of small intestine"), ("9904", 9, "Transfusion of packed cells"),
    ("5A1955Z", 10, "Respiratory Ventilation, Greater than 96 Consecutive Hours"),
    ("5A1935Z", 10, "Respiratory Ventilation, Less than 24 Consecutive Hours"),
    ("0BH17EZ", 10, "Insertion of Endotracheal Airway into Trachea, Via Natural or Artificial Opening"),
    ("02HV33Z", 10, "Insertion of Infusion Device into Superior Vena Cava, Percutaneous Approach"),
    ("5A1D70Z", 10, "Performance of Urinary Filtration, Intermittent, Less than 6 Hours Per Day"),
    ("30233N1", 10, "Transfusion of Nonautologous Red Blood Cells into Peripheral Vein, Percutaneous Approach"),
    ("0DJ08ZZ", 10, "Inspection of Upper Intestinal Tract, Via Natural or Artificial Opening Endoscopic"),
    ("B2111ZZ", 10, "Fluoroscopy of Multiple Coronary Arteries using Low Osmolar Contrast"),
    ("3E0G76Z", 10, "Introduction of Nutritional Substance into Upper GI, Via Natural or Artificial Opening"),
    ("021109W", 10, "Bypass Coronary Artery, Two Arteries from Aorta with Autologous Venous Tissue, Open Approach"),
]
DRG = [("HCFA", "871", "SEPTICEMIA OR SEVERE SEPSIS W/O MV >96 HOURS W MCC"), ("HCFA", "291", "HEART FAILURE & SHOCK W MCC"),
       ("HCFA", "193", "SIMPLE PNEUMONIA & PLEURISY W MCC"), ("HCFA", "682", "RENAL FAILURE W MCC"),
       ("HCFA", "189", "PULMONARY EDEMA & RESPIRATORY FAILURE"), ("HCFA", "208", "RESPIRATORY SYSTEM DIAGNOSIS W VENTILATOR SUPPORT <96 HOURS"),
       ("APR ", "720", "Septicemia & Disseminated Infections"), ("APR ", "194", "Heart Failure"),
       ("APR ", "139", "Other Pneumonia"), ("APR ", "460", "Renal Failure"), ("APR ", "133", "Pulmonary Edema & Respiratory Failure")]
HCPCS = [("99291", "Critical care, evaluation and management of the critically ill or critically injured patient; first 30-74 minutes", "Critical care, first hour", "Evaluation and Management"),
         ("93454", "Catheter placement in coronary artery(s) for coronary angiography", "Coronary angiography", "Cardiovascular"),
         ("92921", "Percutaneous transluminal coronary angioplasty; each additional branch", "Coronary angioplasty", "Cardiovascular"),
         ("G0378", "Hospital observation service, per hour", "Hospital observation per hr", "Hospital"),
         ("36556", "Insertion of non-tunneled centrally inserted central venous catheter; age 5 years or older", "Insert non-tunnel cv cath", "Cardiovascular"),
         ("31500", "Intubation, endotracheal, emergency procedure", "Insert emergency airway", "Respiratory")]

# ---------------------------------------------------------------- labs (hosp/d_labitems + labevents)
# itemid, label, fluid, category, uom, mean, sd, decimals, ref_lower, ref_upper, clip_lo, clip_hi, panel
LABS = [
    (50971, "Potassium", "Blood", "Chemistry", "mEq/L", 4.1, 0.55, 1, 3.3, 5.4, 2.0, 8.0, "bmp"),
    (50983, "Sodium", "Blood", "Chemistry", "mEq/L", 138, 4.5, 0, 133, 145, 110, 170, "bmp"),
    (50912, "Creatinine", "Blood", "Chemistry", "mg/dL", 1.2, 0.9, 1, 0.4, 1.1, 0.2, 12, "bmp"),
    (50902, "Chloride", "Blood", "Chemistry", "mEq/L", 102, 5, 0, 96, 108, 75, 130, "bmp"),
    (51006, "Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 24, 16, 0, 6, 20, 2, 180, "bmp"),
    (50882, "Bicarbonate", "Blood", "Chemistry", "mEq/L", 24, 4, 0, 22, 32, 5, 45, "bmp"),
    (50868, "Anion Gap", "Blood", "Chemistry", "mEq/L", 14, 3.5, 0, 8, 20, 3, 40, "bmp"),
    (50931, "Glucose", "Blood", "Chemistry", "mg/dL", 130, 45, 0, 70, 100, 30, 700, "bmp"),
    (50960, "Magnesium", "Blood", "Chemistry", "mg/dL", 2.0, 0.3, 1, 1.6, 2.6, 0.8, 5, "bmp"),
    (50893, "Calcium, Total", "Blood", "Chemistry", "mg/dL", 8.6, 0.7, 1, 8.4, 10.3, 5, 14, "bmp"),
    (50970, "Phosphate", "Blood", "Chemistry", "mg/dL", 3.6, 1.1, 1, 2.7, 4.5, 0.5, 12, "bmp"),
    (51221, "Hematocrit", "Blood", "Hematology", "%", 31, 6, 1, 34, 45, 12, 60, "cbc"),
    (51222, "Hemoglobin", "Blood", "Hematology", "g/dL", 10.2, 2.1, 1, 11.2, 15.7, 4, 20, "cbc"),
    (51265, "Platelet Count", "Blood", "Hematology", "K/uL", 210, 95, 0, 150, 400, 5, 1000, "cbc"),
    (51301, "White Blood Cells", "Blood", "Hematology", "K/uL", 10, 5, 1, 4.0, 11.0, 0.2, 80, "cbc"),
    (51279, "Red Blood Cells", "Blood", "Hematology", "m/uL", 3.5, 0.7, 2, 3.9, 5.2, 1.5, 7, "cbc"),
    (51248, "MCH", "Blood", "Hematology", "pg", 30, 2.5, 1, 26, 32, 18, 40, "cbc"),
    (51249, "MCHC", "Blood", "Hematology", "g/dL", 32.8, 1.4, 1, 31, 37, 26, 38, "cbc"),
    (51250, "MCV", "Blood", "Hematology", "fL", 91, 6, 0, 82, 98, 60, 125, "cbc"),
    (51277, "RDW", "Blood", "Hematology", "%", 15, 2, 1, 10.5, 15.5, 11, 30, "cbc"),
    (51274, "PT", "Blood", "Hematology", "sec", 14.5, 4, 1, 9.4, 12.5, 9, 80, "coag"),
    (51275, "PTT", "Blood", "Hematology", "sec", 34, 12, 1, 25, 36.5, 20, 150, "coag"),
    (51237, "INR(PT)", "Blood", "Hematology", "", 1.3, 0.4, 1, 0.9, 1.1, 0.8, 8, "coag"),
    (50878, "Asparate Aminotransferase (AST)", "Blood", "Chemistry", "IU/L", 45, 60, 0, 0, 40, 5, 3000, "lft"),
    (50861, "Alanine Aminotransferase (ALT)", "Blood", "Chemistry", "IU/L", 38, 50, 0, 0, 40, 3, 3000, "lft"),
    (50863, "Alkaline Phosphatase", "Blood", "Chemistry", "IU/L", 100, 60, 0, 35, 105, 20, 1200, "lft"),
    (50885, "Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0.9, 1.0, 1, 0, 1.5, 0.1, 30, "lft"),
    (50862, "Albumin", "Blood", "Chemistry", "g/dL", 3.3, 0.6, 1, 3.5, 5.2, 1.2, 5.5, "lft"),
    (50813, "Lactate", "Blood", "Blood Gas", "mmol/L", 1.9, 1.2, 1, 0.5, 2.0, 0.3, 20, "gas"),
    (50820, "pH", "Blood", "Blood Gas", "units", 7.38, 0.07, 2, 7.35, 7.45, 6.8, 7.7, "gas"),
    (50821, "pO2", "Blood", "Blood Gas", "mm Hg", 110, 50, 0, 85, 105, 30, 550, "gas"),
    (50818, "pCO2", "Blood", "Blood Gas", "mm Hg", 41, 8, 0, 35, 45, 15, 110, "gas"),
    (50802, "Base Excess", "Blood", "Blood Gas", "mEq/L", 0, 4, 0, -2, 3, -25, 20, "gas"),
    (51491, "pH", "Urine", "Hematology", "units", 6.0, 0.8, 1, 5, 8, 4.5, 9, "ua"),
    (51498, "Specific Gravity", "Urine", "Hematology", "", 1.015, 0.008, 3, 1.001, 1.035, 1.001, 1.05, "ua"),
]
LAB_PANELS = ["bmp", "cbc", "coag", "lft", "gas", "ua"]

# ---------------------------------------------------------------- ICU charted items (icu/d_items)
# itemid, label, abbreviation, category, unitname, param_type, lownormal, highnormal
# + generation: period (hours), condition ('' all stays | 'vent' | 'novent' | 'art'), mean, sd, decimals,
#   clip_lo, clip_hi, options (list of (text, valuenum or None)) for text items, fast (True: charted up to
#   every 15 minutes during unstable periods)
def _num(itemid, label, abbr, cat, unit, period, mean, sd, dec, lo, hi, cond="", fast=False, normal=(None, None)):
    return dict(itemid=itemid, label=label, abbreviation=abbr, linksto="chartevents", category=cat, unitname=unit,
                param_type="Numeric", lownormalvalue=normal[0], highnormalvalue=normal[1], period=period, cond=cond,
                mean=mean, sd=sd, dec=dec, lo=lo, hi=hi, options=[], fast=fast)


def _txt(itemid, label, abbr, cat, period, options, cond="", ptype="Text"):
    return dict(itemid=itemid, label=label, abbreviation=abbr, linksto="chartevents", category=cat, unitname=None,
                param_type=ptype, lownormalvalue=None, highnormalvalue=None, period=period, cond=cond,
                mean=0.0, sd=0.0, dec=0, lo=0.0, hi=0.0, options=options, fast=False)


_T = lambda *xs: [(x, None) for x in xs]  # noqa: E731

CHART_ITEMS = [
    _num(220045, "Heart Rate", "HR", "Routine Vital Signs", "bpm", 1, 88, 16, 0, 30, 200, fast=True),
    _num(220179, "Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg", 1, 121, 20, 0, 60, 230, fast=True),
    _num(220180, "Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg", 1, 64, 13, 0, 25, 140, fast=True),
    _num(220181, "Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg", 1, 80, 14, 0, 35, 160, fast=True),
    _num(220210, "Respiratory Rate", "RR", "Respiratory", "insp/min", 1, 19, 5, 0, 5, 50, fast=True),
    _num(220277, "O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%", 1, 96.5, 2.5, 0, 70, 100, fast=True),
    _txt(220048, "Heart Rhythm", "Heart Rhythm", "Routine Vital Signs", 1,
         _T("SR (Sinus Rhythm)", "SR (Sinus Rhythm)", "SR (Sinus Rhythm)", "ST (Sinus Tachycardia)", "AF (Atrial Fibrillation)", "SB (Sinus Bradycardia)", "1st AV (First degree AV Block)")),
    _txt(224650, "Ectopy Type 1", "Ectopy Type 1", "Routine Vital Signs", 2, _T("None", "None", "PVC's", "PAC's")),
    _num(220050, "Arterial Blood Pressure systolic", "ABPs", "Routine Vital Signs", "mmHg", 1, 123, 21, 0, 55, 240, "art", True, (90, 140)),
    _num(220051, "Arterial Blood Pressure diastolic", "ABPd", "Routine Vital Signs", "mmHg", 1, 60, 12, 0, 25, 140, "art", True, (60, 90)),
    _num(220052, "Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg", 1, 79, 13, 0, 35, 160, "art", True),
    _num(220074, "Central Venous Pressure", "CVP", "Hemodynamics", "mmHg", 1, 10, 4, 0, 0, 30, "art"),
    _num(223761, "Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "°F", 4, 98.6, 1.0, 1, 93, 105),
    _txt(224642, "Temperature Site", "Temp Site", "Routine Vital Signs", 2, _T("Oral", "Oral", "Axillary", "Blood", "Temporal")),
    _txt(220739, "GCS - Eye Opening", "Eye Opening", "Neurological", 1,
         [("Spontaneously", 4), ("Spontaneously", 4), ("To Speech", 3), ("To Pain", 2), ("None", 1)]),
    _txt(223900, "GCS - Verbal Response", "Verbal Response", "Neurological", 1,
         [("Oriented", 5), ("Oriented", 5), ("Confused", 4), ("Inappropriate Words", 3), ("Incomprehensible sounds", 2), ("No Response-ETT", 1)]),
    _txt(223901, "GCS - Motor Response", "Motor Response", "Neurological", 1,
         [("Obeys Commands", 6), ("Obeys Commands", 6), ("Localizes Pain", 5), ("Flex-withdraws", 4), ("Abnormal Flexion", 3), ("No response", 1)]),
    _txt(228096, "Richmond-RAS Scale", "Richmond-RAS Scale", "Pain/Sedation", 1,
         [(" 0  Alert and calm", 0), (" 0  Alert and calm", 0), ("-1 Awakens to voice (eye opening/contact) > 10 sec", -1), ("-2 Light sedation, briefly awakens to voice (eye opening/contact) < 10 sec", -2), ("+1 Anxious, apprehensive, but not aggressive", 1)]),
    _txt(223791, "Pain Level", "Pain Level", "Pain/Sedation", 2, _T("None", "None", "Mild", "Mild to Moderate", "Moderate", "Severe")),
    _txt(223792, "Pain Management", "Pain Management", "Pain/Sedation", 4, _T("IV/IM", "PO", "Non-Pharmacological", "Not applicable")),
    _num(223835, "Inspired O2 Fraction", "FiO2", "Respiratory", None, 1, 45, 12, 0, 21, 100, "vent"),
    _num(220339, "PEEP set", "PEEP set", "Respiratory", "cmH2O", 1, 7, 2.5, 0, 0, 20, "vent"),
    _num(224695, "Peak Insp. Pressure", "Peak Insp. Pressure", "Respiratory", "cmH2O", 1, 24, 6, 0, 8, 50, "vent"),
    _num(224696, "Plateau Pressure", "Plateau Pressure", "Respiratory", "cmH2O", 4, 19, 4, 0, 8, 40, "vent", normal=(None, 31)),
    _num(224697, "Mean Airway Pressure", "Mean Airway Pressure", "Respiratory", "cmH2O", 1, 11, 3, 0, 3, 30, "vent"),
    _num(224684, "Tidal Volume (set)", "Tidal Volume (set)", "Respiratory", "mL", 2, 450, 50, 0, 250, 800, "vent", normal=(299, 750)),
    _num(224685, "Tidal Volume (observed)", "Tidal Volume (observed)", "Respiratory", "mL", 1, 460, 80, 0, 150, 1000, "vent", normal=(299, 750)),
    _num(224688, "Respiratory Rate (Set)", "Respiratory Rate (Set)", "Respiratory", "insp/min", 2, 16, 4, 0, 6, 35, "vent"),
    _num(224690, "Respiratory Rate (Total)", "Respiratory Rate (Total)", "Respiratory", "insp/min", 1, 19, 5, 0, 6, 45, "vent", normal=(None, 36)),
    _txt(223849, "Ventilator Mode", "Ventilator Mode", "Respiratory", 1, _T("CMV/ASSIST/AutoFlow", "CMV/ASSIST/AutoFlow", "CPAP/PSV", "PRVC/AC", "SIMV/PSV"), "vent"),
    _txt(223848, "Ventilator Type", "Ventilator Type", "Respiratory", 4, _T("Drager", "Hamilton"), "vent"),
    _txt(226732, "O2 Delivery Device(s)", "O2 Delivery Device(s)", "Respiratory", 1, _T("Nasal cannula", "Nasal cannula", "None", "Face tent", "Non-rebreather", "High flow nasal cannula"), "novent"),
    _num(223834, "O2 Flow", "O2 Flow", "Respiratory", "L/min", 2, 3, 1.5, 0, 1, 15, "novent"),
    _txt(223986, "RUL Lung Sounds", "RUL Lung Sounds", "Pulmonary", 2, _T("Clear", "Clear", "Diminished", "Crackles", "Rhonchi")),
    _txt(223987, "RLL Lung Sounds", "RLL Lung Sounds", "Pulmonary", 2, _T("Clear", "Diminished", "Diminished", "Crackles")),
    _txt(223988, "LUL Lung Sounds", "LUL Lung Sounds", "Pulmonary", 2, _T("Clear", "Clear", "Diminished", "Crackles", "Rhonchi")),
    _txt(223989, "LLL Lung Sounds", "LLL Lung Sounds", "Pulmonary", 2, _T("Clear", "Diminished", "Diminished", "Crackles")),
    _num(220046, "Heart rate Alarm - High", "HR Alarm - High", "Alarms", "bpm", 2, 120, 0, 0, 120, 120),
    _num(220047, "Heart Rate Alarm - Low", "HR Alarm - Low", "Alarms", "bpm", 2, 50, 0, 0, 50, 50),
    _num(223751, "Non-Invasive Blood Pressure Alarm - High", "NBP Alarm - High", "Alarms", "mmHg", 2, 160, 0, 0, 160, 160),
    _num(223752, "Non-Invasive Blood Pressure Alarm - Low", "NBP Alarm - Low", "Alarms", "mmHg", 2, 90, 0, 0, 90, 90),
    _num(223769, "O2 Saturation Pulseoxymetry Alarm - High", "SpO2 Alarm - High", "Alarms", "%", 2, 100, 0, 0, 100, 100),
    _num(223770, "O2 Saturation Pulseoxymetry Alarm - Low", "SpO2 Alarm - Low", "Alarms", "%", 2, 88, 0, 0, 88, 88),
    _num(224161, "Resp Alarm - High", "Resp Alarm - High", "Alarms", "insp/min", 2, 35, 0, 0, 35, 35),
    _num(224162, "Resp Alarm - Low", "Resp Alarm - Low", "Alarms", "insp/min", 2, 8, 0, 0, 8, 8),
    _txt(224641, "Alarms On", "Alarms On", "Alarms", 2, [("1", 1)], ptype="Checkbox"),
    _txt(224168, "Parameters Checked", "Parameters Checked", "Alarms", 2, [("1", 1)], ptype="Checkbox"),
    _txt(224080, "Head of Bed", "HOB", "Treatments", 1, _T("30 Degrees", "30 Degrees", "45 Degrees", "Flat")),
    _txt(224082, "Turn", "Turn", "Treatments", 1, _T("Side to Side", "Back to Left", "Back to Right", "Refused")),
    _txt(224093, "Position", "Position", "Treatments", 1, _T("Supine", "Left Side", "Right Side", "Sitting")),
    _txt(224084, "Activity", "Activity ", "Treatments", 2, _T("Bed", "Bed", "Chair", "Dangle", "Ambulate")),
    _txt(224086, "Activity Tolerance", "Activity Tolerance", "Treatments", 4, _T("Tolerated Well", "Fatigues Easily", "Dyspnea on exertion")),
    _txt(224088, "Pressure Reducing Device", "Pressure Reducing Device", "Treatments", 4, _T("Pressure Redistribution Mattress", "Waffle boots", "Gel Pad")),
    _txt(224089, "Anti Embolic Device", "Anti Embolic Device", "Treatments", 4, _T("Pneumoboots", "Pneumoboots", "Ted hose")),
    _txt(223999, "Oral Cavity", "Oral Cavity", "GI/GU", 4, _T("Pink/Moist", "Dry", "Coated")),
    _txt(224003, "Abdominal Assessment", "Abdominal Assessment", "GI/GU", 2, _T("Soft", "Soft", "Non-tender", "Distended", "Obese")),
    _txt(224015, "Urine Source", "Urine Source", "GI/GU", 2, _T("Foley", "Foley", "Voiding", "Condom Cath")),
    _txt(224876, "Urine Appearance", "Urine Appearance", "GI/GU", 4, _T("Clear", "Clear", "Cloudy", "Sediment")),
    _txt(224001, "Diet Type", "Diet Type", "GI/GU", 6, _T("NPO", "Regular", "Cardiac", "Diabetic", "Clear liquids")),
    _txt(224027, "Skin Temperature", "Skin Temp", "Skin - Assessment", 2, _T("Warm", "Warm", "Cool")),
    _txt(224054, "Braden Sensory Perception", "Braden Sensory Perception", "Skin - Assessment", 4,
         [("No Impairment", 4), ("Slight Impairment", 3), ("Very Limited", 2), ("Completely Limited", 1)]),
    _txt(224055, "Braden Moisture", "Braden Moisture", "Skin - Assessment", 4,
         [("Rarely Moist", 4), ("Occasionally Moist", 3), ("Moist", 2), ("Consistently Moist", 1)]),
    _txt(224056, "Braden Activity", "Braden Activity", "Skin - Assessment", 4,
         [("Walks Frequently", 4), ("Walks Occasionally", 3), ("Chairfast", 2), ("Bedfast", 1)]),
    _txt(224057, "Braden Mobility", "Braden Mobility", "Skin - Assessment", 4,
         [("No Limitations", 4), ("Slight Limitations", 3), ("Very Limited", 2), ("Completely Immobile", 1)]),
    _txt(224058, "Braden Nutrition", "Braden Nutrition", "Skin - Assessment", 4,
         [("Excellent", 4), ("Adequate", 3), ("Probably Inadequate", 2), ("Very Poor", 1)]),
    _txt(224059, "Braden Friction/Shear", "Braden Friction/Shear", "Skin - Assessment", 4,
         [("No Apparent Problem", 3), ("Potential Problem", 2), ("Problem", 1)]),
    _txt(227969, "Safety Measures", "Safety Measures", "Restraint/Support Systems", 4, _T("Bed locked in low position", "Call bell in reach", "Side rails x 2")),
    _num(225664, "Glucose finger stick (range 70-100)", "Glucose FS (range 70 -100)", "Labs", None, 6, 140, 40, 0, 40, 500),
    _num(220645, "Sodium (serum)", "Sodium (serum)", "Labs", None, 12, 138, 4.5, 0, 115, 165),
    _num(227442, "Potassium (serum)", "Potassium (serum)", "Labs", None, 12, 4.1, 0.55, 1, 2.2, 7.5),
    _num(220602, "Chloride (serum)", "Chloride (serum)", "Labs", None, 12, 102, 5, 0, 80, 125),
    _num(227443, "HCO3 (serum)", "HCO3 (serum)", "Labs", None, 12, 24, 4, 0, 8, 42),
    _num(225624, "BUN", "BUN", "Labs", None, 12, 24, 16, 0, 3, 150),
    _num(220615, "Creatinine (serum)", "Creatinine (serum)", "Labs", None, 12, 1.2, 0.9, 1, 0.2, 10),
    _num(220621, "Glucose (serum)", "Glucose (serum)", "Labs", None, 12, 130, 45, 0, 40, 600),
    _num(220545, "Hematocrit (serum)", "Hematocrit (serum)", "Labs", None, 12, 31, 6, 1, 15, 55),
    _num(220228, "Hemoglobin", "Hemoglobin", "Labs", "g/dl", 12, 10.2, 2.1, 1, 5, 18),
    _num(220546, "WBC", "WBC", "Labs", None, 12, 10, 5, 1, 0.5, 60),
    _num(227457, "Platelet Count", "Platelet Count", "Labs", None, 12, 210, 95, 0, 10, 900),
    _num(220635, "Magnesium", "Magnesium", "Labs", None, 12, 2.0, 0.3, 1, 1.0, 4.0),
    _num(225668, "Lactic Acid", "Lactic Acid", "Labs", None, 12, 1.9, 1.2, 1, 0.4, 15),
    _num(224639, "Daily Weight", "Daily Weight", "General", "kg", 24, 82, 20, 1, 35, 200),
]
# Charted once at the start of each stay.
ADMIT_ITEMS = [
    _num(226512, "Admission Weight (Kg)", "Admission Weight (Kg)", "General", "kg", 0, 82, 20, 1, 35, 200),
    _num(226730, "Height (cm)", "Height (cm)", "General", "cm", 0, 170, 10, 0, 145, 200),
]
# (itemid, label, abbreviation, linksto, category, unitname, param_type) of the other ICU event tables.
OTHER_ITEMS = [
    # inputevents: + (amount mean, amountuom, rate, rateuom, ordercategoryname, ordercategorydescription)
    (225158, "NaCl 0.9%", "NaCl 0.9%", "inputevents", "Fluids/Intake", "mL", "Solution"),
    (220949, "Dextrose 5%", "Dextrose 5%", "inputevents", "Fluids/Intake", "mL", "Solution"),
    (225828, "LR", "LR", "inputevents", "Fluids/Intake", "mL", "Solution"),
    (226452, "PO Intake", "PO Intake", "inputevents", "Fluids/Intake", "mL", "Solution"),
    (221906, "Norepinephrine", "Norepinephrine", "inputevents", "Medications", "mg", "Solution"),
    (222168, "Propofol", "Propofol", "inputevents", "Medications", "mg", "Solution"),
    (221744, "Fentanyl", "Fentanyl", "inputevents", "Medications", "mg", "Solution"),
    (223258, "Insulin - Regular", "Insulin - Regular", "inputevents", "Medications", "units", "Solution"),
    (225152, "Heparin Sodium", "Heparin Sodium", "inputevents", "Medications", "units", "Solution"),
    (225798, "Vancomycin", "Vancomycin", "inputevents", "Antibiotics", "dose", "Solution"),
    (225893, "Piperacillin/Tazobactam (Zosyn)", "Piperacillin/Tazobactam (Zosyn)", "inputevents", "Antibiotics", "dose", "Solution"),
    (221794, "Furosemide (Lasix)", "Furosemide (Lasix)", "inputevents", "Medications", "mg", "Solution"),
    (225166, "Potassium Chloride", "Potassium Chloride - KCL", "inputevents", "Medications", "mEq", "Solution"),
    # ingredientevents
    (220490, "Water", "H2O", "ingredientevents", "Ingredients", "mL", "Ingredient"),
    (227074, "IVF ingredient", "IVF ingredient", "ingredientevents", "Ingredients", "mL", "Ingredient"),
    (226060, "Calories", "Calories", "ingredientevents", "Ingredients", "Kcal", "Ingredient"),
    # outputevents
    (226559, "Foley", "Foley", "outputevents", "Output", "mL", "Numeric"),
    (226560, "Void", "Void", "outputevents", "Output", "mL", "Numeric"),
    (226588, "Chest Tube #1", "Chest Tube #1", "outputevents", "Output", "mL", "Numeric"),
    (227510, "TF Residual", "TF Residual", "outputevents", "Output", "mL", "Numeric"),
    # procedureevents
    (225792, "Invasive Ventilation", "Invasive Ventilation", "procedureevents", "2-Ventilation", None, "Processes"),
    (224275, "20 Gauge", "20 Gauge", "procedureevents", "Access Lines - Peripheral", None, "Processes"),
    (225752, "Arterial Line", "Arterial Line", "procedureevents", "Access Lines - Invasive", None, "Processes"),
    (224263, "Multi Lumen", "Multi Lumen", "procedureevents", "Access Lines - Invasive", None, "Processes"),
    (225459, "Chest X-Ray", "Chest X-Ray", "procedureevents", "5-Imaging", None, "Processes"),
    (225402, "EKG", "EKG", "procedureevents", "4-Procedures", None, "Processes"),
    (229351, "Foley Catheter", "Foley Catheter", "procedureevents", "GI/GU", None, "Processes"),
    # datetimeevents
    (225754, "20 Gauge Insertion Date", "20 Gauge Insertion Date", "datetimeevents", "Access Lines - Peripheral", None, "Date and time"),
    (224288, "Arterial line Insertion Date", "Arterial line Insertion Date", "datetimeevents", "Access Lines - Invasive", None, "Date and time"),
    (224280, "Multi Lumen Insertion Date", "Multi Lumen Insertion Date", "datetimeevents", "Access Lines - Invasive", None, "Date and time"),
    (229352, "Foley Cath Insertion Date", "Indwelling Urinary Cath Insertion Date", "datetimeevents", "GI/GU", None, "Date and time"),
    (225343, "Date of Admission to Hospital", "Date of Admission to Hospital", "datetimeevents", "ADT", None, "Date and time"),
]
# inputevents generation: itemid, amount mean, amountuom, rate (None = bolus), rateuom, ordercategoryname, description, weight
INPUTS = [
    (225158, 500, "ml", 100, "mL/hour", "03-IV Fluid Bolus", "Continuous IV", 6),
    (220949, 250, "ml", 10, "mL/hour", "02-Fluids (Crystalloids)", "Continuous Med", 4),
    (225828, 1000, "ml", 250, "mL/hour", "03-IV Fluid Bolus", "Continuous IV", 2),
    (226452, 240, "ml", None, None, "14-Oral/Gastric Intake", "Bolus", 4),
    (221906, 1.5, "mg", 0.08, "mcg/kg/min", "01-Drips", "Continuous Med", 3),
    (222168, 200, "mg", 30, "mcg/kg/min", "01-Drips", "Continuous Med", 3),
    (221744, 0.2, "mg", 50, "mcg/hour", "01-Drips", "Continuous Med", 2),
    (223258, 4, "units", None, None, "11-Prophylaxis (Non IV)", "Drug Push", 3),
    (225152, 1000, "units", 1000, "units/hour", "01-Drips", "Continuous Med", 2),
    (225798, 1, "dose", None, None, "08-Antibiotics (IV)", "Drug Push", 2),
    (225893, 1, "dose", None, None, "08-Antibiotics (IV)", "Drug Push", 2),
    (221794, 40, "mg", None, None, "05-Med Bolus", "Drug Push", 2),
    (225166, 20, "mEq", None, None, "05-Med Bolus", "Drug Push", 2),
]
OUTPUTS = [(226559, 90, 8), (226560, 250, 2), (226588, 60, 1), (227510, 30, 1)]  # itemid, mean mL, weight

# ---------------------------------------------------------------- medications (prescriptions / pharmacy / emar)
# drug, formulary_drug_cd, prod_strength, form_rx, dose_val_rx, dose_unit_rx, route, frequency, doses/24h, weight
DRUGS = [
    ("Vancomycin", "VANC1F", "1g Frozen Bag", None, "1000", "mg", "IV", "Q12H", 2, 3),
    ("Piperacillin-Tazobactam", "PTZ4F", "4.5 g Frozen Bag", None, "4.5", "g", "IV", "Q8H", 3, 3),
    ("Heparin", "HEPA5I", "5000 Units / mL- 1mL Vial", None, "5000", "UNIT", "SC", "Q8H", 3, 5),
    ("Insulin", "INSULIN", "100 Units / mL - 10 mL Vial", None, "0", "UNIT", "SC", "ACHS", 4, 4),
    ("Furosemide", "FURO40I", "40mg/4mL Vial", None, "40", "mg", "IV", "BID", 2, 3),
    ("Norepinephrine", "NORE4I", "4 mg / 250 mL Premix Bag", None, "0.03", "mcg/kg/min", "IV DRIP", "TITRATE", 1, 2),
    ("Acetaminophen", "ACET325", "325mg Tablet", "TAB", "650", "mg", "PO/NG", "Q6H:PRN", 4, 4),
    ("Sodium Chloride 0.9%  Flush", "NACLFLUSH", "10 mL Syringe", None, "3", "mL", "IV", "Q8H", 3, 5),
    ("Potassium Chloride", "KCL20PM", "20 mEq / 100 mL SW Premix", None, "20", "mEq", "IV", "ONCE", 1, 3),
    ("Pantoprazole", "PANT40", "40mg Tablet", "TAB", "40", "mg", "PO", "Q24H", 1, 3),
    ("Metoprolol Tartrate", "METO25", "25mg Tablet", "TAB", "25", "mg", "PO/NG", "BID", 2, 3),
    ("Docusate Sodium", "DOCU100", "100mg Capsule", "CAP", "100", "mg", "PO", "BID", 2, 2),
    ("Senna", "SENN187", "8.6 mg Tablet", "TAB", "8.6", "mg", "PO", "BID:PRN", 2, 2),
    ("Atorvastatin", "ATOR40", "40mg Tablet", "TAB", "40", "mg", "PO/NG", "QPM", 1, 2),
    ("Ceftriaxone", "CEFT1F", "1g Frozen Bag", None, "1", "g", "IV", "Q24H", 1, 2),
    ("Magnesium Sulfate", "MAG2PM", "2 g / 50 mL Premix Bag", None, "2", "g", "IV", "ONCE", 1, 2),
    ("Propofol", "PROP100IG", "100mg/100mL Vial", None, "5", "mcg/kg/min", "IV DRIP", "TITRATE", 1, 1),
    ("Fentanyl Citrate", "FENT2I", "100mcg/2mL Amp", None, "25", "mcg", "IV", "Q2H:PRN", 12, 1),
]
POE_OTHER = [("Lab", None, 8), ("General Care", "Other", 3), ("General Care", "Vitals/Monitoring", 3),
             ("Nutrition", "Diet", 2), ("IV therapy", "IV fluids", 2), ("ADT orders", "Admit", 1),
             ("Radiology", None, 2), ("Respiratory", None, 1), ("Consults", None, 1), ("Blood Bank", None, 1)]

# ---------------------------------------------------------------- microbiology
# spec_itemid, spec_type_desc, test_itemid, test_name, weight
MICRO_TESTS = [(70012, "BLOOD CULTURE", 90012, "Blood Culture, Routine", 4),
               (70079, "URINE", 90039, "URINE CULTURE", 3),
               (70070, "SWAB", 90115, "R/O VANCOMYCIN RESISTANT ENTEROCOCCUS", 2),
               (70091, "MRSA SCREEN", 90036, "MRSA SCREEN", 2),
               (70062, "SPUTUM", 90032, "RESPIRATORY CULTURE", 1)]
ORGANISMS = [(80002, "ESCHERICHIA COLI"), (80023, "STAPH AUREUS COAG +"), (80053, "ENTEROCOCCUS SP."),
             (80026, "PSEUDOMONAS AERUGINOSA"), (80004, "KLEBSIELLA PNEUMONIAE")]
ANTIBIOTICS = [(90004, "AMPICILLIN"), (90005, "CEFAZOLIN"), (90012, "GENTAMICIN"), (90016, "OXACILLIN"),
               (90019, "VANCOMYCIN"), (90025, "LEVOFLOXACIN"), (90026, "TRIMETHOPRIM/SULFA")]
