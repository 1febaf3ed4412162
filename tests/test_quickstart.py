"""docs/quickstart.md runs top to bottom: its ```python blocks are executed in order, in one namespace,
against the real demo, so the documentation cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# the API fetches point lookups with execute() + Arrow on purpose (see Dataset.fetch)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")

DOC = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_quickstart_has_code():
    assert len(blocks()) >= 10


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(data_root, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")  # plt.show() in a test must not block
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIMIC_DEMO_DIR", str(data_root / "mimic-iv-demo" / "2.2"))
    monkeypatch.setenv("MIMIC3_DEMO_DIR", str(data_root / "mimiciii-demo" / "1.4"))
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "quickstart"}
    for i, code in enumerate(blocks(), 1):
        try:
            exec(compile(code, f"{DOC.name} block {i}", "exec"), ns)
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"quickstart block {i} failed: {exc!r}\n{code}") from exc
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"doses.png", "age.html", "admission_type.png", "creatinine.png", "stays.html"} <= figures
    assert len(ns["timeline"]) > 0 and ns["p3"].subject_id == 10006


def test_api_doc_runs(data_root, tmp_path, monkeypatch):
    """docs/api.md's examples run too (on the demo built into a private home)."""
    import warnings

    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    build("mimic-iv-demo", source=data_root / "mimic-iv-demo" / "2.2", tables=["hosp/admissions", "hosp/patients"])
    doc = DOC.with_name("api.md")
    ns: dict = {"__name__": "api_doc"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", doc.read_text(), flags=re.S | re.M), 1):
            exec(compile(code, f"{doc.name} block {i}", "exec"), ns)
    assert i >= 1 and ns["mimic"].sql("SELECT count(*) AS n FROM ids", frames={"ids": ns["ids"]})["n"][0] == 2
