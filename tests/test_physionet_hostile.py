"""Hostile sources: a SHA256SUMS.txt built to crash the writer, servers that lie about lengths and ranges."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimiclab.physionet import DownloadError, PhysioNetError, RetryPolicy, download
from mimiclab.physionet.plan import parse_sums

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import subprocess_env

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)
H = "a" * 64


def _mirror(tmp_path: Path, sums: bytes, files: dict[str, bytes] | None = None) -> Path:
    """A local-folder mirror of slug 'hostile' version '1' with the given SHA256SUMS.txt."""
    base = tmp_path / "mirror" / "hostile" / "1"
    base.mkdir(parents=True)
    (base / "SHA256SUMS.txt").write_bytes(sums)
    for rel, data in (files or {}).items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return tmp_path / "mirror"


HOSTILE_LINES = {
    "nul": (H + "  ed/tri\x00age.csv.gz\n").encode(),
    "long-name": (H + "  " + "x" * 300 + ".csv.gz\n").encode(),
    "long-path": (H + "  " + "/".join(["d" * 200] * 25) + "/f.csv\n").encode(),
    "control": (H + "  ed/a\rb.csv\n").encode(),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_LINES))
def test_hostile_sums_line_is_a_clear_error(kind):
    with pytest.raises(PhysioNetError, match=r"SHA256SUMS\.txt line 2") as ei:
        parse_sums((H + "  ok.csv\n").encode() + HOSTILE_LINES[kind])
    assert "\x00" not in str(ei.value) and len(str(ei.value)) < 400


@pytest.mark.parametrize("kind", ["nul", "long-name"])
def test_download_with_hostile_sums_fails_cleanly_writing_nothing(tmp_path, kind):
    mirror = _mirror(tmp_path, HOSTILE_LINES[kind])
    dest = tmp_path / "dest"
    with pytest.raises(PhysioNetError, match="line 1"):
        download("hostile", "1", mirror=str(mirror), dest=dest, progress=False)
    assert not dest.exists()
    env = subprocess_env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "mimiclab", "download", "hostile", "--version", "1", "--mirror",
                          str(mirror), "--dest", str(dest)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "SHA256SUMS.txt line 1" in out.stderr


def test_unwritable_target_names_the_file(tmp_path):
    data = b"hello\n"
    sha = hashlib.sha256(data).hexdigest()
    mirror = _mirror(tmp_path, f"{sha}  sub/f.csv\n".encode(), {"sub/f.csv": data})
    dest = tmp_path / "dest"
    dest.mkdir(mode=0o700)
    (dest / "sub").write_text("a file where a folder must go")
    with pytest.raises(DownloadError, match=r"sub/f\.csv"):
        download("hostile", "1", mirror=str(mirror), dest=dest, progress=False, retry=FAST)


def test_dest_that_is_a_file_is_a_clear_error(tmp_path):
    data = b"hello\n"
    mirror = _mirror(tmp_path, f"{hashlib.sha256(data).hexdigest()}  f.csv\n".encode(), {"f.csv": data})
    (tmp_path / "dest").write_text("not a folder")
    with pytest.raises(PhysioNetError, match="cannot write the download to"):
        download("hostile", "1", mirror=str(mirror), dest=tmp_path / "dest", progress=False)


# --- servers that lie about lengths and ranges ------------------------------------------------------------
REL = "ed/triage.csv.gz"


def _guard(limit: int = 12):
    """Progress sink that fails the test instead of letting a retry loop run forever."""
    retries: list[str] = []

    def sink(e):
        if e.kind == "retry":
            retries.append(e.message)
            if len(retries) > limit:
                raise AssertionError(f"retrying forever: {retries[-3:]}")
    return sink, retries


def _gets(srv, rel: str = REL) -> int:
    return sum(1 for r in srv.requests if r["method"] == "GET" and r["path"].endswith("/" + rel))


def _fetch(srv, dest, sink, **kw):
    from mimiclab.physionet.credentials import Credentials

    from fixtures_physionet import CRED_SLUG, CRED_VERSION, PASSWORD, USER

    return download(CRED_SLUG, CRED_VERSION, tables="triage", mirror=srv.url, dest=dest, progress=sink,
                    credentials_=Credentials(USER, PASSWORD), retry=kw.pop("retry", FAST), **kw)


def test_overclaimed_length_ignoring_range_completes(physionet, data_root, tmp_path):
    """Content-Length 10 bytes larger than the body, Range ignored (the reported 74-GETs loop): the bytes
    that came are the whole file (its sha256 matches), so it is accepted at once."""
    from fixtures_physionet import sums_of

    physionet.faults.overclaim[REL] = 10
    physionet.faults.ignore_range.add(REL)
    sink, _ = _guard()
    _fetch(physionet, tmp_path / "d", sink)
    got = tmp_path / "d" / REL
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sums_of(data_root)[REL]
    assert _gets(physionet) == 1


def test_truncating_server_that_ignores_range_is_given_up_on(physionet, data_root, tmp_path):
    """Every answer stops at the same byte and restarts from 0: moving bytes, but never further."""
    physionet.faults.ignore_range.add(REL)
    for _ in range(200):
        physionet.faults.cut(REL, 3000)
    sink, _ = _guard()
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        _fetch(physionet, tmp_path / "d", sink)
    assert time.monotonic() - t0 < 5
    msg = str(ei.value)
    assert REL in msg and "without progress" in msg and "byte 3000" in msg and "ignored" in msg, msg
    assert _gets(physionet) <= FAST.attempts + 1
    assert not (tmp_path / "d" / REL).exists()


def test_overclaiming_truncating_server_is_given_up_on(physionet, tmp_path):
    """Announces 10 bytes more than the file has and stops at byte 3000 each time, Range honoured."""
    physionet.faults.overclaim[REL] = 10
    for _ in range(200):
        physionet.faults.cut(REL, 3000)
    sink, _ = _guard()
    with pytest.raises(DownloadError) as ei:
        _fetch(physionet, tmp_path / "d", sink)
    msg = str(ei.value)
    assert REL in msg and "without progress" in msg, msg
    assert _gets(physionet) <= FAST.attempts + 2


def test_wrong_range_answer_is_refused_not_written(physionet, tmp_path):
    """A 206 for another offset than asked: never appended as if it were ours; given up with what happened."""
    physionet.faults.cut(REL, 3000)  # first answer: 3000 bytes, then Range bytes=3000- ...
    physionet.faults.shift_range[REL] = -1000  # ... is answered with bytes 2000-
    sink, _ = _guard()
    with pytest.raises(DownloadError) as ei:
        _fetch(physionet, tmp_path / "d", sink)
    msg = str(ei.value)
    assert REL in msg and "bytes=3000-" in msg and "2000" in msg, msg
    assert _gets(physionet) <= FAST.attempts + 2
    assert not (tmp_path / "d" / REL).exists()
    # the part file kept only what was right: a fixed server finishes it
    physionet.faults.clear()
    _fetch(physionet, tmp_path / "d", sink)
    assert physionet.requests[-1]["range"] == "bytes=3000-"


def test_oversized_checksum_list_is_refused_before_filling_memory(physionet, tmp_path, monkeypatch):
    """A SHA256SUMS.txt far larger than any real one (a server streaming garbage) stops at a bound."""
    from mimiclab.physionet import mirror

    monkeypatch.setattr(mirror, "MAX_SMALL", 1000)  # the real demo list is ~3 KB
    with pytest.raises(PhysioNetError, match="larger than") as ei:
        download("mimic-iv-demo", "2.2", mirror=physionet.url, dest=tmp_path / "d", progress=False)
    assert "SHA256SUMS.txt" in str(ei.value)
    with pytest.raises(PhysioNetError, match="larger than"):
        download("mimic-iv-demo", "2.2", mirror=str(physionet.root), dest=tmp_path / "e", progress=False)
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
