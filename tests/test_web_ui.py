"""Workbench screens a clinician meets, checked through the JSON API (fast; the browser tests look at them).

Expected values come from the catalog's own YAML and the raw demo files, read here independently.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml
from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1"
CATALOG = Path(__file__).resolve().parents[1] / "src" / "mimiclab" / "catalog" / "datasets.yaml"


@pytest.fixture(scope="module")
def client(data_root, demo_dir, tmp_path_factory):
    """mimic-iv-demo and mimic-iv-ed-demo built into a private home; the workbench without a token."""
    from mimiclab.load import build
    from mimiclab.web import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(tmp_path_factory.mktemp("ui-home")))
        build("mimic-iv-demo", source=demo_dir)
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
        with TestClient(create_app(dataset="mimic-iv-demo", token=None), base_url=LOCAL) as c:
            yield c


def test_home_lists_local_datasets_apart_from_physionet(client):
    """mimic-iv-synthetic (access local) is never listed as available on PhysioNet, with credentialing steps."""
    cat = yaml.safe_load(CATALOG.read_text())
    entries = cat["datasets"] if isinstance(cat, dict) else cat
    access = {d["slug"]: d["access"] for d in entries}
    local = {s for s, a in access.items() if a == "local"}
    assert "mimic-iv-synthetic" in local
    d = client.get("/api/datasets").json()
    built = [b["slug"] for b in d["built"]]
    assert sorted(built) == ["mimic-iv-demo", "mimic-iv-ed-demo"]
    assert {a["slug"] for a in d["available"]} == {s for s, a in access.items() if a != "local"} - set(built)
    assert {x["slug"] for x in d["local"]} == local
    assert all(a["access"] in ("open", "credentialed") for a in d["available"])
    assert all(x["commands"] and not any("download" in c for c in x["commands"]) for x in d["local"])


def test_home_says_which_pages_a_dataset_cannot_open(client):
    d = {b["slug"]: b for b in client.get("/api/datasets").json()["built"]}
    assert d["mimic-iv-demo"]["unsupported"] == {}
    ed = d["mimic-iv-ed-demo"]["unsupported"]
    assert set(ed) == {"patients", "cohort"} and "no patient mapping" in ed["patients"]
    # what the home page promises matches what the API then does
    r = client.post("/api/datasets/mimic-iv-ed-demo/cohort/run", json={"spec": {"name": "x", "unit": "patient"}})
    assert r.status_code == 400


def test_patient_chart_opens_on_a_clinical_item_not_the_most_frequent(client, demo_dir):
    """The demo has no chartevents (no heart rate): the explorer opens on creatinine for every patient who has
    one, even where another item (H, I, L ...) was measured more often."""
    raw = duckdb.connect()
    rows = raw.execute(
        f"SELECT subject_id, count(*) FILTER (WHERE itemid = 50912 AND valuenum IS NOT NULL) AS cr, "
        f"max(n) AS top FROM (SELECT subject_id, itemid, valuenum, count(valuenum) OVER (PARTITION BY subject_id, itemid) AS n "
        f"FROM read_csv_auto('{demo_dir}/hosp/labevents.csv.gz')) GROUP BY 1 HAVING cr > 0 AND top > cr ORDER BY 1 LIMIT 3"
    ).fetchall()
    assert rows
    for sid, n_cr, _ in rows:
        d = client.get(f"/api/datasets/mimic-iv-demo/patients/{sid}").json()
        assert d["first_item"] == "50912", (sid, d["first_item"])
        assert d["first_series"]["label"] == "Creatinine"
        assert sum(v is not None for v in (r[1] for r in d["first_series"]["series"]["rows"])) == n_cr
