"""What mimiclab writes under $MIMICLAB_HOME is private to the user (folders 0700, files 0600), even under a
permissive umask; folders that already let others in get a warning with the command that fixes them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mimiclab import config

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import subprocess_env

SLUG, VERSION = "mimic-iv-ed-demo", "2.2"


@pytest.fixture()
def permissive_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, str]:
    """Every path below (and including) root whose mode is not private: path -> mode."""
    bad = {}
    for p in [root, *root.rglob("*")]:
        m = p.lstat().st_mode
        want = 0o700 if stat.S_ISDIR(m) else 0o600
        if stat.S_IMODE(m) & 0o777 != want and not stat.S_ISLNK(m):
            bad[str(p.relative_to(root))] = oct(stat.S_IMODE(m))
    return bad


def test_download_and_build_are_private_under_umask_022(data_root, tmp_path, permissive_umask):
    from mimiclab.load import build
    from mimiclab.physionet import download
    from mimiclab.physionet.credentials import Credentials, store

    home = Path(os.environ["MIMICLAB_HOME"])
    assert not home.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", config.PrivacyWarning)  # nothing pre-existing: no warning
        res = download(SLUG, VERSION, mirror=str(data_root), progress=False)
        b = build(SLUG)
        store(Credentials("alice", "pw"))  # keyring is the fail backend here: the 0600 file
    assert res.fetched and (home / "raw" / SLUG / VERSION / "SHA256SUMS.txt").is_file()
    assert b.database.is_file() and list((b.build_dir / "parquet").rglob("*.parquet"))
    assert (home / "physionet-credentials.json").is_file()
    files = [p for p in home.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert _modes(home) == {}
    assert os.umask(0o022) == 0o022  # restored afterwards


def test_existing_open_home_gets_a_warning_with_the_fix(data_root, tmp_path, permissive_umask):
    from mimiclab.physionet import download

    home = Path(os.environ["MIMICLAB_HOME"])
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    config._warned.clear()
    with pytest.warns(config.PrivacyWarning, match=rf"chmod -R go-rwx {home}"):
        download("mimic-iv-demo", "2.2", tables="patients", mirror=str(data_root), progress=False)
    assert stat.S_IMODE(home.stat().st_mode) == 0o755  # the user's folder is left as it was
    assert _modes(home / "raw") == {}  # what mimiclab made inside is private anyway
    # a private home: no warning even if a folder inside it is open (nobody can reach it)
    os.chmod(home, 0o700)
    os.chmod(home / "raw", 0o755)
    config._warned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", config.PrivacyWarning)
        download("mimic-iv-demo", "2.2", tables="admissions", mirror=str(data_root), progress=False)


def test_cli_is_private_and_warns_in_one_line(data_root, tmp_path):
    env = subprocess_env(tmp_path)
    home = Path(env["MIMICLAB_HOME"])
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    out = subprocess.run([sys.executable, "-m", "mimiclab", "download", "mimic-iv-demo", "--tables", "patients",
                          "--mirror", str(data_root), "-q"], env=env, capture_output=True, text=True,
                         timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert out.returncode == 0, out.stderr
    assert f"warning: {home} can be read by other accounts" in out.stderr
    assert f"chmod -R go-rwx {home}" in out.stderr and "Traceback" not in out.stderr
    assert _modes(home / "raw") == {}
