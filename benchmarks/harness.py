"""A tiny benchmark harness: medians of repeated runs, ratios against baselines run in the same process.

Each `benchmarks/bench_*.py` defines `run(h: Harness) -> None` and calls `h.time(...)` / `h.record(...)`.
`python benchmarks/run.py` runs them all and writes benchmarks/results.md. Figures are ratios first:
the machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = Path(os.environ.get("MIMICLAB_BENCH_WORK", ROOT / "_work"))  # generated data; never committed


def data_root() -> Path:
    return Path(os.environ.get("MIMICLAB_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


FULL = os.environ.get("MIMICLAB_BENCH_FULL", "")  # "1": also the full-scale passes; "only": just those
# With MIMICLAB_BENCH_FULL_HOME at another build (e.g. a share of full scale in PhysioNet's order), its
# sections get this name instead of "full scale", so the full-scale record stays as it is
FULL_SECTION = os.environ.get("MIMICLAB_BENCH_FULL_SECTION") or "full scale"


def full_section(kind: str) -> str:
    """The section of a full-scale pass: "api: full scale", or the name MIMICLAB_BENCH_FULL_SECTION gives."""
    return f"{kind}: {FULL_SECTION}"


def full_build() -> tuple[Path, Path] | str:
    """The full-scale synthetic build the api/cohort/web full passes read, as (MIMICLAB_HOME, build folder),
    or why there is none. It is the one `MIMICLAB_BENCH_FULL=1 run.py build` leaves in
    benchmarks/_work/home-synth-full; `MIMICLAB_BENCH_FULL_HOME=<a MIMICLAB_HOME>` points at another."""
    from mimiclab.load import manifest as mf

    home = Path(os.environ.get("MIMICLAB_BENCH_FULL_HOME") or WORK / "home-synth-full").resolve()
    for d in sorted((home / "db" / "mimic-iv-synthetic").glob("*/"), reverse=True):
        man = mf.read(d)
        if man is not None and (d / man.database).exists():
            return home, d
    return (f"no finished mimic-iv-synthetic build under {home}/db: run `MIMICLAB_BENCH_FULL=1 python "
            "benchmarks/run.py build` first, or set MIMICLAB_BENCH_FULL_HOME to the MIMICLAB_HOME holding one")


def full_note(build_dir: Path) -> str:
    """What the full-scale build holds, for the figures' notes: patients and rows."""
    from mimiclab.load import manifest as mf

    man = mf.read(build_dir)
    patients = (man.synthetic_info or {}).get("patients", 0) if man else 0
    rows = sum(t.rows or 0 for t in man.loaded) if man else 0
    return f"{patients:,} patients, {rows:,} rows"


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0) or self.value is None:
            return None
        return self.value / self.baseline_value


@dataclass
class Harness:
    figures: list[Figure] = field(default_factory=list)
    quick: bool = bool(os.environ.get("MIMICLAB_BENCH_QUICK"))

    def time(self, fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
        """Median wall seconds of `repeat` calls after `warmup` discarded calls."""
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    def record(self, section: str, name: str, value: float, unit: str, *, baseline_name: str | None = None,
               baseline_value: float | None = None, target: str = "", met: bool | None = None,
               note: str = "") -> Figure:
        f = Figure(section, name, value, unit, baseline_name, baseline_value, target, met, note)
        self.figures.append(f)
        r = f" (ratio {f.ratio:.2f} vs {baseline_name})" if f.ratio is not None else ""
        status = "" if met is None else (" MET" if met else " NOT MET")
        print(f"  [{section}] {name}: {value:.4g} {unit}{r}{status}", flush=True)
        return f


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_facts() -> dict[str, str]:
    import importlib.metadata as md

    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    try:
        with open("/proc/meminfo") as fh:
            facts["memory"] = fh.readline().split(":")[1].strip()
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for pkg in ("mimiclab", "duckdb", "pyarrow", "pandas", "httpx", "fastapi"):
        with contextlib.suppress(md.PackageNotFoundError):
            facts[pkg] = md.version(pkg)
    return facts
