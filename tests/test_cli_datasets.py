"""`mimiclab datasets` through typer's CliRunner; expectations come from the catalog data, not from the CLI."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from mimiclab import catalog
from mimiclab.cli import app

runner = CliRunner()


def _run(*args: str):
    # wide terminal so rich does not wrap or truncate cells
    return runner.invoke(app, list(args), env={"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})


def test_list_shows_every_dataset() -> None:
    r = _run("datasets")
    assert r.exit_code == 0, r.output
    for ds in catalog.datasets():
        line = next((ln for ln in r.output.splitlines() if re.search(rf"\b{re.escape(ds.slug)}\s", ln)), None)
        assert line is not None, ds.slug
        assert ds.access in line
        for v in ds.versions:
            assert v.version in line


def test_show_demo_lists_tables_rows_and_schemas() -> None:
    r = _run("datasets", "show", "mimic-iv-demo")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "no PhysioNet account" in out
    assert "mimiciv_hosp" in out and "mimiciv_icu" in out
    ds = catalog.get("mimic-iv-demo")
    for t in ds.tables():
        assert f"{ds.db_schema(t.module)}.{t.name}" in out
    assert "275" in out  # admissions rows
    assert "668,862" in out  # chartevents rows (published; the file itself is absent offline)


def test_show_credentialed_explains_the_steps_and_bigquery() -> None:
    r = _run("datasets", "show", "mimiciv", "--version", "2.2")
    assert r.exit_code == 0, r.output
    out = r.output
    for needle in ("PhysioNet account", "credentialing", "CITI", "data use agreement", "https://physionet.org/content/mimiciv/"):
        assert needle in out, needle
    assert "mimiciv_2_2_hosp" in out
    assert "313,645,063" in out
    assert "3.1" in out  # the other version is mentioned


def test_show_default_version_is_catalog_default() -> None:
    r = _run("datasets", "show", "mimiciv")
    assert r.exit_code == 0, r.output
    assert f"mimiciv {catalog.get('mimiciv').default_version}" in r.output
    assert "mimiciv_3_1_icu" in r.output


def test_show_file_only_dataset_lists_files() -> None:
    r = _run("datasets", "show", "mimic-cxr-jpg")
    assert r.exit_code == 0, r.output
    assert "mimic_cxr.metadata" in r.output and "377,110" in r.output
    r = _run("datasets", "show", "mit-critical-datathon-2023")
    assert r.exit_code == 0, r.output
    assert "mimic_pulseOx_data.csv" in r.output


def test_unknown_slug_and_version_fail_cleanly_with_suggestions() -> None:
    r = _run("datasets", "show", "mimic-iv-dem")
    assert r.exit_code == 1
    assert "mimic-iv-demo" in r.output and "Traceback" not in r.output
    r = _run("datasets", "show", "mimiciv", "--version", "9.9")
    assert r.exit_code == 1
    assert "2.2" in r.output and "3.1" in r.output
