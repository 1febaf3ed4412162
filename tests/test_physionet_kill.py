"""kill -9 in the middle of `python -m mimiclab download`: the next run transfers only the remainder."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import pytest

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import CRED_SLUG, CRED_VERSION, PASSWORD, USER, subprocess_env, sums_of


@pytest.mark.slow
def test_sigkill_midway_then_resume_transfers_only_the_rest(physionet, data_root, tmp_path):
    src = data_root / CRED_SLUG / CRED_VERSION
    sums = sums_of(data_root)
    total = sum((src / p).stat().st_size for p in sums)
    dest = tmp_path / "dest"
    env = subprocess_env(tmp_path, PHYSIONET_USERNAME=USER, PHYSIONET_PASSWORD=PASSWORD)
    cmd = [sys.executable, "-m", "mimiclab", "download", CRED_SLUG, "--version", CRED_VERSION,
           "--mirror", physionet.url, "--dest", str(dest), "--jobs", "2"]

    physionet.faults.rate = 25_000  # slow trickle: ~2.5 s for the whole set with 2 connections
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while physionet.total_served() - physionet.bytes_served.get("SHA256SUMS.txt", 0) < total * 0.4:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "download did not progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    on_disk = 0
    finals = 0
    for rel, sha in sums.items():
        final, part = dest / rel, dest / (rel + ".part")
        if final.exists():
            assert hashlib.sha256(final.read_bytes()).hexdigest() == sha  # nothing wrong at a final path
            on_disk += final.stat().st_size
            finals += 1
        elif part.exists():
            on_disk += part.stat().st_size
    assert 0 < on_disk < total  # truly midway
    assert list(dest.rglob("*.part")), "expected partial files to resume"

    # the server's handlers for the dead connections may still push a chunk into a dead socket; let them end
    last = -1
    while physionet.total_served() != last:
        last = physionet.total_served()
        time.sleep(0.3)
    physionet.faults.rate = None
    physionet.reset_counts()
    out = subprocess.run(cmd + ["--quiet"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    served = {k: v for k, v in physionet.bytes_served.items() if k in sums}
    assert sum(served.values()) == total - on_disk  # only the remainder crossed the wire
    for rel, sha in sums.items():
        assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == sha
    assert not list(dest.rglob("*.part"))
    resumed = [r for r in physionet.requests if r["range"] and r["status"] != 401]  # 401: anonymous first ask
    assert resumed and all(r["status"] == 206 for r in resumed), [(r["path"][-20:], r["range"], r["status"]) for r in physionet.requests]
    assert "all match SHA256SUMS.txt" in " ".join(out.stdout.split())
