"""Large files as byte ranges on several connections, under one connection cap shared by all files.

Every expectation is computed here from the generated source bytes (sha256, sizes, which bytes the sidecar
says are written), never taken from the code under test.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mimiclab.cli import app
from mimiclab.physionet import DownloadError, RetryPolicy, Split, download
from mimiclab.physionet.ranges import Gate, estimate

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import PhysioNetServer, subprocess_env

SLUG, VERSION = "ranged-test", "1.0"
KiB, MiB = 1 << 10, 1 << 20
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)
TINY = Split(min_file=64 * KiB, piece=32 * KiB, min_steal=8 * KiB)  # 1 MiB files go in dozens of ranges


def _mirror(root: Path, sizes: dict[str, int], seed: int = 1) -> dict[str, bytes]:
    base = root / SLUG / VERSION
    rng = __import__("random").Random(seed)
    files = {rel: rng.randbytes(n) for rel, n in sizes.items()}
    lines = []
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}")
    (base / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    return files


class _Files(dict):
    def __repr__(self) -> str:  # a failing test prints its arguments: names and sizes, not megabytes
        return repr({k: len(v) for k, v in self.items()})


@pytest.fixture()
def served(tmp_path):
    """A server over a fresh mirror: two ranged-size files, two small ones."""
    files = _mirror(tmp_path / "src", {"big/a.bin": 1 * MiB + 12_345, "big/b.bin": 700 * KiB,
                                       "small/c.bin": 5_000, "small/d.bin": 40 * KiB})
    srv = PhysioNetServer(tmp_path / "src").start()
    yield srv, _Files(files)
    srv.stop()


def _dl(srv, dest, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("progress", False)
    kw.setdefault("split", TINY)
    return download(SLUG, VERSION, mirror=srv.url, dest=dest, **kw)


def _file_requests(srv, rel):
    return [r for r in srv.requests if r["path"].endswith("/" + rel) and r["method"] == "GET"]


def _check(dest: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("*.ranges"))


def test_ranges_assemble_byte_exact_each_byte_sent_once(served, tmp_path):
    srv, files = served
    srv.faults.rate = 4e6  # per connection: slow enough that the connections overlap
    res = _dl(srv, tmp_path / "d", connections=4)
    _check(tmp_path / "d", files)
    assert sorted(res.fetched) == sorted(files)
    for rel in ("big/a.bin", "big/b.bin"):
        reqs = _file_requests(srv, rel)
        assert len(reqs) > 3 and all(r["status"] == 206 for r in reqs)  # many ranges, each honoured
        spans = sorted((int(a), int(b) + 1) for a, b in (r["range"][6:].split("-") for r in reqs))
        pos = 0
        for a, b in spans:  # the requests tile the file exactly: no gap, no byte asked twice
            assert a == pos, spans
            pos = b
        assert pos == len(files[rel])
        assert srv.bytes_served[rel] == len(files[rel])
    # small files are one plain stream each
    assert [r["range"] for r in _file_requests(srv, "small/c.bin")] == [None]
    assert 2 <= srv.max_connections <= 4
    assert res.bytes_transferred == sum(len(d) for d in files.values())


@pytest.mark.parametrize("cap", [1, 3])
def test_connection_cap_is_never_exceeded(served, tmp_path, cap):
    srv, files = served
    srv.faults.rate = 8e6
    srv.reset_counts()
    _dl(srv, tmp_path / "d", connections=cap)
    _check(tmp_path / "d", files)
    assert srv.max_connections <= cap  # counted by the server: TCP connections open at once
    if cap > 1:
        assert srv.max_connections == cap  # and the cap is used


def test_jobs_is_the_old_name_of_connections(served, tmp_path):
    srv, files = served
    srv.faults.rate = 8e6
    _dl(srv, tmp_path / "d", jobs=2)
    _check(tmp_path / "d", files)
    assert srv.max_connections == 2


def test_only_loopback_is_ever_contacted(served, tmp_path, monkeypatch):
    srv, files = served
    seen = []
    real = socket.create_connection

    def spy(address, *a, **kw):
        seen.append(address[0])
        return real(address, *a, **kw)

    monkeypatch.setattr(socket, "create_connection", spy)
    _dl(srv, tmp_path / "d", connections=4)
    _check(tmp_path / "d", files)
    assert seen and set(seen) == {"127.0.0.1"}


def test_server_without_ranges_falls_back_to_one_stream(served, tmp_path):
    srv, files = served
    srv.faults.ignore_range.add("*")
    events = []
    _dl(srv, tmp_path / "d", connections=4, progress=events.append)
    _check(tmp_path / "d", files)
    for rel in ("big/a.bin", "big/b.bin"):
        reqs = _file_requests(srv, rel)
        assert all(r["status"] == 200 for r in reqs)
        assert [r for r in reqs if r["range"] is None], "one plain stream after the ignored Range"
        assert len(reqs) <= 2
    assert any(e.kind == "retry" and "byte ranges" in e.message for e in events)


def test_corrupt_range_is_refetched_once_then_verified(served, tmp_path):
    srv, files = served
    srv.faults.corrupt("big/a.bin", 500_000, times=1)
    events = []
    _dl(srv, tmp_path / "d", connections=4, progress=events.append)
    _check(tmp_path / "d", files)
    assert any(e.kind == "retry" and "checksum" in e.message for e in events)
    assert srv.bytes_served["big/a.bin"] == 2 * len(files["big/a.bin"])  # the whole file again, once


def test_corrupt_range_twice_never_reaches_final_path(served, tmp_path):
    srv, files = served
    srv.faults.corrupt("big/a.bin", 500_000, times=2)
    with pytest.raises(DownloadError) as ei:
        _dl(srv, tmp_path / "d", connections=4)
    assert list(ei.value.failures) == ["big/a.bin"] and "checksum mismatch twice" in ei.value.failures["big/a.bin"]
    d = tmp_path / "d"
    assert not (d / "big/a.bin").exists()
    assert not (d / "big/a.bin.part").exists() and not (d / "big/a.bin.part.ranges").exists()
    for rel in ("big/b.bin", "small/c.bin", "small/d.bin"):
        assert (d / rel).read_bytes() == files[rel]


def test_range_answered_from_wrong_offset_gives_up_naming_the_file(served, tmp_path):
    srv, files = served
    srv.faults.shift_range["big/b.bin"] = -100  # every 206 starts 100 bytes early
    with pytest.raises(DownloadError) as ei:
        _dl(srv, tmp_path / "d", connections=2)
    msg = ei.value.failures["big/b.bin"]
    assert "gave up" in msg and "nothing of that answer was written" in msg
    assert not (tmp_path / "d" / "big/b.bin").exists()
    assert (tmp_path / "d" / "big/a.bin").read_bytes() == files["big/a.bin"]


def _spy_streams(monkeypatch) -> list[tuple[str, float, str]]:
    """Client side, same clock as the in-process server: ("ask", t) when a request for file bytes starts,
    ("refused", t) when a 429/503 came back."""
    import contextlib

    from mimiclab.physionet import mirror

    log: list[tuple[str, float, str]] = []
    real = mirror.RemoteSource.stream

    @contextlib.contextmanager
    def stream(self, rel, *a, **kw):
        log.append(("ask", time.monotonic(), rel))
        try:
            with real(self, rel, *a, **kw) as s:
                yield s
        except mirror.TransientError as exc:
            if exc.status in (429, 503):
                log.append(("refused", time.monotonic(), rel))
            raise

    monkeypatch.setattr(mirror.RemoteSource, "stream", stream)
    return log


def test_429_retry_after_seconds_holds_back_every_connection(served, tmp_path, monkeypatch):
    srv, files = served
    srv.faults.rate = 2e6  # slow enough that big/b.bin still has ranges to ask for after the 429
    log = _spy_streams(monkeypatch)
    # after the plan (its HEAD requests), the first GET of the largest file is refused
    _dl(srv, tmp_path / "d", connections=4,
        on_plan=lambda plan: srv.faults.status("big/a.bin", 429, times=1, retry_after=0.6))
    _check(tmp_path / "d", files)
    refused = [t for kind, t, _ in log if kind == "refused"]
    assert len(refused) == 1
    later = [(t - refused[0], rel) for kind, t, rel in log if kind == "ask" and t > refused[0]]
    assert {rel for _, rel in later} >= {"big/a.bin", "big/b.bin"}
    # no request of *any* file starts before the Retry-After is over; the first 50 ms allow for requests
    # granted a connection before the 429 came back (a clock late under load only adds)
    assert not [dt for dt, _ in later if 0.05 < dt < 0.55], later
    assert any(dt >= 0.55 and rel == "big/b.bin" for dt, rel in later), later


def test_503_retry_after_http_date_is_honoured(served, tmp_path, monkeypatch):
    srv, files = served
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits 1 to 2 s
    log = _spy_streams(monkeypatch)
    _dl(srv, tmp_path / "d", connections=2,
        on_plan=lambda plan: srv.faults.status("big/b.bin", 503, times=1, retry_after=when))
    _check(tmp_path / "d", files)
    refused = [t for kind, t, _ in log if kind == "refused"]
    later = [t - refused[0] for kind, t, _ in log if kind == "ask" and t > refused[0]]
    assert len(refused) == 1 and later and not [dt for dt in later if 0.05 < dt < 0.9], later


def test_refusals_in_a_row_lower_the_cap():
    g = Gate(8)
    stop = threading.Event()
    g.refused(0.0)
    assert g.limit == 8  # one refusal: a hiccup
    g.ok()
    g.refused(0.0)
    assert g.limit == 8  # a success in between resets the count
    g.refused(0.0)
    assert g.limit == 7
    g.refused(0.0), g.refused(0.0)
    assert g.limit == 6
    for _ in range(20):
        g.refused(0.0)
    assert g.limit == 1  # never below one
    assert g.acquire(stop) and not (stop.set() or g.acquire(stop))  # the one slot is taken; stop ends the wait
    g = Gate(4, recover=0.2)
    assert not g.refused(0.0) and g.refused(0.0) and g.limit == 3
    g.ok()
    assert g.limit == 3  # too soon after the refusal
    time.sleep(0.25)
    g.ok()
    assert g.limit == 4
    g.ok()
    assert g.limit == 4  # never above the cap asked for


def test_untrusted_sidecar_means_the_part_is_discarded(served, tmp_path):
    srv, files = served
    rel = "big/a.bin"
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    (d / "big").mkdir()
    part, side = d / (rel + ".part"), d / (rel + ".part.ranges")
    size = len(files[rel])
    sha = hashlib.sha256(files[rel]).hexdigest()
    cases = [
        "{not json",
        json.dumps({"format": 1, "size": size + 1, "sha256": sha, "done": [[0, 1000]]}),  # other size than part
        json.dumps({"format": 1, "size": size, "sha256": "0" * 64, "done": [[0, 1000]]}),  # other file
        json.dumps({"format": 1, "size": size, "sha256": sha, "done": [[0, size + 5]]}),  # past the end
    ]
    for text in cases:
        part.write_bytes(b"\xff" * size)  # wrong bytes that a trusted sidecar would keep
        side.write_text(text)
        srv.reset_counts()
        _dl(srv, d, tables=None, connections=3)
        assert (d / rel).read_bytes() == files[rel], text
        assert srv.bytes_served[rel] == size  # all of it fetched again
        (d / rel).unlink()


def test_part_appended_by_one_stream_is_resumed_as_a_range(served, tmp_path):
    srv, files = served
    rel = "big/a.bin"
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    (d / "big").mkdir()
    (d / (rel + ".part")).write_bytes(files[rel][:300_000])  # what the one-stream path leaves after a kill
    _dl(srv, d, connections=3)
    _check(d, files)
    assert srv.bytes_served[rel] == len(files[rel]) - 300_000
    assert min(int(r["range"][6:].split("-")[0]) for r in _file_requests(srv, rel)) == 300_000


def test_estimate_before_start_is_hand_computable():
    # 4.4 GB over 8 connections at 50 KB/s: 4_400_001_000 / 400_000 = 11000.0025 s
    e = estimate([(4_000_000_000, True), (400_000_000, True), (1000, False)], 8, 50_000, Split())
    assert e.bytes == 4_400_001_000 and abs(e.seconds - 11000.0025) < 1e-6
    assert "about 3 h 3 min" in e.describe() and "8 connections" in e.describe()
    # one file that cannot be split takes its own bytes / rate however many connections there are
    e = estimate([(10_000_000, False)], 8, 50_000, Split())
    assert e.seconds == 200.0 and "3 min 20 s" in e.describe()
    # a split file is not faster than one piece on one connection
    e = estimate([(9 << 20, True)], 8, 50_000, Split(piece=8 << 20))
    assert e.seconds == (8 << 20) / 50_000


def test_cli_prints_the_estimate_before_transferring(served, tmp_path):
    srv, files = served
    dest = tmp_path / "d"
    args = ["download", SLUG, "--version", VERSION, "--mirror", srv.url, "--dest", str(dest), "--connections", "4"]
    res = CliRunner().invoke(app, [*args, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "MB to fetch in 4 files" in " ".join(res.output.split()) and not dest.exists()  # a dry run says it too
    res = CliRunner().invoke(app, [*args, "--quiet"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    total = sum(len(v) for v in files.values())  # 1_849_025 bytes -> "1.8 MB"
    assert f"{total / 1e6:.1f} MB to fetch in 4 files" in out and "with 4 connections" in out
    assert out.index("to fetch") < out.index("Fetched 4 files")
    _check(dest, files)


@pytest.mark.slow
def test_sigkill_midway_then_resume_fetches_exactly_the_missing_ranges(tmp_path):
    """A real `mimiclab download` killed with SIGKILL: the sidecar never claims a byte not written, and the
    next run asks only for the ranges it lacks (default Split: a 24 MiB file is cut in ranges)."""
    rel = "big/huge.bin"
    files = _mirror(tmp_path / "src", {rel: 24 * MiB + 77, "small/x.bin": 1000}, seed=7)
    srv = PhysioNetServer(tmp_path / "src").start()
    try:
        srv.faults.rate = 4e6  # x 4 connections: ~1.5 s for the file
        dest = tmp_path / "dest"
        cmd = [sys.executable, "-m", "mimiclab", "download", SLUG, "--version", VERSION, "--mirror", srv.url,
               "--dest", str(dest), "--connections", "4", "--quiet"]
        proc = subprocess.Popen(cmd, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while srv.bytes_served.get(rel, 0) < 0.45 * len(files[rel]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "download did not progress"
            time.sleep(0.01)
        assert srv.max_connections >= 3  # it really was split across connections
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        part, side = dest / (rel + ".part"), dest / (rel + ".part.ranges")
        assert not (dest / rel).exists() and part.exists()
        rec = json.loads(side.read_text())
        data = files[rel]
        assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
        on_disk = part.read_bytes()
        covered = 0
        for a, b in rec["done"]:
            assert on_disk[a:b] == data[a:b], (a, b)  # every byte the sidecar claims is written and right
            covered += b - a
        assert 0 < covered < len(data)

        last = -1  # the dead connections' handlers may still push a chunk into a dead socket
        while srv.total_served() != last:
            last = srv.total_served()
            time.sleep(0.3)
        srv.faults.rate = None
        srv.reset_counts()
        res = download(SLUG, VERSION, mirror=srv.url, dest=dest, progress=False, connections=4)
        assert rel in res.fetched
        assert srv.bytes_served[rel] == len(data) - covered  # exactly the missing ranges crossed the wire
        done = [tuple(r) for r in rec["done"]]
        for r in _file_requests(srv, rel):
            a, b = (int(x) for x in r["range"][6:].split("-"))
            assert not any(a < y and x <= b for x, y in done), (a, b)  # no request for a byte already there
        _check(dest, files)
    finally:
        srv.stop()


def test_progress_events_count_every_byte_once(served, tmp_path):
    srv, files = served
    srv.faults.cut("big/a.bin", 400_000)  # a dropped range: a 'wait', its bytes still count
    events = []
    lock = threading.Lock()

    def sink(e):
        with lock:
            events.append(e)

    _dl(srv, tmp_path / "d", connections=4, progress=sink)
    _check(tmp_path / "d", files)
    adv = {}
    for e in events:
        if e.kind == "advance":
            adv[e.path] = adv.get(e.path, 0) + e.nbytes
    assert adv == {rel: len(data) for rel, data in files.items()}
    assert {e.path for e in events if e.kind == "done"} == set(files)
    assert os.environ.get("MIMICLAB_PHYSIONET_URL", "").startswith("http://127.0.0.1")


def test_progress_without_a_terminal_is_plain_lines(served, tmp_path):
    import io

    from rich.console import Console

    from mimiclab.physionet.progress import RichProgress

    srv, files = served
    buf = io.StringIO()
    total = sum(len(v) for v in files.values())
    sink = RichProgress(total, len(files), console=Console(file=buf, force_terminal=False, width=200), every=0.0)
    with sink:
        _dl(srv, tmp_path / "d", connections=4, progress=sink)
    lines = buf.getvalue().splitlines()
    assert "\x1b" not in buf.getvalue()  # no cursor movement or colour codes
    for rel in files:
        assert any(line.startswith(f"done {rel} (") for line in lines), lines
    assert f"{len(files)} of {len(files)} files" in buf.getvalue()
    summary = [line for line in lines if "/s" in line and " of 1.8 MB (" in line]
    assert summary and summary[-1].split(" of ")[0] == "1.8 MB"  # the last summary: everything on disk


_fault = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("status"), st.sampled_from([500, 503, 429]), st.integers(1, 3)),
    st.tuples(st.just("corrupt"), st.floats(0, 1), st.integers(1, 2)),
    st.tuples(st.just("shift"), st.sampled_from([-100, 50])),
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.dictionaries(st.sampled_from(["big/a.bin", "big/b.bin"]), st.lists(_fault, min_size=1, max_size=4),
                            max_size=2),
       conns=st.integers(1, 5), random_cut=st.sampled_from([0.0, 0.1]))
def test_any_fault_schedule_on_ranges_ends_verified_or_resumable(served, plan, conns, random_cut):
    import tempfile

    from mimiclab.errors import MimiclabError

    srv, files = served
    srv.faults.clear()
    srv.faults.random_cut = random_cut
    for rel, faults in plan.items():
        size = len(files[rel])
        for f in faults:
            if f[0] == "cut":
                srv.faults.cut(rel, int(f[1] * size))
            elif f[0] == "status":
                srv.faults.status(rel, f[1], times=f[2], retry_after=0)
            elif f[0] == "corrupt":
                srv.faults.corrupt(rel, min(size - 1, int(f[1] * size)), times=f[2])
            else:
                srv.faults.shift_range[rel] = f[1]
    retry = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.005)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "d"
        error = None
        try:
            _dl(srv, dest, connections=conns, retry=retry)
        except MimiclabError as exc:
            error = exc
        present = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} if dest.exists() else set()
        for rel in present & set(files):  # never a wrong file at a final path
            assert (dest / rel).read_bytes() == files[rel], rel
        if error is None:
            assert present & set(files) == set(files)
        else:
            assert set(getattr(error, "failures", {})) <= set(plan) | (set(files) if random_cut else set()), error
        # a sidecar left behind never claims a byte that is not written as received (right, unless the server
        # corrupted it: only the final sha256 can tell, and the next run's check does)
        for side in dest.rglob("*.part.ranges") if dest.exists() else ():
            rel = side.relative_to(dest).as_posix()[: -len(".part.ranges")]
            if any(f[0] == "corrupt" for f in plan.get(rel, [])):
                continue
            rec = json.loads(side.read_text())
            on_disk = (dest / (rel + ".part")).read_bytes()
            assert all(on_disk[a:b] == files[rel][a:b] for a, b in rec["done"]), rel
        srv.faults.clear()
        _dl(srv, dest, connections=conns, retry=retry)
        _check(dest, files)


@pytest.mark.parametrize("factor", [0.5, 1.5])
def test_rounded_catalog_size_is_corrected_by_the_first_answer(served, tmp_path, factor):
    """The catalog's sizes are rounded for most MIMIC-IV files: the part takes the size the server states."""
    from mimiclab.physionet.client import make_client
    from mimiclab.physionet.mirror import RemoteSource
    from mimiclab.physionet.plan import PlannedFile
    from mimiclab.physionet.transfer import Transfer

    srv, files = served
    rel = "big/a.bin"
    f = PlannedFile(rel, hashlib.sha256(files[rel]).hexdigest(), int(len(files[rel]) * factor), approx=True)
    with make_client(None, jobs=4) as client:
        out = Transfer(RemoteSource(srv.url, SLUG, VERSION, client), tmp_path / "d", connections=4, split=TINY,
                       retry=FAST).run([f])
    assert [o.status for o in out] == ["fetched"]
    assert (tmp_path / "d" / rel).read_bytes() == files[rel]
    assert srv.bytes_served[rel] == len(files[rel])


def test_refusals_in_a_row_are_said_and_the_download_still_completes(tmp_path):
    files = _mirror(tmp_path / "src", {"big/only.bin": 300_000})  # one file: no other request succeeds between
    with PhysioNetServer(tmp_path / "src") as srv:
        events = []
        _dl(srv, tmp_path / "d", connections=4, progress=events.append,
            on_plan=lambda plan: srv.faults.status("big/only.bin", 429, times=2, retry_after=0))
        _check(tmp_path / "d", files)
    said = [e.message for e in events if e.kind == "wait" and "keeps refusing" in e.message]
    assert said == ["the server keeps refusing (HTTP 429): 3 connection(s) at once from now on"]


def test_hashing_on_the_way_never_reads_bytes_not_yet_written(tmp_path):
    """The sha256 is fed as ranges arrive, reading back from the sparse part what other connections wrote.
    A buffered read-back once held zeros read ahead of the writers and hashed them: a false mismatch, and the
    whole file came down twice, in about one ranged download in ten. Many downloads, none may refetch."""
    N = 60  # the old code failed one download in ten: this many catch it nearly always
    files = _mirror(tmp_path / "src", {"big/a.bin": 1 * MiB + 12_345, "big/b.bin": 700 * KiB})
    srv = PhysioNetServer(tmp_path / "src").start()
    try:
        for i in range(N):
            events: list = []
            _dl(srv, tmp_path / f"d{i}", connections=4, progress=events.append)
            _check(tmp_path / f"d{i}", files)
            assert [e.message for e in events if e.kind in ("retry", "fail")] == [], i
        assert {rel: srv.bytes_served[rel] for rel in files} == {rel: N * len(data) for rel, data in files.items()}
    finally:
        srv.stop()
