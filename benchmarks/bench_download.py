"""Download throughput and resume cost against a local PhysioNet-like server (a separate process).

Figures, each against a baseline measured in the same run:
* throughput, no faults: mimiclab (--jobs 4) vs curl fetching the same files one after another; target >= 0.8x
* per-connection rate limit: --jobs 4 vs --jobs 1; target >= 3x
* resume after kill -9 at 90% on disk: bytes transferred by the next run; target <= 10% of total + one chunk
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO, WORK, Harness

SECTION = "download"
SERVER = REPO / "tests" / "physionet_server.py"
MiB = 1 << 20


def _make_dataset(root: Path, slug: str, sizes: list[int]) -> list[str]:
    base = root / slug / "1.0"
    want = {f"data/file_{i:02d}.bin": n for i, n in enumerate(sizes)}
    marker = base / ".sizes"
    if marker.exists() and marker.read_text() == repr(sorted(want.items())):
        return list(want)
    shutil.rmtree(base, ignore_errors=True)
    (base / "data").mkdir(parents=True)
    lines = []
    for rel, n in want.items():
        h = hashlib.sha256()
        with open(base / rel, "wb") as fh:
            left = n
            while left:
                b = os.urandom(min(left, 8 * MiB))
                fh.write(b)
                h.update(b)
                left -= len(b)
        lines.append(f"{h.hexdigest()}  {rel}")
    lic = b"benchmark data, generated\n"
    (base / "LICENSE.txt").write_bytes(lic)
    lines.append(f"{hashlib.sha256(lic).hexdigest()}  LICENSE.txt")
    (base / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    marker.write_text(repr(sorted(want.items())))
    return list(want)


class Server:
    def __init__(self, root: Path):
        self.p = subprocess.Popen([sys.executable, str(SERVER), str(root)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        self.url = self.p.stdout.readline().strip()

    def cmd(self, line: str) -> str:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def served(self) -> int:
        return int(self.cmd("stats"))

    def settle(self) -> None:
        """Wait until handlers of dead connections stop counting."""
        last = -1
        while (now := self.served()) != last:
            last = now
            time.sleep(0.3)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.cmd("quit")
        self.p.wait(10)


def run(h: Harness) -> None:
    from mimiclab.physionet import download

    quick = h.quick
    work = WORK / "download"
    src = work / "src"
    sizes = [8 * MiB] * 4 if quick else [48 * MiB] * 6 + [24 * MiB] * 4  # ~384 MiB
    files = _make_dataset(src, "bench-data", sizes)
    rate_files = _make_dataset(src, "bench-rate", [4 * MiB if quick else 8 * MiB] * 4)
    _make_dataset(src, "bench-resume", [32 * MiB if quick else 96 * MiB])
    total = sum(sizes)
    srv = Server(src)
    try:
        # ---- 1. throughput vs curl, no faults
        out = work / "out"

        def curl() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            args = ["curl", "-s", "--fail"]
            for i, rel in enumerate(files):
                args += ["-o", str(out / f"c{i}"), f"{srv.url}/files/bench-data/1.0/{rel}"]
            subprocess.run(args, check=True)

        def ours(jobs: int, slug: str = "bench-data") -> None:
            shutil.rmtree(out, ignore_errors=True)
            download(slug, "1.0", mirror=srv.url, dest=out, jobs=jobs, progress=False)

        # interleaved (curl, ours, ours -j1, curl, ...) so load from other processes hits all alike
        repeat = 3 if quick else 5
        curl(), ours(4)  # warm the page cache and both code paths
        samples: dict[str, list[float]] = {"curl": [], "ours": [], "ours1": []}
        for _ in range(repeat):
            for name, fn in (("curl", curl), ("ours", lambda: ours(4)), ("ours1", lambda: ours(1))):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
        t_curl, t_ours, t_ours1 = (statistics.median(samples[k]) for k in ("curl", "ours", "ours1"))
        mbps = lambda t: total / t / 1e6  # noqa: E731
        h.record(SECTION, f"throughput, --jobs 4, {total / 1e6:.0f} MB in {len(files)} files", mbps(t_ours), "MB/s",
                 baseline_name="curl, files one after another", baseline_value=mbps(t_curl), target=">= 0.8x curl",
                 met=mbps(t_ours) >= 0.8 * mbps(t_curl), note="includes sha256 verification")
        h.record(SECTION, "throughput, --jobs 1", mbps(t_ours1), "MB/s",
                 baseline_name="curl, files one after another", baseline_value=mbps(t_curl), note="for reference")

        # ---- 2. per-connection rate limit: parallel vs single connection
        rate = 4e6 if quick else 8e6
        srv.cmd(f"rate {rate:g}")
        rate_total = sum(4 * MiB if quick else 8 * MiB for _ in rate_files)
        t1 = h.time(lambda: ours(1, "bench-rate"), repeat=1, warmup=0)
        t4 = h.time(lambda: ours(4, "bench-rate"), repeat=1, warmup=0)
        srv.cmd("rate none")
        h.record(SECTION, f"rate-limited server ({rate / 1e6:g} MB/s per connection), --jobs 4",
                 rate_total / t4 / 1e6, "MB/s", baseline_name="--jobs 1 (single connection)",
                 baseline_value=rate_total / t1 / 1e6, target=">= 3x", met=t1 / t4 >= 3)

        # ---- 3. resume after kill -9 at 90% on disk
        from mimiclab.physionet.mirror import CHUNK

        rdest = work / "resume"
        shutil.rmtree(rdest, ignore_errors=True)
        rsize = (src / "bench-resume" / "1.0" / "data" / "file_00.bin").stat().st_size
        lic = (src / "bench-resume" / "1.0" / "LICENSE.txt").stat().st_size
        srv.cmd(f"rate {rsize / 3:g}")  # ~3 s for the file, so the 90% mark can be caught
        env = dict(os.environ, MIMICLAB_HOME=str(work / "home"))
        p = subprocess.Popen([sys.executable, "-m", "mimiclab", "download", "bench-resume", "--version", "1.0",
                              "--mirror", srv.url, "--dest", str(rdest), "--quiet", "--jobs", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        part = rdest / "data" / "file_00.bin.part"
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size >= 0.9 * rsize):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("resume benchmark: download ended before 90%")
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        on_disk = part.stat().st_size
        srv.settle()
        srv.cmd("rate none")
        srv.cmd("reset")
        res = download("bench-resume", "1.0", mirror=srv.url, dest=rdest, jobs=1, progress=False)
        moved = srv.served()
        assert res.fetched == ["data/file_00.bin"] or "data/file_00.bin" in res.fetched
        allowed = 0.10 * rsize + CHUNK
        h.record(SECTION, f"resume after kill -9 at {on_disk / rsize:.1%} on disk: bytes transferred",
                 moved / 1e6, "MB", baseline_name="full file", baseline_value=rsize / 1e6,
                 target="<= 10% of total + 1 chunk", met=moved - lic * (moved > rsize - on_disk) <= allowed,
                 note=f"remainder on disk was {(rsize - on_disk) / 1e6:.2f} MB; chunk {CHUNK // MiB} MiB")
    finally:
        srv.close()
        shutil.rmtree(work / "out", ignore_errors=True)
        shutil.rmtree(work / "resume", ignore_errors=True)
