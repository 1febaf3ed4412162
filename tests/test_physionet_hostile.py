"""Hostile sources: a SHA256SUMS.txt built to crash the writer, servers that lie about lengths and ranges."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import subprocess_env

from mimiclab.physionet import DownloadError, PhysioNetError, RetryPolicy, download
from mimiclab.physionet.plan import parse_sums

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
    dest.mkdir()
    (dest / "sub").write_text("a file where a folder must go")
    with pytest.raises(DownloadError, match="sub/f.csv"):
        download("hostile", "1", mirror=str(mirror), dest=dest, progress=False, retry=FAST)


def test_dest_that_is_a_file_is_a_clear_error(tmp_path):
    data = b"hello\n"
    mirror = _mirror(tmp_path, f"{hashlib.sha256(data).hexdigest()}  f.csv\n".encode(), {"f.csv": data})
    (tmp_path / "dest").write_text("not a folder")
    with pytest.raises(PhysioNetError, match="cannot write the download to"):
        download("hostile", "1", mirror=str(mirror), dest=tmp_path / "dest", progress=False)
