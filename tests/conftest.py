"""Shared fixtures. Real demo data is read in place from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """No test may reach the real physionet.org or the user's keyring: default to a dead loopback port."""
    os.environ.setdefault("MIMICLAB_PHYSIONET_URL", "http://127.0.0.1:9")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


def _data_root() -> Path:
    return Path(os.environ.get("MIMICLAB_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder of PhysioNet demo datasets in PhysioNet's layout. In CI, missing data fails instead of skipping."""
    root = _data_root()
    if not (root / "mimic-iv-demo" / "2.2").is_dir():
        msg = f"demo data not found at {root} (set MIMICLAB_TEST_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def demo_dir(data_root: Path) -> Path:
    return data_root / "mimic-iv-demo" / "2.2"


@pytest.fixture()
def mimiclab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $MIMICLAB_HOME per test, so tests never touch the user's data or each other's."""
    home = tmp_path / "mimiclab-home"
    monkeypatch.setenv("MIMICLAB_HOME", str(home))
    return home
