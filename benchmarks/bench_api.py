"""Python API: MIMICDataset vs the datathon's example class, and point lookups at 10,000-patient scale.

Baseline = the datathon's public example class (pandas.read_csv of each file, np.where per patient),
re-implemented below. At synthetic scale the API is measured in a fresh subprocess (so its peak memory is
its own), and the example class in another one under an address-space cap, to record how far it gets.
`MIMICLAB_BENCH_FULL=1` adds the same lookups on the full-scale synthetic build (harness.full_build; no
example class there: it cannot hold those tables); `=only` runs just that pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import FULL, WORK, Harness, data_root, full_build, full_note, full_section, percentile

HOSP3 = ["hosp/admissions", "hosp/prescriptions", "hosp/procedures_icd"]
SYNTH_PATIENTS = 10_000
EXAMPLE_CAP_GB = 4  # address-space cap for the example class at scale


class ExampleDataset:
    """The datathon's example class (its logic, as published)."""

    def __init__(self, datapath, files):
        self.data = {f: pd.read_csv(os.path.join(datapath, f + ".csv.gz")) for f in files}
        self._subject_ids = sorted(set.intersection(*[set(m.subject_id) for m in self.data.values()]))

    def __len__(self):
        return len(self._subject_ids)

    def __getitem__(self, idx):
        sid = self._subject_ids[idx]
        return sid, {k: m.iloc[np.where(m.subject_id == sid)[0]] for k, m in self.data.items()}


def _home(path: Path) -> None:
    os.environ["MIMICLAB_HOME"] = str(path)


def run(h: Harness) -> None:
    if FULL != "only":
        demo(h)
        synthetic(h)
    if FULL:
        full_scale(h)


# ---------------------------------------------------------------------------------------------- demo
def demo(h: Harness) -> None:
    from mimiclab import MIMICDataset

    src = data_root() / "mimic-iv-demo" / "2.2"
    home = WORK / "api-home"
    old = os.environ.get("MIMICLAB_HOME")
    _home(home)
    try:
        t0 = time.perf_counter()
        MIMICDataset(src, files=HOSP3)  # first use builds the folder (or finds it current)
        first = time.perf_counter() - t0
        t_ex = h.time(lambda: ExampleDataset(src, HOSP3), repeat=3)
        t_ours = h.time(lambda: MIMICDataset(src, files=HOSP3), repeat=3)
        h.record("api: demo", "MIMICDataset(...) construction, folder already built", t_ours, "s",
                 baseline_name="example class (read_csv)", baseline_value=t_ex,
                 note=f"first use (build of 3 tables) {first:.2f} s")
        ex, ours = ExampleDataset(src, HOSP3), MIMICDataset(src, files=HOSP3)
        idx = list(range(len(ours)))
        t_ex = _per_call(lambda i: ex[i], idx)
        t_ours = _per_call(lambda i: ours[i], idx)
        h.record("api: demo", "ds[i], 3 hosp tables (median over all patients)", t_ours * 1000, "ms",
                 baseline_name="example class", baseline_value=t_ex * 1000)
        mimic = ours.dataset
        pids = ours._subject_ids
        t_tl = _per_call(lambda s: mimic.patient(s).timeline(), pids[:50])
        h.record("api: demo", "patient(id).timeline() (median of 50 patients)", t_tl * 1000, "ms")
    finally:
        if old is None:
            os.environ.pop("MIMICLAB_HOME", None)
        else:
            os.environ["MIMICLAB_HOME"] = old


def _per_call(fn, args) -> float:
    samples = []
    fn(args[0])  # warm-up
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


# ---------------------------------------------------------------------------------------------- scale
def synthetic_source(patients: int) -> Path:
    """A synthetic MIMIC-IV folder of `patients`: reuse one that exists (ours, or MIMICLAB_BENCH_SYNTH),
    else generate it under benchmarks/_work."""
    candidates = [Path(p) for p in (os.environ.get("MIMICLAB_BENCH_SYNTH"),) if p]
    candidates += [WORK / f"synth-{patients}", Path("/work/bench-data/synth-10k")]
    for c in candidates:
        marker = c / "SYNTHETIC.json"
        if marker.exists() and json.loads(marker.read_text()).get("patients", 0) >= patients:
            return c
    from mimiclab import synth

    dest = WORK / f"synth-{patients}"
    synth.generate(dest, patients=patients, seed=0)
    return dest


PEAK_RSS = '''
def peak_rss_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss would also count the (large) benchmark
    # process it was started from, since Linux keeps ru_maxrss across fork + exec.
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
'''

CHILD = PEAK_RSS + textwrap.dedent("""
    import json, random, resource, sys, time

    import numpy as np
    import mimiclab
    src, n_items, n_tl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n_ce = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    out = {}
    t0 = time.perf_counter()
    ds = mimiclab.MIMICDataset(src, files=%(files)r)
    out["construct_s"] = time.perf_counter() - t0
    rng = random.Random(0)
    idx = [rng.randrange(len(ds)) for _ in range(n_items)]
    ds[idx[0]]
    lat = []
    for i in idx:
        t = time.perf_counter(); ds[i]; lat.append(time.perf_counter() - t)
    out["getitem_ms"] = [x * 1000 for x in lat]
    mimic = ds.dataset
    sids = [ds._subject_ids[rng.randrange(len(ds))] for _ in range(n_tl)]
    mimic.patient(sids[0]).timeline()
    lat, rows = [], []
    for s in sids:
        t = time.perf_counter(); tl = mimic.patient(s).timeline(); lat.append(time.perf_counter() - t)
        rows.append(len(tl))
    out["timeline_ms"] = [x * 1000 for x in lat]
    out["timeline_rows_median"] = float(np.median(rows))
    ce = mimiclab.MIMICDataset(src, files=["icu/chartevents"])
    lat = []
    for i in idx[:n_ce]:
        t = time.perf_counter(); ce[i %% len(ce)]; lat.append(time.perf_counter() - t)
    out["chartevents_getitem_ms"] = [x * 1000 for x in lat]
    out["peak_rss_mb"] = peak_rss_mb()
    out["chartevents_rows"] = mimic.tables["mimiciv_icu.chartevents"]
    print(json.dumps(out))
""")

EXAMPLE_CHILD = PEAK_RSS + textwrap.dedent("""
    import json, os, resource, sys, time

    cap = int(sys.argv[3]) * 1024 ** 3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import numpy as np, pandas as pd
    src, files = sys.argv[1], sys.argv[2].split(",")
    out = {"loaded": [], "failed": None}
    t0 = time.perf_counter()
    data = {}
    try:
        for f in files:
            data[f] = pd.read_csv(os.path.join(src, f + ".csv.gz"))
            out["loaded"].append([f, len(data[f]), round(time.perf_counter() - t0, 1)])
        ids = sorted(set.intersection(*[set(m.subject_id) for m in data.values()]))
        out["construct_s"] = time.perf_counter() - t0
        lat = []
        for sid in ids[:: max(1, len(ids) // 100)]:
            t = time.perf_counter()
            {k: m.iloc[np.where(m.subject_id == sid)[0]] for k, m in data.items()}
            lat.append((time.perf_counter() - t) * 1000)
        out["getitem_ms"] = lat
    except MemoryError:
        where = files[len(out["loaded"])] if len(out["loaded"]) < len(files) else "(after loading)"
        out["failed"] = f"MemoryError after {time.perf_counter() - t0:.0f} s while reading {where}"
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
""")


def synthetic(h: Harness) -> None:
    patients = 1_000 if h.quick else SYNTH_PATIENTS
    src = synthetic_source(patients)
    home = WORK / "api-home"
    env = {**os.environ, "MIMICLAB_HOME": str(home)}
    sec = f"api: synthetic {patients:,} patients"
    # build once (timed separately from the lookups)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import mimiclab; mimiclab.open({str(src)!r})"], env=env, check=True)
    h.record(sec, "first open: build all tables from csv.gz (or check them)", time.perf_counter() - t0, "s")
    res = subprocess.run([sys.executable, "-c", CHILD % {"files": HOSP3}, str(src), "300", "100"],
                         env=env, check=True, capture_output=True, text=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    ex = _example_at_scale(src, HOSP3, env)
    ex_p50 = percentile(ex["getitem_ms"], 50) if ex.get("getitem_ms") else None
    gi = r["getitem_ms"]
    h.record(sec, "ds[i] 3 hosp tables p50", percentile(gi, 50), "ms", target="< 20 ms",
             met=percentile(gi, 50) < 20, baseline_name="example class" if ex_p50 else None, baseline_value=ex_p50)
    h.record(sec, "ds[i] 3 hosp tables p99", percentile(gi, 99), "ms", target="< 100 ms", met=percentile(gi, 99) < 100)
    tl = r["timeline_ms"]
    h.record(sec, "patient(id).timeline() p50", percentile(tl, 50), "ms", target="< 50 ms",
             met=percentile(tl, 50) < 50,
             note=f"median {r['timeline_rows_median']:.0f} events/patient; {r['chartevents_rows']:,} chartevents rows")
    h.record(sec, "patient(id).timeline() p99", percentile(tl, 99), "ms", target="< 200 ms", met=percentile(tl, 99) < 200)
    h.record(sec, "ds[i] icu/chartevents p50", percentile(r["chartevents_getitem_ms"], 50), "ms")
    h.record(sec, "peak memory of the API process", r["peak_rss_mb"], "MB", target="< 1024 MB",
             met=r["peak_rss_mb"] < 1024)
    h.record(sec, "MIMICDataset(...) construction (built)", r["construct_s"], "s",
             baseline_name="example class" if ex.get("construct_s") else None, baseline_value=ex.get("construct_s"),
             note=f"example class peak memory {ex['peak_rss_mb']:.0f} MB")
    ce = _example_at_scale(src, ["icu/chartevents"], env)
    note = ce["failed"] or f"loaded in {ce.get('construct_s', 0):.0f} s, peak {ce['peak_rss_mb']:.0f} MB"
    h.record(sec, f"example class on icu/chartevents under a {EXAMPLE_CAP_GB} GB cap: peak memory",
             ce["peak_rss_mb"], "MB", met=ce["failed"] is None, note=note)


def full_scale(h: Harness) -> None:
    """ds[i], timeline() and chartevents lookups on the full-scale build, in a fresh process (same child)."""
    sec = full_section("api")
    found = full_build()
    if isinstance(found, str):
        print(f"  full scale skipped: {found}", flush=True)
        h.record(sec, "skipped: no full-scale build", 0, "", note=found)
        return
    home, build_dir = found
    env = {**os.environ, "MIMICLAB_HOME": str(home)}
    n_items, n_tl, n_ce = 200, 60, 30
    res = subprocess.run([sys.executable, "-c", CHILD % {"files": HOSP3}, str(build_dir), str(n_items), str(n_tl),
                          str(n_ce)], env=env, check=True, capture_output=True, text=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    what = full_note(build_dir)
    gi, tl = r["getitem_ms"], r["timeline_ms"]
    h.record(sec, "ds[i] 3 hosp tables p50", percentile(gi, 50), "ms", target="< 20 ms", met=percentile(gi, 50) < 20,
             note=f"{what}; {n_items} random patients")
    h.record(sec, "ds[i] 3 hosp tables p99", percentile(gi, 99), "ms", target="< 100 ms", met=percentile(gi, 99) < 100)
    h.record(sec, "patient(id).timeline() p50", percentile(tl, 50), "ms", target="< 50 ms",
             met=percentile(tl, 50) < 50,
             note=f"{n_tl} random patients, median {r['timeline_rows_median']:.0f} events/patient; "
                  f"{r['chartevents_rows']:,} chartevents rows")
    h.record(sec, "patient(id).timeline() p99", percentile(tl, 99), "ms", target="< 200 ms", met=percentile(tl, 99) < 200)
    h.record(sec, "ds[i] icu/chartevents p50", percentile(r["chartevents_getitem_ms"], 50), "ms",
             note=f"p99 {percentile(r['chartevents_getitem_ms'], 99):.1f} ms, {n_ce} patients")
    h.record(sec, "peak memory of the API process", r["peak_rss_mb"], "MB", target="< 1024 MB",
             met=r["peak_rss_mb"] < 1024)
    h.record(sec, "MIMICDataset(...) construction (built)", r["construct_s"], "s",
             note="patients present in all 3 tables listed from the build")


def _example_at_scale(src: Path, files: list[str], env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", EXAMPLE_CHILD, str(src), ",".join(files), str(EXAMPLE_CAP_GB)],
                         env=env, capture_output=True, text=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        tail = (res.stderr.strip().splitlines() or ["killed"])[-1]
        return {"failed": f"exit {res.returncode}: {tail[:120]}", "peak_rss_mb": float("nan")}
    return json.loads(lines[-1])


if __name__ == "__main__":  # python benchmarks/bench_api.py
    run(Harness())
