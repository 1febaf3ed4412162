"""The password never appears in output, logs, --verbose traces, exceptions or files we write."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import traceback

import pytest

from mimiclab.errors import MimiclabError
from mimiclab.physionet import RetryPolicy, check_access, download
from mimiclab.physionet.credentials import Credentials

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import (
    CRED_SLUG,
    CRED_VERSION,
    NOACCESS_PASSWORD,
    NOACCESS_USER,
    PASSWORD,
    USER,
    subprocess_env,
)


def _secrets(user: str, pw: str) -> list[str]:
    return [pw, base64.b64encode(f"{user}:{pw}".encode()).decode()]


def _assert_clean(text: str, user: str, pw: str, where: str) -> None:
    for s in _secrets(user, pw):
        assert s not in text, f"secret leaked in {where}"


def _all_files_text(*roots) -> str:
    out = []
    for root in roots:
        if root.exists():
            for p in root.rglob("*"):
                if p.is_file():
                    out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize(("user", "pw", "rc"), [(USER, PASSWORD, 0), (USER, PASSWORD + "-wrong", 1),
                                                (NOACCESS_USER, NOACCESS_PASSWORD, 1)])
def test_cli_verbose_download_never_shows_password(physionet, tmp_path, user, pw, rc):
    physionet.faults.status("ed/triage.csv.gz", 503, times=1, retry_after=0)  # a retry line too
    physionet.faults.cut("ed/medrecon.csv.gz", 5000)
    env = subprocess_env(tmp_path, PHYSIONET_USERNAME=user, PHYSIONET_PASSWORD=pw)
    dest = tmp_path / "dest"
    out = subprocess.run(
        [sys.executable, "-m", "mimiclab", "download", CRED_SLUG, "--version", CRED_VERSION, "--mirror",
         physionet.url, "--dest", str(dest), "--verbose"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == rc, out.stderr
    assert "authorization: <redacted>" in out.stderr.lower()  # the trace ran and redacted
    _assert_clean(out.stdout + out.stderr, user, pw, "CLI output")
    _assert_clean(_all_files_text(dest, tmp_path / "mimiclab-home"), user, pw, "files written")
    if rc == 1:
        assert "error:" in out.stderr and "Traceback" not in out.stderr


def test_login_file_and_access_output(physionet, tmp_path):
    env = subprocess_env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "mimiclab", "login", "-u", USER], input=PASSWORD + "\n",
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _assert_clean(out.stdout + out.stderr, USER, PASSWORD, "login output")
    out = subprocess.run([sys.executable, "-m", "mimiclab", "access", CRED_SLUG, "--version", CRED_VERSION,
                          "--mirror", physionet.url], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "allowed" in out.stdout, out.stdout + out.stderr
    _assert_clean(out.stdout + out.stderr, USER, PASSWORD, "access output")


def test_exceptions_and_logs_never_hold_password(physionet, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # httpx / httpcore debug logging on
    wrong = PASSWORD + "-wrong"
    for user, pw in ((USER, wrong), (NOACCESS_USER, NOACCESS_PASSWORD)):
        with pytest.raises(MimiclabError) as ei:
            download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=tmp_path / "d", progress=False,
                     credentials_=Credentials(user, pw), retry=RetryPolicy(attempts=2, backoff=0.01))
        text = "".join(traceback.format_exception(ei.value)) + repr(ei.value)
        _assert_clean(text, user, pw, "exception")
        st = check_access(CRED_SLUG, CRED_VERSION, credentials=Credentials(user, pw), mirror=physionet.url)
        _assert_clean(st.message + repr(st), user, pw, "access status")
    # a successful download with a trace callback and logging at DEBUG
    lines: list[str] = []
    download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=tmp_path / "ok", progress=False,
             credentials_=Credentials(USER, PASSWORD), trace=lines.append)
    assert lines
    _assert_clean("\n".join(lines), USER, PASSWORD, "trace")
    _assert_clean(caplog.text, USER, PASSWORD, "logs")
    _assert_clean(caplog.text, USER, wrong, "logs")
    _assert_clean(_all_files_text(tmp_path / "ok"), USER, PASSWORD, "state files")
