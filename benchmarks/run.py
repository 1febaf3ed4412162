"""Run every benchmark and write benchmarks/results.md.

    python benchmarks/run.py                 # all
    python benchmarks/run.py build download  # only bench_build.py and bench_download.py
    MIMICLAB_BENCH_QUICK=1 python benchmarks/run.py   # smaller data, for a smoke run
    MIMICLAB_BENCH_FULL=1 python benchmarks/run.py    # also the full-scale passes (=only: just those);
        # `run.py build` generates (once, ~13 GB) and builds MIMIC-IV 3.1's sizes into benchmarks/_work,
        # api/cohort/web then use that build (or MIMICLAB_BENCH_FULL_HOME=<a MIMICLAB_HOME holding one,
        # with MIMICLAB_BENCH_FULL_SECTION="<what it is>" naming their sections instead of "full scale")
    MIMICLAB_BENCH_FULL=only MIMICLAB_BENCH_FRACTION=0.25 MIMICLAB_BENCH_KEEP_HOME=1 python benchmarks/run.py build
        # a quarter of full scale, also in PhysioNet's order, keeping that build (home-synth-f25-scattered)
    MIMICLAB_BENCH_FULL=only MIMICLAB_BENCH_ORDER=physionet MIMICLAB_BENCH_KEEP_HOME=1 python benchmarks/run.py build
        # full scale in PhysioNet's order only (reordered once, ~1 h; build and COPY ~35 min)

A run of some benchmarks rewrites only their sections of results.md and keeps the others, marked as such.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, Harness, machine_facts


def main(argv: list[str]) -> int:
    wanted = set(argv)
    h = Harness()
    failures = []
    for path in sorted(ROOT.glob("bench_*.py")):
        short = path.stem.removeprefix("bench_")
        if wanted and short not in wanted:
            continue
        print(f"== {path.name}", flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        t0 = time.perf_counter()
        try:
            spec.loader.exec_module(mod)
            mod.run(h)
        except Exception:  # one broken benchmark must not hide the others' figures
            failures.append(path.name)
            traceback.print_exc()
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    write_results(h, failures, partial=bool(wanted))
    return 1 if failures else 0


def write_results(h: Harness, failures: list[str], partial: bool) -> None:
    lines = ["# mimiclab benchmark results", "",
             f"Run {dt.datetime.now().isoformat(timespec='seconds')}"
             + (" (quick mode: smaller data)" if h.quick else "")
             + (" (partial run)" if partial else ""), "", "## Machine and versions", ""]
    lines += [f"- {k}: {v}" for k, v in machine_facts().items()]
    sections: dict[str, list] = {}
    for f in h.figures:
        sections.setdefault(f.section, []).append(f)
    for section, figs in sections.items():
        lines += ["", f"## {section}", "", "| figure | value | baseline (same run) | ratio | target | met | note |",
                  "|---|---:|---|---:|---|---|---|"]
        for f in figs:
            base = f"{f.baseline_name}: {f.baseline_value:.4g} {f.unit}" if f.baseline_value is not None else ""
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            lines.append(f"| {f.name} | {f.value:.4g} {f.unit} | {base} | {ratio} | {f.target} | {met} | {f.note} |")
    if partial:  # a partial run replaces its own sections and keeps the others' figures, said so
        for section, body in _old_sections(ROOT / "results.md").items():
            if section not in sections and section not in ("Machine and versions", "Benchmarks that failed to run"):
                note = "_(from an earlier run: not re-run this time)_"
                lines += ["", f"## {section}", ""] + ([] if note in body else [note, ""]) + body
    if failures:
        lines += ["", "## Benchmarks that failed to run", ""] + [f"- {n}" for n in failures]
    (ROOT / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {ROOT / 'results.md'}")


def _old_sections(path: Path) -> dict[str, list[str]]:
    """`## heading` -> its lines (without the heading and surrounding blank lines) of an earlier results.md."""
    out: dict[str, list[str]] = {}
    current = None
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: _strip_blank(v) for k, v in out.items()}


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
