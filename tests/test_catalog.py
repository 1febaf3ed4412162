"""The catalog against reality: the real demo files in ../shared/data, read with DuckDB.

Oracles are independent of mimiclab: headers are read with the csv module, row counts with DuckDB's own
`read_csv_auto` (no catalog types), checksummed file lists from PhysioNet's SHA256SUMS.txt.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import duckdb
import pytest

from mimiclab import catalog
from mimiclab.catalog import CatalogError

DEMOS = [d for d in catalog.datasets() if d.is_demo]
TABLE_DEMOS = [d for d in DEMOS if d.family]
NON_TABLE_FILES = re.compile(
    r"(^|/)(LICENSE\.txt|README\.txt|SHA256SUMS\.txt|RECORDS|demo_subject_id\.csv)$|_data_dictionary\.csv$|\.json$")


def _demo_tables():
    for d in TABLE_DEMOS:
        for v in d.versions:
            for t in d.tables(v.version):
                yield pytest.param(d, v.version, t, id=f"{d.slug}-{v.version}-{t.module}.{t.name}")


def _find(base: Path, stem: str) -> Path | None:
    for ext in (".csv.gz", ".csv"):
        if (base / (stem + ext)).exists():
            return base / (stem + ext)
    return None


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return next(csv.reader(f))


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _typed_read(con: duckdb.DuckDBPyConnection, path: Path, header: list[str], types: list[str]) -> int:
    spec = ", ".join(f"'{h}': '{t}'" for h, t in zip(header, types, strict=True))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE typed AS SELECT * FROM read_csv('{_sql_path(path)}', header=true, "
        f"auto_detect=false, columns={{{spec}}})"
    )
    return con.execute("SELECT count(*) FROM typed").fetchone()[0]


@pytest.mark.parametrize(("ds", "version", "table"), list(_demo_tables()))
def test_demo_file_matches_catalog(data_root: Path, ds, version, table) -> None:
    """Header = catalog columns in order (case-insensitive); every value parses with the catalog type; the typed
    row count equals DuckDB's untyped count, and the count recorded in datasets.yaml."""
    base = data_root / ds.slug / version
    if not base.is_dir():
        pytest.skip(f"{ds.slug} {version} is not in the offline test data (see its README)")
    path = _find(base, table.file)
    if path is None:
        # a file the offline copy lacks; it must be one the official list names (a real partial download)
        listed = (base / "SHA256SUMS.txt").read_text()
        assert re.search(rf"\s{re.escape(table.file)}\.csv(\.gz)?$", listed, re.M), f"{table.file} unknown to PhysioNet"
        pytest.skip(f"{ds.slug}/{version}/{table.file} not in the offline test data")
    header = _header(path)
    cols = table.columns_for(version)
    assert [h.lower() for h in header] == [c.name for c in cols]

    con = duckdb.connect()
    typed = _typed_read(con, path, header, [c.type for c in cols])
    untyped = con.execute(f"SELECT count(*) FROM read_csv_auto('{_sql_path(path)}')").fetchone()[0]
    assert typed == untyped

    rel = str(path.relative_to(base))
    info = ds.version(version).files.get(rel)
    assert info is not None, f"{rel} missing from datasets.yaml"
    assert info.rows == typed and not info.approx_rows
    assert info.size == path.stat().st_size and not info.approx_size

    if table.primary_key:  # the declared key really is unique (and present) in the demo
        keys = ", ".join(f'"{k}"' for k in table.primary_key)
        dups = con.execute(f"SELECT count(*) FROM (SELECT {keys} FROM typed GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        nulls = con.execute("SELECT count(*) FROM typed WHERE " + " OR ".join(f'"{k}" IS NULL' for k in table.primary_key)).fetchone()[0]
        assert (dups, nulls) == (0, 0)


@pytest.mark.parametrize("ds", DEMOS, ids=lambda d: d.slug)
def test_official_table_files_are_in_the_catalog(data_root: Path, ds) -> None:
    """Every csv that PhysioNet's SHA256SUMS.txt lists for a demo is a catalog table (or a known non-table file),
    and every file the catalog lists for the version is in the official list."""
    for v in ds.versions:
        sums = data_root / ds.slug / v.version / "SHA256SUMS.txt"
        if not sums.exists():
            pytest.skip(f"{ds.slug} {v.version} not in the offline test data")
        listed = [line.split(maxsplit=1)[1].strip() for line in sums.read_text().splitlines() if line.strip()]
        stems = {t.file for t in ds.tables(v.version)}
        for path in listed:
            if NON_TABLE_FILES.search(path):
                continue
            stem = re.sub(r"\.csv(\.gz)?$", "", path)
            assert stem in stems, f"{ds.slug}: official file {path} has no catalog table"
        for path in v.files:
            assert path in listed or "2_achilles_json/" in path, f"{ds.slug}: catalog lists {path}, PhysioNet does not"


@pytest.mark.parametrize("ds", DEMOS, ids=lambda d: d.slug)
def test_demo_file_facts_match_the_files(data_root: Path, ds) -> None:
    """Every present demo file listed in datasets.yaml has its exact size and row count recorded."""
    for v in ds.versions:
        base = data_root / ds.slug / v.version
        if not base.is_dir():
            pytest.skip(f"{ds.slug} {v.version} not in the offline test data")
        con = duckdb.connect()
        for rel, info in v.files.items():
            path = base / rel
            if not path.exists():
                assert info.approx_size or info.size is None, f"{rel}: absent here, so its size cannot be exact"
                continue
            assert info.size == path.stat().st_size, rel
            assert not info.approx_size, rel
            if rel.endswith((".csv", ".csv.gz")):
                n = con.execute(f"SELECT count(*) FROM read_csv_auto('{_sql_path(path)}')").fetchone()[0]
                assert info.rows == n and not info.approx_rows, rel


def test_demo_row_counts_agree_with_the_shared_data_readme(data_root: Path) -> None:
    """The README of the shared data states row counts counted with a csv parser; the catalog agrees."""
    readme = (data_root / "README.md").read_text()
    section = None
    checked = 0
    for line in readme.splitlines():
        if line.startswith("## "):
            section = line[3:].split()[0]
        m = re.match(r"\| `([^`]+)` \| (\d+) \|", line)
        if m and section:
            try:
                ds = catalog.get(section)
            except CatalogError:
                continue
            info = ds.version().files.get(m.group(1))
            if info is not None and info.rows is not None:
                assert info.rows == int(m.group(2)), (section, m.group(1))
                checked += 1
    assert checked > 50


def test_references_resolve() -> None:
    slugs = {d.slug for d in catalog.datasets()}
    assert len(slugs) == len(catalog.datasets())
    for d in catalog.datasets():
        if d.synthetic:  # made on this machine by mimiclab.synth: no PhysioNet page, files or access steps
            assert d.access == "local" and d.schema_family() is not None and not d.demo_of
            continue
        assert d.page == f"https://physionet.org/content/{d.slug}/"
        assert d.access == ("open" if d.is_demo or d.slug == "mimic-iv-ecg" else "credentialed")
        assert d.default_version in {v.version for v in d.versions}
        if d.demo_of:
            assert d.demo_of in slugs and catalog.get(d.demo_of).family in (d.family, "mimiciv" if d.family == "omop" else d.family)
        if d.access == "open" and d.is_demo:
            assert d.zip_name
        fam = d.schema_family()
        mods = {m.name for m in fam.modules} if fam else set()
        assert set(d.modules) <= mods
        for v in d.versions:
            assert set(d.modules_for(v.version)) <= mods
            assert set(v.bigquery) <= set(d.modules) and set(d.bigquery) <= set(d.modules)
            stems = {t.file for t in d.tables(v.version)}
            for t in d.tables(v.version):  # every table of a version is a file the version lists
                assert any(re.sub(r"\.csv(\.gz)?$", "", p) == t.file for p in v.files), (d.slug, v.version, t.file)
            for path in v.files:
                if path.endswith((".csv", ".csv.gz")) and fam and not NON_TABLE_FILES.search(path):
                    assert re.sub(r"\.csv(\.gz)?$", "", path) in stems, (d.slug, path)
            if v.files and v.size_bytes:
                assert v.size_bytes >= sum(f.size or 0 for f in v.files.values()) * 0.99


def test_tables_columns_and_descriptions() -> None:
    seen = set()
    for d in catalog.datasets():
        fam = d.schema_family()
        if fam is None or fam.name in seen:
            continue
        seen.add(fam.name)
        for m in fam.modules:
            names = [t.name for t in m.tables]
            assert len(names) == len(set(names))
            for t in m.tables:
                assert t.description and t.columns, t.name
                cols = [c.name for c in t.columns]
                assert len(cols) == len(set(cols)), t.name
                assert all(c.description for c in t.columns), t.name
                assert all(c == c.lower() for c in cols), t.name
                assert set(t.primary_key) <= set(cols), t.name
                assert t.patient_key is None or t.patient_key in cols, t.name
                if t.kind == "dictionary":
                    assert t.patient_key is None, t.name


def test_mimiciv_inventory_and_known_counts() -> None:
    iv = catalog.get("mimiciv")
    hosp = {t.name for t in iv.tables("2.2", modules=["hosp"])}
    icu = {t.name for t in iv.tables("3.1", modules=["icu"])}
    assert len(hosp) == 22 and "provider" in hosp and "omr" in hosp
    assert icu == {"caregiver", "chartevents", "d_items", "datetimeevents", "icustays", "ingredientevents",
                   "inputevents", "outputevents", "procedureevents"}
    assert [c.name for c in iv.tables(names=["chartevents"])[0].columns_for("3.1")] == [
        "subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
        "valuenum", "valueuom", "warning"]
    files = iv.version("2.2").files
    assert files["icu/chartevents.csv.gz"].rows == 313_645_063
    assert files["hosp/labevents.csv.gz"].rows == 118_171_367
    assert files["hosp/patients.csv.gz"].rows == 299_712
    assert files["hosp/admissions.csv.gz"].rows == 431_231
    assert files["icu/icustays.csv.gz"].rows == 73_181
    assert catalog.get("mimic-iv-demo").version("2.2").files["icu/chartevents.csv.gz"].rows == 668_862
    assert iv.bigquery_for("3.1")["hosp"] == "mimiciv_3_1_hosp"
    assert iv.bigquery_for("2.2")["icu"] == "mimiciv_2_2_icu"
    assert catalog.get("mimic-iv-demo").db_schema("icu") == "mimiciv_icu"
    assert catalog.get("mimiciii-demo").tables(names=["admissions"])[0].file == "ADMISSIONS"
    omop = catalog.get("mimic-iv-demo-omop")
    assert omop.tables(names=["concept"])[0].file == "1_omop_data_csv/2b_concept"
    assert {"measurement", "observation", "person"} <= {t.name for t in omop.tables()}


def test_string_ids_stay_strings() -> None:
    """Provider ids (P03YMR) and codes with leading zeros must not be typed as numbers."""
    iv = catalog.get("mimiciv")
    for tname, col in [("provider", "provider_id"), ("admissions", "admit_provider_id"), ("labevents", "order_provider_id"),
                       ("poe", "order_provider_id"), ("prescriptions", "ndc"), ("emar_detail", "parent_field_ordinal"),
                       ("d_icd_diagnoses", "icd_code")]:
        assert iv.tables(names=[tname])[0].column(col).type == "VARCHAR", (tname, col)


def test_errors_suggest_close_matches() -> None:
    with pytest.raises(CatalogError, match="mimiciv"):
        catalog.get("mimic-iv")
    with pytest.raises(CatalogError, match="admissions"):
        catalog.get("mimiciv").tables(names=["admission"])
    with pytest.raises(CatalogError, match="hosp"):
        catalog.get("mimiciv").tables(modules=["hospital"])
    with pytest.raises(CatalogError, match=r"2\.2"):
        catalog.get("mimiciv").version("2.0")
    with pytest.raises(CatalogError, match="anchor_age"):
        catalog.get("mimiciv").tables(names=["patients"])[0].column("anchorage")
