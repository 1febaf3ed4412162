"""Downloads against the local PhysioNet-like server: plan, selection, resume, retries, verification."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mimiclab import config
from mimiclab.catalog import CatalogError
from mimiclab.cli import app
from mimiclab.physionet import (
    ChecksumError,
    DownloadError,
    InsufficientSpaceError,
    PhysioNetError,
    RetryPolicy,
    download,
    plan_download,
)
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.plan import parse_sums

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import CRED_SLUG, CRED_VERSION, PASSWORD, USER, sums_of

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)
ALICE = Credentials(USER, PASSWORD)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _assert_identical(dest: Path, src: Path, paths) -> None:
    for p in paths:
        assert (dest / p).read_bytes() == (src / p).read_bytes(), p


def _dl(srv, dest, **kw):
    kw.setdefault("credentials_", ALICE)
    kw.setdefault("retry", FAST)
    kw.setdefault("progress", False)
    return download(CRED_SLUG, CRED_VERSION, mirror=srv.url, dest=dest, **kw)


def test_full_credentialed_download_is_byte_identical(physionet, data_root, tmp_path):
    src = data_root / CRED_SLUG / CRED_VERSION
    sums = sums_of(data_root)
    events = []
    res = _dl(physionet, tmp_path / "d", progress=events.append)
    assert sorted(res.fetched) == sorted(sums) and res.skipped == []
    _assert_identical(tmp_path / "d", src, sums)
    assert (tmp_path / "d" / "SHA256SUMS.txt").read_bytes() == (src / "SHA256SUMS.txt").read_bytes()
    assert not list((tmp_path / "d").rglob("*.part"))
    assert res.bytes_transferred == sum((src / p).stat().st_size for p in sums)
    assert res.total_bytes == res.bytes_transferred
    assert {e.path for e in events if e.kind == "done"} == set(sums)
    assert sum(e.nbytes for e in events if e.kind == "advance") == res.bytes_transferred
    # every data request carried the mimiclab Wget-style agent
    assert all(r["ua"].startswith("Wget/") and "mimiclab/" in r["ua"] for r in physionet.requests)


def test_default_dest_is_raw_dir(physionet, data_root):
    res = _dl(physionet, None)
    assert res.dest == config.raw_dir(CRED_SLUG, CRED_VERSION)
    assert (res.dest / "ed" / "triage.csv.gz").is_file()


def test_rerun_transfers_nothing_and_says_so(physionet, data_root, tmp_path, monkeypatch):
    _dl(physionet, tmp_path / "d")
    physionet.reset_counts()
    import mimiclab.physionet.transfer as tr

    hashed = []
    real = tr.sha256_file
    monkeypatch.setattr(tr, "sha256_file", lambda p, *a: hashed.append(p) or real(p, *a))
    res = _dl(physionet, tmp_path / "d")
    assert res.up_to_date and res.fetched == [] and len(res.skipped) == len(sums_of(data_root))
    assert physionet.total_served() == 0 and physionet.requests == []  # not even SHA256SUMS.txt
    assert hashed == []  # the verified-state record spared re-hashing
    # touching a file (mtime change) makes it be re-hashed, not re-fetched
    f = tmp_path / "d" / "ed" / "triage.csv.gz"
    os.utime(f, (time.time() + 5, time.time() + 5))
    res = _dl(physionet, tmp_path / "d")
    assert res.up_to_date and hashed == [f]
    # damaging a file in place (same size, new mtime) is caught and repaired
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    res = _dl(physionet, tmp_path / "d")
    assert res.fetched == ["ed/triage.csv.gz"]
    assert _sha(f) == sums_of(data_root)["ed/triage.csv.gz"]


def test_cli_rerun_message_and_dry_run(physionet, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    runner = CliRunner()
    dest = tmp_path / "d"
    args = ["download", CRED_SLUG, "--version", CRED_VERSION, "--mirror", physionet.url, "--dest", str(dest)]
    res = runner.invoke(app, args + ["--dry-run"])
    assert res.exit_code == 0, res.output
    assert "Plan: 7 files" in res.output and "ed/medrecon.csv.gz" in res.output and "Dry run" in res.output
    assert not dest.exists()  # a dry run writes nothing
    res = runner.invoke(app, args + ["--quiet"])
    assert res.exit_code == 0, res.output
    assert "Fetched 7 files" in res.output
    res = runner.invoke(app, args + ["--quiet"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "All 7 files already present and verified" in out and "nothing to transfer" in out


def test_tables_and_modules_selection(physionet, data_root, tmp_path):
    res = download("mimic-iv-demo", "2.2", tables="admissions,patients", mirror=physionet.url,
                   dest=tmp_path / "t", progress=False, retry=FAST)
    assert sorted(res.fetched) == ["LICENSE.txt", "hosp/admissions.csv.gz", "hosp/patients.csv.gz"]
    assert res.total_bytes == 11072 + 1083 + 25815  # catalog sizes
    plan = plan_download("mimic-iv-demo", "2.2", modules=["hosp"], mirror=physionet.url, dest=tmp_path / "m")
    assert {f.path.split("/")[0] for f in plan.files} == {"hosp", "LICENSE.txt"}
    assert len(plan.files) == 1 + sum(1 for p in sums_of(data_root, "mimic-iv-demo", "2.2") if p.startswith("hosp/"))
    with pytest.raises(PhysioNetError, match="folders: hosp, icu"):
        plan_download("mimic-iv-demo", "2.2", modules=["ed"], mirror=physionet.url, dest=tmp_path / "x")
    with pytest.raises(CatalogError, match="admissions"):
        plan_download("mimic-iv-demo", "2.2", tables=["admision"], mirror=physionet.url, dest=tmp_path / "x")


def test_tables_match_csv_without_gz(data_root, tmp_path):
    # MIMIC-III demo ships plain upper-case .csv files; the catalog's Table.file stem picks them
    plan = plan_download("mimiciii-demo", "1.4", mirror=str(data_root), dest=tmp_path / "x",
                         tables=["icustays", "patients"])
    assert sorted(f.path for f in plan.files) == ["ICUSTAYS.csv", "LICENSE.txt", "PATIENTS.csv"]
    assert {f.path: f.size for f in plan.files}["ICUSTAYS.csv"] == 13495


def test_unknown_slug_needs_version_and_is_then_fetched_as_listed(physionet, data_root, tmp_path):
    with pytest.raises(CatalogError):
        download("not-in-catalog", mirror=physionet.url, dest=tmp_path / "x", progress=False)
    with pytest.raises(PhysioNetError, match="not found"):
        download("not-in-catalog", "1.0", mirror=physionet.url, dest=tmp_path / "x", progress=False, retry=FAST)


def test_missing_file_fails_naming_it_others_in_place(physionet, data_root, tmp_path):
    # mimic-iv-demo's SHA256SUMS lists icu/chartevents.csv.gz, which the shared data lacks: a real 404
    with pytest.raises(DownloadError) as ei:
        download("mimic-iv-demo", "2.2", modules="icu", mirror=physionet.url, dest=tmp_path / "d",
                 progress=False, retry=FAST)
    assert "icu/chartevents.csv.gz" in str(ei.value) and list(ei.value.failures) == ["icu/chartevents.csv.gz"]
    assert "run the same command again" in str(ei.value)
    assert not (tmp_path / "d" / "icu" / "chartevents.csv.gz").exists()
    assert (tmp_path / "d" / "icu" / "icustays.csv.gz").is_file()


def test_injected_404_for_listed_file(physionet, tmp_path):
    physionet.faults.missing.add("ed/pyxis.csv.gz")
    with pytest.raises(DownloadError, match=r"ed/pyxis\.csv\.gz"):
        _dl(physionet, tmp_path / "d")
    assert not (tmp_path / "d" / "ed" / "pyxis.csv.gz").exists()
    physionet.faults.clear()
    res = _dl(physionet, tmp_path / "d")
    assert res.fetched == ["ed/pyxis.csv.gz"]


def test_cut_connection_resumes_with_range(physionet, data_root, tmp_path):
    rel = "ed/medrecon.csv.gz"
    size = (data_root / CRED_SLUG / CRED_VERSION / rel).stat().st_size
    physionet.faults.cut(rel, 10_000)
    physionet.faults.cut(rel, 25_000)
    res = _dl(physionet, tmp_path / "d", tables="medrecon")
    assert _sha(tmp_path / "d" / rel) == sums_of(data_root)[rel]
    assert physionet.bytes_served[rel] == size  # each byte sent once: resumed, never restarted
    ranges = [r["range"] for r in physionet.requests if r["path"].endswith(rel) and r["status"] in (200, 206)]
    assert ranges == [None, "bytes=10000-", "bytes=25000-"]
    assert res.bytes_transferred == size + physionet.bytes_served["LICENSE.txt"]


def test_5xx_burst_with_retry_after_is_honoured(physionet, data_root, tmp_path):
    rel = "ed/triage.csv.gz"
    physionet.faults.status(rel, 503, times=2, retry_after=0.6)
    physionet.faults.status("ed/edstays.csv.gz", 500, times=3)
    t0 = time.monotonic()
    _dl(physionet, tmp_path / "d")
    assert time.monotonic() - t0 >= 1.2  # two Retry-After waits; the backoff alone would be ~0.03 s
    assert _sha(tmp_path / "d" / rel) == sums_of(data_root)[rel]


def test_gives_up_after_repeated_5xx(physionet, tmp_path):
    physionet.faults.status("ed/triage.csv.gz", 503, times=50)
    with pytest.raises(DownloadError, match=r"ed/triage\.csv\.gz.*gave up"):
        _dl(physionet, tmp_path / "d")
    assert not (tmp_path / "d" / "ed" / "triage.csv.gz").exists()


def test_corrupted_byte_is_retried_once(physionet, data_root, tmp_path):
    rel = "ed/vitalsign.csv.gz"
    physionet.faults.corrupt(rel, 500, times=1)
    events = []
    _dl(physionet, tmp_path / "d", progress=events.append)
    assert _sha(tmp_path / "d" / rel) == sums_of(data_root)[rel]
    assert any(e.kind == "retry" and "checksum" in e.message for e in events)


def test_corrupted_twice_fails_naming_file_nothing_at_final_path(physionet, tmp_path):
    rel = "ed/vitalsign.csv.gz"
    physionet.faults.corrupt(rel, 500, times=2)
    with pytest.raises(DownloadError) as ei:
        _dl(physionet, tmp_path / "d")
    assert rel in str(ei.value) and "checksum mismatch" in str(ei.value)
    assert not (tmp_path / "d" / rel).exists()
    assert not (tmp_path / "d" / (rel + ".part")).exists()
    assert (tmp_path / "d" / "ed" / "triage.csv.gz").is_file()  # the others completed


def test_checksum_error_class_carries_through_single_file(physionet, tmp_path):
    physionet.faults.corrupt("ed/triage.csv.gz", 0, times=2)
    with pytest.raises(DownloadError) as ei:
        _dl(physionet, tmp_path / "d", tables="triage")
    assert "ed/triage.csv.gz" in ei.value.failures
    assert issubclass(ChecksumError, PhysioNetError)


def test_stale_part_longer_than_file_is_discarded(physionet, data_root, tmp_path):
    rel = "ed/triage.csv.gz"
    dest = tmp_path / "d"
    (dest / "ed").mkdir(parents=True)
    (dest / (rel + ".part")).write_bytes(b"x" * 100_000)
    _dl(physionet, dest, tables="triage")
    assert _sha(dest / rel) == sums_of(data_root)[rel]


def test_wrong_part_prefix_detected_and_refetched(physionet, data_root, tmp_path):
    rel = "ed/triage.csv.gz"
    dest = tmp_path / "d"
    (dest / "ed").mkdir(parents=True)
    (dest / (rel + ".part")).write_bytes(b"garbage" * 100)  # resumable-looking but wrong
    _dl(physionet, dest, tables="triage")
    assert _sha(dest / rel) == sums_of(data_root)[rel]


def test_refuses_when_disk_too_small(physionet, tmp_path, monkeypatch):
    import mimiclab.physionet.plan as plan_mod

    monkeypatch.setattr(plan_mod, "free_space", lambda dest: 1000)
    with pytest.raises(InsufficientSpaceError, match="not enough disk space"):
        _dl(physionet, tmp_path / "d")
    assert not (tmp_path / "d" / "ed").exists()


def test_local_folder_mirror_and_env_mirror(data_root, tmp_path, monkeypatch, physionet):
    res = download("mimic-iv-demo", "2.2", tables="patients", mirror=str(data_root), dest=tmp_path / "a",
                   progress=False)
    assert sorted(res.fetched) == ["LICENSE.txt", "hosp/patients.csv.gz"]
    assert (tmp_path / "a" / "SHA256SUMS.txt").is_file()
    monkeypatch.setenv("MIMICLAB_PHYSIONET_URL", physionet.url)
    res = download("mimic-iv-demo", "2.2", tables="patients", dest=tmp_path / "b", progress=False)
    assert physionet.bytes_served["hosp/patients.csv.gz"] == 1083
    with pytest.raises(PhysioNetError, match="neither an http"):
        download("mimic-iv-demo", "2.2", mirror=str(tmp_path / "nope"), dest=tmp_path / "c", progress=False)


def test_bad_sums_file_is_a_clear_error(tmp_path):
    with pytest.raises(PhysioNetError, match="line 2"):
        parse_sums(b"a" * 64 + b"  ok.csv\nnot a checksum line\n")
    with pytest.raises(PhysioNetError, match="unsafe"):
        parse_sums(b"a" * 64 + b"  ../../etc/passwd\n")
    assert parse_sums(b"A" * 64 + b" *x.csv\n") == {"x.csv": "a" * 64}


def test_bad_jobs_rejected(physionet, tmp_path):
    with pytest.raises(PhysioNetError, match="jobs"):
        _dl(physionet, tmp_path / "d", jobs=0)


def test_ctrl_c_leaves_resumable_parts(physionet, data_root, tmp_path):
    """A KeyboardInterrupt mid-transfer stops the workers; the next run resumes the .part files."""
    physionet.faults.rate = 40_000
    seen = {"n": 0}

    def progress(e):
        if e.kind == "advance":
            seen["n"] += e.nbytes
            if seen["n"] > 30_000:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _dl(physionet, tmp_path / "d", progress=progress, jobs=2)
    sums = sums_of(data_root)
    for p in sums:  # nothing unverified at a final path
        f = tmp_path / "d" / p
        assert not f.exists() or _sha(f) == sums[p]
    physionet.faults.rate = None
    res = _dl(physionet, tmp_path / "d")
    _assert_identical(tmp_path / "d", data_root / CRED_SLUG / CRED_VERSION, sums)
    assert res.bytes_transferred < sum((data_root / CRED_SLUG / CRED_VERSION / p).stat().st_size for p in sums)


def test_dataset_not_on_physionet_is_refused(data_root, tmp_path):
    from mimiclab import catalog

    local = [d.slug for d in catalog.datasets() if d.access not in ("open", "credentialed")]
    if not local:
        pytest.skip("the catalog has no locally made dataset")
    with pytest.raises(PhysioNetError, match="not published on PhysioNet"):
        download(local[0], mirror=str(data_root), dest=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
