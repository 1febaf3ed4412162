"""`mimiclab demo`: real demo from a PhysioNet-like server or a mirror folder, synthetic when unreachable."""

from __future__ import annotations

import duckdb
import pytest
from typer.testing import CliRunner

from mimiclab.cli import app
from mimiclab.demo import prepare

from fixtures_physionet import DEAD_URL, physionet, physionet_isolation  # noqa: F401


def _count(db, q):
    return duckdb.connect(str(db), read_only=True).execute(q).fetchone()[0]


def test_demo_downloads_real_demo_from_server_and_builds(physionet, demo_dir):  # noqa: F811
    said = []
    res = prepare(mirror=physionet.url, say=said.append, download_progress=False)
    assert res.slug == "mimic-iv-demo" and not res.synthetic
    m = res.build.manifest
    assert not m.synthetic
    # the server lacks chartevents (as the shared copy does): built without it, flagged, and said so
    assert m.tables["mimiciv_icu.chartevents"].status == "not_loaded"
    assert any("chartevents" in s for s in said)
    raw = duckdb.execute(f"SELECT count(*) FROM read_csv_auto('{demo_dir}/hosp/labevents.csv.gz')").fetchone()[0]
    assert _count(res.build.database, "SELECT count(*) FROM mimiciv_hosp.labevents") == raw
    # second run: nothing transferred, nothing rebuilt
    served = sum(physionet.bytes_served.values())
    again = prepare(mirror=physionet.url, say=said.append, download_progress=False)
    assert sum(physionet.bytes_served.values()) - served < 10_000  # only SHA256SUMS.txt / probes
    assert again.build.loaded == []


def test_demo_from_local_mirror_folder(data_root, demo_dir):
    res = prepare(mirror=str(data_root), say=lambda s: None, download_progress=False)
    assert res.slug == "mimic-iv-demo" and not res.synthetic
    assert _count(res.build.database, "SELECT count(*) FROM mimiciv_hosp.admissions") == 275


def test_demo_falls_back_to_synthetic_when_unreachable(monkeypatch):
    said = []
    res = prepare(mirror=DEAD_URL, say=said.append, patients=20, download_progress=False)
    assert res.synthetic and res.slug == "mimic-iv-synthetic"
    assert any("cannot be reached" in s for s in said)
    m = res.build.manifest
    assert m.synthetic and m.synthetic_info["patients"] == 20
    db = res.build.database
    assert _count(db, "SELECT count(*) FROM mimiciv_hosp.patients") == 20
    assert _count(db, "SELECT count(*) FROM mimiciv_icu.chartevents") > 0  # synthetic has vitals
    # every table of hosp/icu is loaded
    assert not m.not_loaded
    # the README's commands name mimic-iv-demo: not built offline, and the message says what was built instead
    # (it said "run `mimiclab demo`", the step just taken)
    out = CliRunner().invoke(app, ["sql", "mimic-iv-demo", "SELECT 1"], env={"COLUMNS": "200"})
    assert out.exit_code == 1 and "built the synthetic mimic-iv-synthetic instead" in " ".join(out.output.split())


def test_info_marks_synthetic(monkeypatch):
    prepare(synthetic=True, patients=10, say=lambda s: None)
    out = CliRunner().invoke(app, ["info"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "synthetic" in out.output
    out = CliRunner().invoke(app, ["info", "mimic-iv-synthetic"], env={"COLUMNS": "200"})
    assert "SYNTHETIC" in out.output


def test_demo_cli_no_serve(data_root):
    out = CliRunner().invoke(app, ["demo", "--mirror", str(data_root), "--no-serve"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "built mimic-iv-demo 2.2" in out.output


@pytest.mark.parametrize("cmd", [[], ["demo"], ["build"], ["info"], ["sql"], ["datasets"]])
def test_every_command_has_help(cmd):
    out = CliRunner().invoke(app, [*cmd, "--help"])
    assert out.exit_code == 0 and "Usage" in out.output
