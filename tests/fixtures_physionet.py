"""Fixtures for the PhysioNet layer's tests. Import with `from fixtures_physionet import *`.

Every test that uses them runs isolated: its own $MIMICLAB_HOME, no ~/.netrc, the keyring's fail backend
(never the real system keyring), no PHYSIONET_* variables, and MIMICLAB_PHYSIONET_URL pointing at a dead
loopback port so nothing can accidentally reach the real physionet.org.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keyring
import keyring.backend
import pytest
from keyring.backends import fail

sys.path.insert(0, str(Path(__file__).parent))

from physionet_server import PhysioNetServer

PASSWORD = "s3cr3t-Pa55w0rd-xyzzy"  # distinctive, so a leak is easy to spot anywhere
USER = "alice"
NOACCESS_USER = "bob"
NOACCESS_PASSWORD = "b0b-pass-qwerty"
CRED_SLUG = "mimic-iv-ed-demo"  # small and complete: served as if credentialed
CRED_VERSION = "2.2"
DEAD_URL = "http://127.0.0.1:9"  # discard port: connection refused, never leaves the machine


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        try:
            del self.store[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError(username) from None


@pytest.fixture(autouse=True)
def physionet_isolation(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "mimiclab-home"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("MIMICLAB_PHYSIONET_URL", DEAD_URL)
    for var in ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD", "MIMICLAB_USER_AGENT", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield tmp_path
    keyring.set_keyring(previous)


@pytest.fixture()
def memory_keyring():
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    return kr


@pytest.fixture()
def physionet(data_root):
    """A PhysioNet-like server over the shared demo data; mimic-iv-ed-demo is credentialed:
    alice has access, bob is a known user without it."""
    srv = PhysioNetServer(
        data_root,
        credentialed={CRED_SLUG},
        users={USER: PASSWORD, NOACCESS_USER: NOACCESS_PASSWORD},
        grants={USER: {CRED_SLUG}},
    ).start()
    yield srv
    srv.stop()


def sums_of(data_root: Path, slug: str = CRED_SLUG, version: str = CRED_VERSION) -> dict[str, str]:
    from mimiclab.physionet.plan import parse_sums

    return parse_sums((data_root / slug / version / "SHA256SUMS.txt").read_bytes())


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for `python -m mimiclab` in a subprocess: isolated like the in-process tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHYSIONET_", "MIMICLAB_"))}
    env.update({
        "MIMICLAB_HOME": str(tmp_path / "mimiclab-home"),
        "HOME": str(tmp_path / "home"),
        "NETRC": str(tmp_path / "home" / ".netrc"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "MIMICLAB_PHYSIONET_URL": DEAD_URL,
        "COLUMNS": "200",
    })
    env.update(extra)
    return env


__all__ = [
    "CRED_SLUG", "CRED_VERSION", "DEAD_URL", "NOACCESS_PASSWORD", "NOACCESS_USER", "PASSWORD", "USER",
    "MemoryKeyring", "PhysioNetServer", "memory_keyring", "physionet", "physionet_isolation", "subprocess_env",
    "sums_of",
]
