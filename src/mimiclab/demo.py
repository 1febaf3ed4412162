"""`mimiclab demo`: the shortest path from nothing to a browsable MIMIC database.

Real demo first (mimic-iv-demo is open: no credentials), from PhysioNet or a mirror. When neither can be
reached within a few seconds — offline laptops, closed hospital networks — fall back to a synthetic
MIMIC-IV-shaped demo generated locally, and say so loudly: it is flagged synthetic everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mimiclab import catalog, config
from mimiclab.load import BuildResult, build

DEMO_SLUG = "mimic-iv-demo"
SYNTH_SLUG = "mimic-iv-synthetic"
SYNTH_VERSION = "2.2"
REACH_TIMEOUT = 4.0

Say = Callable[[str], None]


@dataclass
class DemoResult:
    slug: str
    version: str
    build: BuildResult
    synthetic: bool
    reason: str  # why this source was used, in one sentence for the user


def prepare(mirror: str | None = None, synthetic: bool = False, patients: int = 100, say: Say = print,
            download_progress: bool = True) -> DemoResult:
    """Download (or generate) and build the demo; return what was built and why."""
    from mimiclab import physionet

    if not synthetic:
        where = mirror or "PhysioNet"
        if physionet.reachable(mirror, timeout=REACH_TIMEOUT):
            try:
                res = physionet.download(DEMO_SLUG, mirror=mirror, progress=download_progress)
            except physionet.DownloadError as exc:
                absent = [p for p, e in exc.failures.items() if _absent_at_source(e)]
                if absent and len(absent) == len(exc.failures):
                    # A partial copy (mirror without some files): the real data we have beats synthetic data.
                    say(f"not available from {where}: {', '.join(absent)}; building the demo without "
                        f"{'it' if len(absent) == 1 else 'them'} (empty tables, flagged not loaded).")
                    ver = catalog.get(DEMO_SLUG).version().version
                    b = build(DEMO_SLUG, version=ver, source=config.raw_dir(DEMO_SLUG, ver))
                    return DemoResult(DEMO_SLUG, ver, b, False, f"real MIMIC-IV demo from {where}, partial copy")
                say(f"download of the real demo failed ({exc}); using a synthetic demo instead.")
                reason = f"download from {where} failed; synthetic fallback"
            except physionet.PhysioNetError as exc:
                say(f"download of the real demo failed ({exc}); using a synthetic demo instead.")
                reason = f"download from {where} failed; synthetic fallback"
            else:
                say("demo files already present and verified: nothing downloaded" if res.up_to_date
                    else f"downloaded {len(res.fetched)} files from {res.source}")
                b = build(DEMO_SLUG, version=res.version, source=res.dest)
                return DemoResult(DEMO_SLUG, res.version, b, False, f"real MIMIC-IV demo from {res.source}")
        else:
            say(f"{where} cannot be reached (offline?): generating a SYNTHETIC MIMIC-IV-shaped demo instead. "
                f"Use `mimiclab demo --mirror DIR` to point at a local copy.")
            reason = f"{where} not reachable; synthetic fallback"
    else:
        reason = "synthetic data requested (--synthetic)"
    return _synthetic(patients, say, reason)


def _absent_at_source(error: str) -> bool:
    """A file listed in SHA256SUMS.txt that the source does not have (404), as opposed to a broken transfer."""
    return "not available" in error or "404" in error


def _synthetic(patients: int, say: Say, reason: str) -> DemoResult:
    from mimiclab import synth

    src = config.raw_dir(SYNTH_SLUG, SYNTH_VERSION)
    marker = src / "SYNTHETIC.json"
    current = json.loads(marker.read_text()) if marker.exists() else {}
    if current.get("patients") != patients or not (src / "SHA256SUMS.txt").exists():
        say(f"generating {patients} synthetic patients into {src}")
        synth.generate(Path(src), patients=patients)
    b = build(SYNTH_SLUG, version=SYNTH_VERSION, source=src)
    return DemoResult(SYNTH_SLUG, SYNTH_VERSION, b, True, reason)
