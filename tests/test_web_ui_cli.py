"""CLI output a clinician or a CI log reads: no message cut mid-sentence when stdout is not a terminal, and
`mimiclab info` never truncates a dataset name in an 80-column terminal."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(args, env):
    from mimiclab.cli import app

    r = CliRunner().invoke(app, args, env=env)
    return r.exit_code, ANSI.sub("", r.output)


def test_messages_are_not_wrapped_when_not_a_terminal(tmp_path, monkeypatch):
    """Piped (logs, CI): a line longer than 80 columns stays one line."""
    monkeypatch.delenv("COLUMNS", raising=False)
    home = tmp_path / ("a-rather-long-folder-name-for-the-data-" * 3) / "mimiclab-home"
    code, out = run(["info"], {"MIMICLAB_HOME": str(home), "COLUMNS": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})
    assert code == 0
    assert f"MIMICLAB_HOME: {home}" in out.splitlines(), out
    assert len(f"MIMICLAB_HOME: {home}") > 120


@pytest.fixture(scope="module")
def home_with_builds(data_root, tmp_path_factory):
    from mimiclab.load import build

    home = tmp_path_factory.mktemp("cli-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        build("mimic-iv-demo-omop", source=data_root / "mimic-iv-demo-omop" / "0.9")
        build("mimic-iv-ed-demo", source=data_root / "mimic-iv-ed-demo" / "2.2")
    return home


@pytest.mark.parametrize("terminal", [True, False], ids=["80-column terminal", "pipe with COLUMNS=80"])
def test_info_shows_whole_dataset_names_in_80_columns(home_with_builds, terminal):
    env = {"MIMICLAB_HOME": str(home_with_builds), "COLUMNS": "80", "LINES": "25",
           "FORCE_COLOR": "1" if terminal else None, "TTY_COMPATIBLE": "1" if terminal else None}
    code, out = run(["info"], env)
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    names = {line.split("│")[1].strip() for line in rows} - {""}
    assert names == {"mimic-iv-demo-omop", "mimic-iv-ed-demo"}, out
    assert all(len(line) <= 80 for line in out.splitlines() if line.startswith(("│", "┃", "┏", "└"))), out
    assert "…" not in out, out  # no cell loses characters either: they fold
