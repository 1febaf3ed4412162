"""`mimiclab build` progress: rows, bytes and time left per table and overall, also when output is a log."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from mimiclab.cli._build_progress import BuildProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _plain(every=10.0):
    out = io.StringIO()
    clock = Clock()
    return BuildProgress(Console(file=out, force_terminal=False, width=200), every=every, clock=clock), out, clock


def test_time_left_is_worked_from_the_rate_so_far():
    p, out, clock = _plain()
    with p:
        p("plan", None, tables=2, bytes=1000)
        p("loading", "a.big", size=800, file="big.csv.gz")
        p("loading", "a.small", size=200, file="small.csv.gz")
        clock.t = 10.0
        p("progress", "a.big", bytes=200, size=800, rows=5000)
        p("progress", "a.small", bytes=50, size=200, rows=100)
        # 250 of 1000 bytes in 10 s: 25 B/s, 750 bytes left -> 30 s
        assert p.summary() == "250 B of 1.0 KB read (25%), 5,100 rows, 0 of 2 tables, about 30 s left"
        clock.t = 20.0
        p("loaded", "a.small", rows=400, seconds=20.0, expected=None, check="unknown")
        p("progress", "a.big", bytes=400, size=800, rows=10000)
        # 600 of 1000 in 20 s: 30 B/s, 400 left -> 13 s
        assert p.summary() == "600 B of 1.0 KB read (60%), 10,400 rows, 1 of 2 tables, about 13 s left"
    text = out.getvalue()
    assert "loading 2 tables, 1.0 KB of csv.gz" in text
    assert "loading a.big (800 B)" in text and "loaded  a.small: 400 rows in 20.00 s" in text
    # the periodic line came once the interval had passed, with the time left, and no bar art anywhere
    assert "about 30 s left" in text or "about 13 s left" in text
    assert not any(ch in text for ch in "━█▏\r")


def test_log_lines_are_spaced_by_the_interval_not_per_event():
    p, out, clock = _plain(every=15.0)
    with p:
        p("plan", None, tables=1, bytes=10_000)
        p("loading", "a.t", size=10_000, file="t.csv.gz")
        for i in range(1, 301):  # 300 progress events over 30 s
            clock.t = i * 0.1
            p("progress", "a.t", bytes=i * 30, size=10_000, rows=i)
    lines = [ln for ln in out.getvalue().splitlines() if " read (" in ln]
    assert len(lines) == 2  # at 15 s and at 30 s


def test_cli_build_to_a_log_prints_plain_progress(data_root, mimiclab_home, tmp_path):
    env = dict(os.environ, MIMICLAB_HOME=str(mimiclab_home), COLUMNS="80")
    r = subprocess.run([sys.executable, "-m", "mimiclab", "build", "mimic-iv-demo", "--source",
                        str(data_root / "mimic-iv-demo" / "2.2")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    present = len(list((data_root / "mimic-iv-demo" / "2.2").glob("*/*.csv.gz")))
    assert f"loading {present} tables, " in out  # announced before the first table starts
    assert out.index(f"loading {present} tables") < out.index("loading mimiciv_hosp.admissions (")
    assert "loaded  mimiciv_hosp.admissions: 275 rows" in out
    assert not any(ch in out for ch in "━█\r")
